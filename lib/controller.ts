/**
 * The long-running controller (SPEC §6): caches of the cluster's objects
 * (list+watch), one level-based reconcile for any burst of changes and on the
 * Firewall's interval, status and Events written back, the exporter Services
 * kept in place.
 *
 * The reconcile never asks why it runs. It reads the caches, renders, applies
 * (patching what it applied last), and returns when it wants to run next; a
 * failure is retried with backoff (the error policy), and the last good
 * ruleset stays in the kernel meanwhile.
 *
 * @example
 * ```ts
 * import { Controller } from "./controller.ts";
 * // const c = new Controller(options, deps, signal);
 * // await c.run(); // until the signal aborts; rules stay as they are
 * ```
 * @module
 */
import type { Cidr } from "./api/address.ts";
import type { FirewallSpec } from "./api/firewall.ts";
import { formatProblems } from "./api/problem.ts";
import { buildDesiredState, type Classified, FIREWALL_NAMESPACE, formatRef } from "./desired-state.ts";
import { FirewallError } from "./errors.ts";
import type { ClusterApi, KubeObject } from "./kube/api.ts";
import { statusMessage } from "./kube/api.ts";
import { backoffDelay, sleep } from "./kube/backoff.ts";
import { ensureCrds } from "./kube/crds.ts";
import type { EventRecorder } from "./kube/events.ts";
import { reconcileExporterServices } from "./kube/exporter-services.ts";
import { Reflector, specOf } from "./kube/reflector.ts";
import { type Condition, firewallStatus, type PolicyVerdict, policyStatus, sameStatus } from "./kube/status.ts";
import type { Logger } from "./log.ts";
import { removeRuleset, revisionOf } from "./nft/apply.ts";
import type { NftClient } from "./nft/client.ts";
import { Coalescer } from "./coalescer.ts";
import { reconcile, type ReconcileResult, type Shaper } from "./reconcile.ts";
import type { Ruleset } from "./ruleset/render.ts";

export interface ControllerOptions {
  readonly firewallName: string;
  readonly clusterPrefixes: readonly Cidr[];
  readonly privateVrf: number | null;
  readonly serviceIp: string;
  readonly rulesetFile: string;
  /** Quiet time that gathers a burst of events into one reconcile. */
  readonly coalesceMs?: number;
}

export interface ControllerDeps {
  readonly api: ClusterApi;
  readonly nft: NftClient;
  readonly shaper: Shaper;
  readonly writeFile: (path: string, content: string) => Promise<boolean>;
  readonly events: EventRecorder;
  readonly log: Logger;
  readonly clock?: () => Date;
}

const GROUP = "/apis/metal-stack.io/v1";
const TABLE = "firewall";
const DEFAULT_INTERVAL_MS = 10_000;
/**
 * How often a periodic reconcile also checks the kernel's table against its
 * fingerprint: a full listing (0.3 s of nft at 1,000 policies), too much for
 * every 10 s tick of a firewall that should idle under 2 % of a core.
 */
const VERIFY_EVERY_MS = 60_000;

export const PATHS = {
  firewalls: `${GROUP}/namespaces/${FIREWALL_NAMESPACE}/firewalls`,
  // All namespaces: policies outside `firewall` are marked Ignored, so operators see why they do nothing.
  policies: `${GROUP}/clusterwidenetworkpolicies`,
  services: "/api/v1/services",
  endpoints: `/api/v1/namespaces/${FIREWALL_NAMESPACE}/endpoints`,
  endpointSlices: `/apis/discovery.k8s.io/v1/namespaces/${FIREWALL_NAMESPACE}/endpointslices`,
} as const;

/** What of a Service matters: its spec and its load balancer addresses (status). */
const serviceRelevant = (o: KubeObject) => ({ spec: specOf(o), lb: (o as { status?: { loadBalancer?: unknown } }).status?.loadBalancer });
/** Exporter objects: all of it (an edit by someone else must be undone), bookkeeping aside. */
const wholeObject = (o: KubeObject) => ({ ...o, metadata: { ...o.metadata, resourceVersion: undefined, managedFields: undefined } });

