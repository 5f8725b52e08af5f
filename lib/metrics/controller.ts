/**
 * The controller's own metrics (`firewall_controller_*`, SPEC §7): how
 * reconciles go, what the policies and services are doing, and when the last
 * good one was. Long-lived counters, so a class; it owns its prom-client
 * Registry, which the :9630 endpoint merges with the nftables families.
 *
 * @example
 * ```ts
 * import { ControllerMetrics } from "./controller.ts";
 * const m = new ControllerMetrics({ version: "0.1.0" });
 * m.reconciled({ outcome: "applied", seconds: 0.12, elements: 42, policies: { ready: 3, invalid: 1, ignored: 0 }, services: { inEffect: 2, pending: 1, invalid: 0 } }, new Date());
 * m.readinessFrom(() => true);
 * console.log((await m.registry.metrics()).includes("firewall_controller_reconciles_total")); // true
 * ```
 * @module
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { DropLogStatus } from "../droptailer/drop-log.ts";

export type ReconcileOutcome = "applied" | "unchanged" | "partial" | "failed" | "skipped";

export interface ReconcileObservation {
  readonly outcome: ReconcileOutcome;
  readonly seconds: number;
  /** Map elements of the rendered ruleset, when one was rendered. */
  readonly elements?: number;
  readonly policies?: { readonly ready: number; readonly invalid: number; readonly ignored: number };
  readonly services?: { readonly inEffect: number; readonly pending: number; readonly invalid: number };
}

export class ControllerMetrics {
  readonly registry = new Registry();
  readonly #duration: Histogram;
  readonly #results: Counter;
  readonly #policies: Gauge;
  readonly #services: Gauge;
  readonly #elements: Gauge;
  readonly #lastSuccess: Gauge;
  readonly #apiErrors: Counter;
  #readiness: (() => boolean) | undefined;
  #drops: (() => DropLogStatus) | undefined;

  constructor(build: { readonly version: string }) {
    const registers = [this.registry];
    this.#duration = new Histogram({
      name: "firewall_controller_reconcile_duration_seconds",
      help: "Time one reconcile took: classification, rendering, applying the rules and shaping, status writes.",
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.#results = new Counter({
      name: "firewall_controller_reconciles_total",
      help: "Reconciles by outcome: applied (rules changed), unchanged, partial (rules in force, a later step failed), failed (nothing changed), skipped (stale caches, Firewall absent or invalid).",
      labelNames: ["outcome"],
      registers,
    });
    this.#policies = new Gauge({ name: "firewall_controller_policies", help: "ClusterwideNetworkPolicies by state in the last reconcile.", labelNames: ["state"], registers });
    this.#services = new Gauge({ name: "firewall_controller_services", help: "LoadBalancer Services by state in the last reconcile (pending: no address yet).", labelNames: ["state"], registers });
    this.#elements = new Gauge({ name: "firewall_controller_rendered_elements", help: "Map elements of the last rendered ruleset.", registers });
    this.#lastSuccess = new Gauge({ name: "firewall_controller_last_successful_reconcile_timestamp_seconds", help: "Unix time of the last reconcile that brought the kernel in line.", registers });
    this.#apiErrors = new Counter({ name: "firewall_controller_api_errors_total", help: "Kubernetes API calls that failed (unreachable, timed out, or a 5xx answer).", registers });
    const self = this;
    new Gauge({
      name: "firewall_controller_ready",
      help: "1 when /readyz says ready, else 0.",
      registers,
      collect() {
        // Asked at scrape time, so it never lags /readyz.
        if (self.#readiness) this.set(self.#readiness() ? 1 : 0);
      },
    });
    new Counter({
      name: "firewall_controller_droptailer_events_total",
      help: "Drop-log events by outcome: shipped, retried (a failed push, tried again), dropped (the queue was full), lost (overwritten in the kernel log before they were read).",
      labelNames: ["outcome"],
      registers,
      collect() {
        const d = self.#drops?.();
        if (!d) return;
        // The drop log counts; this only shows its counts (they never go down while the process lives).
        this.reset();
        this.inc({ outcome: "shipped" }, d.counters.shipped);
        this.inc({ outcome: "retried" }, d.counters.retried);
        this.inc({ outcome: "dropped" }, d.counters.dropped);
        this.inc({ outcome: "lost" }, Number(d.lost));
      },
    });
    new Gauge({
      name: "firewall_controller_droptailer_queue_length",
      help: "Drop-log events waiting to be shipped.",
      registers,
      collect() {
        const d = self.#drops?.();
        if (d) this.set(d.queued);
      },
    });
    new Gauge({
      name: "firewall_controller_droptailer_shipping",
      help: "1 while the drop log ships to the droptailer server, else 0 (no target, refused, unavailable).",
      registers,
      collect() {
        const d = self.#drops?.();
        if (d) this.set(d.shipping ? 1 : 0);
      },
    });
    new Gauge({ name: "firewall_controller_build_info", help: "Version of the running firewall-controller; always 1.", labelNames: ["version"], registers }).set({ version: build.version }, 1);
    for (const outcome of ["applied", "unchanged", "partial", "failed", "skipped"] as const) this.#results.inc({ outcome }, 0);
  }

  reconciled(o: ReconcileObservation, now: Date): void {
    this.#duration.observe(o.seconds);
    this.#results.inc({ outcome: o.outcome });
    if (o.elements !== undefined) this.#elements.set(o.elements);
    if (o.policies) for (const [state, n] of Object.entries(o.policies)) this.#policies.set({ state }, n);
    if (o.services) {
      this.#services.set({ state: "in_effect" }, o.services.inEffect);
      this.#services.set({ state: "pending" }, o.services.pending);
      this.#services.set({ state: "invalid" }, o.services.invalid);
    }
    if (o.outcome === "applied" || o.outcome === "unchanged") this.#lastSuccess.set(now.getTime() / 1000);
  }

  apiError(): void {
    this.#apiErrors.inc();
  }

  /** Where the `firewall_controller_droptailer_*` values come from. */
  droptailerFrom(status: () => DropLogStatus): void {
    this.#drops = status;
  }

  /** Where `firewall_controller_ready` comes from (the controller's readiness). */
  readinessFrom(ready: () => boolean): void {
    this.#readiness = ready;
  }
}