export interface ReconcileSummary {
  /** 0: everything valid and applied; 2: applied, some objects rejected; 1: not applied. */
  readonly exitCode: 0 | 1 | 2;
  /** When to run next, unless something changes first. */
  readonly requeueAfterMs: number;
}

export class Controller {
  readonly #o: ControllerOptions;
  readonly #d: ControllerDeps;
  readonly #signal: AbortSignal;
  readonly #reflectors: Record<keyof typeof PATHS, Reflector>;
  readonly #coalescer: Coalescer;
  #previous: Ruleset | undefined;
  /** The fingerprint marker our last apply left; undefined when unknown (then the applier lists first). */
  #previousFingerprint: string | null | undefined;
  #lastGoodFirewall: FirewallSpec | undefined;
  #periodicDue = true;
  #failures = 0;
  #lastError: string | undefined;
  #reconciles = 0;
  #lastVerified = Number.NEGATIVE_INFINITY;
  #nextTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: ControllerOptions, deps: ControllerDeps, signal: AbortSignal) {
    this.#o = options;
    this.#d = deps;
    this.#signal = signal;
    this.#coalescer = new Coalescer(() => this.#tick(), { delayMs: options.coalesceMs ?? 10, signal });
    const notify = () => this.#coalescer.notify();
    const make = (path: string, relevant?: (o: KubeObject) => unknown) =>
      new Reflector({
        api: deps.api,
        path,
        onChange: notify,
        ...(relevant ? { relevant } : {}),
        onError: (e) => deps.log.warn({ code: "api_failed", path }, `watch: ${e.message}; retrying`),
        signal,
      });
    this.#reflectors = {
      firewalls: make(PATHS.firewalls),
      policies: make(PATHS.policies),
      services: make(PATHS.services, serviceRelevant),
      endpoints: make(PATHS.endpoints, wholeObject),
      endpointSlices: make(PATHS.endpointSlices, wholeObject),
    };
    signal.addEventListener("abort", () => clearTimeout(this.#nextTimer), { once: true });
  }

  /** Number of reconciles run so far (for tests and metrics). */
  get reconciles(): number {
    return this.#reconciles;
  }

  /** Ready: every cache listed and watching, and the last reconcile did not fail. */
  readiness(): { ok: boolean; reason: string } {
    for (const [name, r] of Object.entries(this.#reflectors)) {
      if (!r.synced) return { ok: false, reason: `${name}: not listed yet${r.lastError ? ` (${r.lastError.message})` : ""}` };
      if (!r.connected && r.lastError) return { ok: false, reason: `${name}: ${r.lastError.message}` };
    }
    if (this.#lastError) return { ok: false, reason: this.#lastError };
    return { ok: true, reason: "ok" };
  }

  /** Installs the CRDs, starts the caches, reconciles until the signal aborts. Rules stay in place on exit. */
  async run(): Promise<void> {
    await this.#ensureCrds();
    if (this.#signal.aborted) return;
    for (const r of Object.values(this.#reflectors)) void r.start();
    // The first reconcile waits for every cache: acting on a half-listed cluster could drop traffic.
    while (!this.#signal.aborted && !Object.values(this.#reflectors).every((r) => r.synced)) await sleep(20, this.#signal);
    this.#coalescer.notify();
    await new Promise<void>((resolve) => {
      if (this.#signal.aborted) resolve();
      else this.#signal.addEventListener("abort", () => resolve(), { once: true });
    });
    await this.#coalescer.idle();
  }

  /** `--once` against the cluster: CRDs, one list of everything, one reconcile. */
  async runOnce(): Promise<ReconcileSummary> {
    await this.#ensureCrds(1);
    for (const [name, r] of Object.entries(this.#reflectors)) {
      try {
        await r.listOnce();
      } catch (e) {
        throw new FirewallError("api_failed", `listing ${name} failed: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    return this.#reconcile(true);
  }

  /** Resolves when no reconcile is pending (tests). */
  idle(): Promise<void> {
    return this.#coalescer.idle();
  }

  async #ensureCrds(maxAttempts = Number.POSITIVE_INFINITY): Promise<void> {
    for (let attempt = 0; !this.#signal.aborted; attempt++) {
      try {
        const r = await ensureCrds(this.#d.api);
        if (r.created.length + r.updated.length > 0) this.#d.log.info(r, "custom resource definitions installed");
        return;
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        this.#lastError = `installing CRDs: ${msg}`;
        if (attempt + 1 >= maxAttempts) throw e;
        this.#d.log.warn({ code: "api_failed" }, `installing CRDs failed: ${msg}; retrying`);
        await sleep(backoffDelay(attempt), this.#signal);
      }
    }
  }

  /** One coalesced run, then the schedule of the next; failures back off. */
  async #tick(): Promise<void> {
    clearTimeout(this.#nextTimer);
    const periodic = this.#periodicDue;
    this.#periodicDue = false;
    let next: number;
    try {
      next = (await this.#reconcile(periodic)).requeueAfterMs;
      this.#failures = 0;
    } catch (e) {
      // Error policy: log, mark not ready, retry with backoff; the rules in the kernel stay.
      const msg = e instanceof Error ? e.message : String(e);
      this.#lastError = msg;
      this.#d.log.error({ code: e instanceof FirewallError ? e.code : "api_failed" }, `reconcile failed: ${msg}`);
      next = backoffDelay(this.#failures++, { baseMs: 500 });
      this.#periodicDue = true;
    }
    if (this.#signal.aborted) return;
    this.#nextTimer = setTimeout(() => {
      this.#periodicDue = true;
      this.#coalescer.notify();
    }, next);
  }

  async #reconcile(periodic: boolean): Promise<ReconcileSummary> {
    this.#reconciles++;
    const { log } = this.#d;
    const fwObject = this.#reflectors.firewalls.get(FIREWALL_NAMESPACE, this.#o.firewallName);
    if (!fwObject) {
      // Level-based: no Firewall object means this firewall is not configured: no table, no shaping.
      const removed = await removeRuleset({ nft: this.#d.nft, table: TABLE });
      const shaping = await this.#d.shaper.reconcile([]);
      this.#previous = undefined;
      this.#previousFingerprint = undefined;
      this.#lastGoodFirewall = undefined;
      if (removed || shaping.changed) log.info({}, `Firewall ${FIREWALL_NAMESPACE}/${this.#o.firewallName} is absent: table inet ${TABLE} and shaping removed`);
      // Policy statuses are left alone: an HA peer that has its Firewall object may be reporting them.
      this.#lastError = undefined;
      return { exitCode: 0, requeueAfterMs: DEFAULT_INTERVAL_MS };
    }

    const objects = [fwObject, ...this.#reflectors.policies.items(), ...this.#reflectors.services.items()].map((object) => ({ object }));
    let desired = buildDesiredState(objects, { firewallName: this.#o.firewallName, clusterPrefixes: this.#o.clusterPrefixes, privateVrf: this.#o.privateVrf });
    if (desired.firewall) this.#lastGoodFirewall = desired.firewall;
    else if (this.#lastGoodFirewall) {
      // An invalid edit of the Firewall keeps the last good one in force (and is reported), rather than dropping shaping.
      desired = { ...desired, firewall: this.#lastGoodFirewall, state: { ...desired.state, internalPrefixes: this.#lastGoodFirewall.internalPrefixes } };
    }

    const now = performance.now();
    // After unverified patches the next periodic run fingerprints the table (vouched for, since we
    // patched it ourselves); otherwise verification comes at most once a minute.
    const unstamped = this.#previous !== undefined && this.#previousFingerprint === null;
    const verify = periodic && (unstamped || now - this.#lastVerified >= VERIFY_EVERY_MS);
    if (verify) this.#lastVerified = now;
    const vouchedRevision = unstamped && this.#previous ? revisionOf(this.#previous.text) : undefined;
    const result = await reconcile(
      desired,
      {
        mode: "apply",
        table: TABLE,
        rulesetFile: this.#o.rulesetFile,
        ...(this.#previous ? { previous: this.#previous } : {}),
        ...(this.#previousFingerprint === undefined ? {} : { previousFingerprint: this.#previousFingerprint }),
        ...(vouchedRevision ? { vouchedRevision } : {}),
        verify,
      },
      this.#d,
    );
    if (result.rules === "changed" || result.rules === "unchanged") {
      this.#previous = result.ruleset;
      this.#previousFingerprint = result.fingerprint;
    } else if (result.rules === "failed") {
      this.#previous = undefined;
      this.#previousFingerprint = undefined;
    }

    for (const e of result.errors) log.error({ code: e.code }, e.message);
    for (const p of result.shapingProblems) log.warn({ code: "shaping_failed", interface: p.interface }, p.message);
    if (result.rules === "changed") {
      log.info({ mode: result.applyMode, policies: desired.state.policies.length, services: desired.state.services.length, rejected: desired.rejected.length, ...result.timings }, "ruleset applied");
    }

    await this.#writePolicyStatuses(desired);
    await this.#writeFirewallStatus(fwObject, desired, result, periodic);
    const exporter = await reconcileExporterServices(this.#d.api, this.#o.serviceIp, {
      name: this.#o.firewallName,
      isLive: (n) => this.#reflectors.firewalls.get(FIREWALL_NAMESPACE, n) !== undefined,
    });
    for (const p of exporter.problems) log.warn({ code: "api_failed" }, `exporter services: ${p}`);
    if (exporter.created.length + exporter.updated.length + exporter.deleted.length > 0) log.info(exporter, "exporter services reconciled");

    const failed = result.rules === "failed" || result.errors.length > 0;
    this.#lastError = failed ? result.errors.map((e) => e.message).join("; ") : undefined;
    if (failed) throw new FirewallError(result.errors[0]?.code ?? "nft_apply_failed", this.#lastError ?? "reconcile failed");
    return { exitCode: desired.rejected.length > 0 ? 2 : 0, requeueAfterMs: desired.firewall?.intervalMs ?? DEFAULT_INTERVAL_MS };
  }

  async #writePolicyStatuses(desired: Classified): Promise<void> {
    const rejected = new Map(desired.rejected.map((r) => [`${r.ref.namespace}/${r.ref.name}`, r.problems]));
    const notes = new Map(desired.notes.map((n) => [`${n.ref.namespace}/${n.ref.name}`, n.problems]));
    const ignored = new Map(desired.ignored.map((i) => [`${i.ref.namespace}/${i.ref.name}`, i.reason]));
    for (const o of this.#reflectors.policies.items()) {
      const key = `${o.metadata.namespace}/${o.metadata.name}`;
      const problems = rejected.get(key);
      let verdict: PolicyVerdict;
      if (o.metadata.namespace !== FIREWALL_NAMESPACE) verdict = { kind: "Ignored", reason: ignored.get(key) ?? `only policies in namespace ${FIREWALL_NAMESPACE} take effect` };
      else if (problems) verdict = { kind: "Invalid", problems };
      else verdict = { kind: "Ready", ...(notes.has(key) ? { notes: notes.get(key) } : {}) };
      const status = policyStatus(verdict, o.metadata.generation);
      // Only our fields count: another tool's additions to the status must not make us write every time.
      const current = (o as { status?: Record<string, unknown> }).status ?? {};
      if (sameStatus({ state: current.state, message: current.message, observedGeneration: current.observedGeneration }, { observedGeneration: undefined, ...status })) continue;
      const ns = o.metadata.namespace ?? "";
      const r = await this.#d.api.request("PATCH", `${GROUP}/namespaces/${ns}/clusterwidenetworkpolicies/${o.metadata.name}/status`, {
        body: { status },
        contentType: "application/merge-patch+json",
      });
      if (r.status !== 200) {
        this.#d.log.warn({ code: "api_failed", object: key }, `writing policy status failed: ${statusMessage(r)}`);
        // Unreachable: the other writes would fail alike; the next reconcile writes what is still due.
        if (r.status === 0) return;
        continue;
      }
      if (verdict.kind === "Invalid") {
        this.#d.log.error({ code: "invalid_object", object: formatRef({ kind: "ClusterwideNetworkPolicy", namespace: ns, name: o.metadata.name }), problems: verdict.problems }, "policy rejected");
        await this.#d.events.record(involved(o, "ClusterwideNetworkPolicy"), "Warning", "InvalidPolicy", `rejected, not applied: ${formatProblems(verdict.problems)}`);
      }
    }
  }

  async #writeFirewallStatus(o: KubeObject, desired: Classified, result: ReconcileResult, periodic: boolean): Promise<void> {
    const fwRejected = desired.rejected.find((r) => r.ref.kind === "Firewall");
    const current = (o as { status?: { message?: string; conditions?: Condition[] } }).status;
    const status = firewallStatus(
      {
        rules: result.rules === "failed" ? "failed" : result.rules === "skipped" ? "dry-run" : result.rules === "changed" ? "applied" : "unchanged",
        ...(result.errors[0] ? { failure: { code: result.errors[0].code, message: result.errors[0].message } } : {}),
        policies: { ready: desired.state.policies.length, invalid: desired.rejected.filter((r) => r.ref.kind === "ClusterwideNetworkPolicy").length, ignored: desired.ignored.filter((i) => i.ref.kind === "ClusterwideNetworkPolicy").length },
        services: desired.state.services.length,
        rejectedNames: desired.rejected.filter((r) => r.ref.kind === "ClusterwideNetworkPolicy").map((r) => r.ref.name),
        shapingProblems: [
          ...result.shapingProblems.map((p) => `${p.interface}: ${p.message}`),
          ...(fwRejected ? [`this Firewall object is invalid (${formatProblems(fwRejected.problems)}); the last valid one stays in force`] : []),
        ],
      },
      (this.#d.clock ?? (() => new Date()))(),
      o.metadata.generation,
      current?.conditions,
    );
    const changed = current?.message !== status.message || !sameStatus(current?.conditions, status.conditions);
    // lastRun moves with the interval; other changes are written at once.
    if (!changed && !periodic) return;
    const r = await this.#d.api.request("PATCH", `${GROUP}/namespaces/${FIREWALL_NAMESPACE}/firewalls/${o.metadata.name}/status`, {
      body: { status },
      contentType: "application/merge-patch+json",
    });
    if (r.status !== 200) {
      this.#d.log.warn({ code: "api_failed" }, `writing the Firewall status failed: ${statusMessage(r)}`);
      return;
    }
    const rules = status.conditions.find((c) => c.type === "RulesApplied");
    const before = current?.conditions?.find((c) => c.type === "RulesApplied");
    if (rules?.status === "False" && rules.reason !== "DryRun" && (before?.status !== "False" || before.message !== rules.message)) {
      await this.#d.events.record(involved(o, "Firewall"), "Warning", rules.reason, rules.message);
    }
    if (fwRejected && changed) await this.#d.events.record(involved(o, "Firewall"), "Warning", "InvalidFirewall", formatProblems(fwRejected.problems));
  }
}

function involved(o: KubeObject, kind: string) {
  return {
    apiVersion: "metal-stack.io/v1",
    kind,
    namespace: o.metadata.namespace ?? FIREWALL_NAMESPACE,
    name: o.metadata.name,
    ...(o.metadata.uid ? { uid: o.metadata.uid } : {}),
  };
}
