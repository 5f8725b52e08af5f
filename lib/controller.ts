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
 * Fail closed (SPEC §4.7, §6): only an observed deletion of the Firewall
 * object (its deletionTimestamp, held by our finalizer) removes the table and
 * the shaping. A Firewall that is merely absent — never created, an API
 * server that came back empty, CRDs missing — leaves the kernel as it is and
 * makes readiness fail with the reason. Caches that failed and have not
 * relisted drive no reconcile; CRDs that vanish are reinstalled; the
 * interval's work runs on its own schedule whatever the rate of events.
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
import { formatProblems } from "./api/problem.ts";
import { IncrementalClassifier } from "./classifier.ts";
import { type Accepted, type Classified, FIREWALL_NAMESPACE, formatRef, objectKey, type Rejection, type Verdict } from "./desired-state.ts";
import { FirewallError } from "./errors.ts";
import type { ClusterApi, KubeObject } from "./kube/api.ts";
import { statusMessage, WatchError } from "./kube/api.ts";
import { type TrackedApi, trackContact } from "./kube/api-contact.ts";
import { backoffDelay, sleep } from "./kube/backoff.ts";
import { ensureCrds } from "./kube/crds.ts";
import type { EventRecorder } from "./kube/events.ts";
import { reconcileExporterServices } from "./kube/exporter-services.ts";
import { addFinalizer, hasFinalizer, isBeingDeleted, removeFinalizer } from "./kube/finalizer.ts";
import { Reflector, specOf } from "./kube/reflector.ts";
import { type Condition, firewallStatus, inForceText, type PolicyVerdict, policyStatus, sameStatus, statsPatch } from "./kube/status.ts";
import { LastValid } from "./last-valid.ts";
import type { ControllerMetrics } from "./metrics/controller.ts";
import type { DropLog } from "./droptailer/drop-log.ts";
import { DROPTAILER_SECRET, droptailerTarget } from "./droptailer/target.ts";
import type { CollectedStats } from "./stats/collect.ts";
import type { TableModel } from "./stats/model-snapshot.ts";
import { escapeText } from "./escape.ts";
import type { Logger } from "./log.ts";
import { Applier } from "./nft/applier.ts";
import type { NftClient } from "./nft/client.ts";
import { Coalescer } from "./coalescer.ts";
import { EXIT, exitCodeOf, type ExitCode } from "./exit-code.ts";
import { reconcile, type ReconcileDeps, type ReconcileResult, type Shaper } from "./reconcile.ts";
import { IncrementalRenderer } from "./ruleset/incremental.ts";
import type { Ruleset } from "./ruleset/render.ts";

export interface ControllerOptions {
  readonly firewallName: string;
  readonly clusterPrefixes: readonly Cidr[];
  readonly privateVrf: number | null;
  readonly serviceIp: string;
  readonly rulesetFile: string;
  /** Where a Firewall's `ipv4rulefile` may point (`--ruleset-dir`). */
  readonly rulesetDir?: string;
  /**
   * Least time between the end of a reconcile and the next one; default 0: an event runs at once,
   * and events during a run gather into one run right after it (the run's own duration is the
   * coalescing window, long exactly when the table is large).
   */
  readonly coalesceMs?: number;
  /** Not ready once the API server has not answered for this long; default {@link API_STALE_AFTER_MS}. */
  readonly apiStaleAfterMs?: number;
}

export interface ControllerDeps {
  readonly api: ClusterApi;
  readonly nft: NftClient;
  readonly shaper: Shaper;
  readonly writeFile: ReconcileDeps["writeFile"];
  /** Removes a ruleset file we wrote (a missing one is fine). */
  readonly removeFile: (path: string) => Promise<void>;
  readonly events: EventRecorder;
  readonly log: Logger;
  readonly clock?: () => Date;
  /** The controller's own metrics (`firewall_controller_*`), when served. */
  readonly metrics?: ControllerMetrics;
  /** The drop log (SPEC §10); the controller feeds it its target from the Secret and the droptailer pod. */
  readonly dropLog?: DropLog;
  /**
   * The interval's statistics for `status.stats` (counters, IDS); absent: none
   * are written. `model`: what this process applied, so our table need not be listed;
   * `intervalMs`: the interval they are for (counters read during it, by a scrape, may serve).
   */
  readonly statistics?: (model?: TableModel, intervalMs?: number) => Promise<CollectedStats>;
  /** Told the ruleset now in force after every apply (undefined: none known), for readers of the kernel's counters (lib/stats/kernel-snapshot.ts). */
  readonly applied?: (model: { readonly table: string; readonly ruleset: Ruleset } | undefined) => void;
}

const GROUP = "/apis/metal-stack.io/v1";
const TABLE = "firewall";
const DEFAULT_INTERVAL_MS = 10_000;
/**
 * Readiness fails when no list, watch event, write or probe got an answer
 * for this long: three of the default intervals, so one slow answer is no
 * alarm, but a hung API server is reported within half a minute.
 */
export const API_STALE_AFTER_MS = 30_000;
/** A quiet cluster sends nothing: probe (GET our Firewall) when nothing was heard for this long. */
const PROBE_AFTER_MS = 10_000;
/** A reconcile skipped for a stale cache is retried this soon (the relist itself also triggers one). */
const STALE_RETRY_MS = 1_000;

export const PATHS = {
  firewalls: `${GROUP}/namespaces/${FIREWALL_NAMESPACE}/firewalls`,
  // All namespaces: policies outside `firewall` are marked Ignored, so operators see why they do nothing.
  policies: `${GROUP}/clusterwidenetworkpolicies`,
  services: "/api/v1/services",
  endpoints: `/api/v1/namespaces/${FIREWALL_NAMESPACE}/endpoints`,
  endpointSlices: `/apis/discovery.k8s.io/v1/namespaces/${FIREWALL_NAMESPACE}/endpointslices`,
  secrets: `/api/v1/namespaces/${FIREWALL_NAMESPACE}/secrets`,
  pods: `/api/v1/namespaces/${FIREWALL_NAMESPACE}/pods`,
} as const;

/** The caches the ruleset is built from: a reconcile waits for all of them to be fresh. */
const RULE_SOURCES = ["firewalls", "policies", "services"] as const;

/**
 * What of a Service matters: for a LoadBalancer its spec and its load balancer
 * addresses (status); for any other type nothing, so the constant churn of a
 * cluster's ClusterIP Services triggers no reconcile (a change of type does).
 */
const serviceRelevant = (o: KubeObject) => {
  const spec = specOf(o) as { spec?: { type?: unknown } };
  if (spec.spec?.type !== "LoadBalancer") return null;
  return { spec, lb: (o as { status?: { loadBalancer?: unknown } }).status?.loadBalancer };
};
/** Of the Secrets only the droptailer client's data matters (a rotation); the others not at all. */
const secretRelevant = (o: KubeObject) => (o.metadata.name === DROPTAILER_SECRET ? (o as { data?: unknown }).data ?? {} : null);
/** Of the pods only the droptailer server's phase and address (a move). */
const podRelevant = (o: KubeObject) =>
  o.metadata.name.startsWith("droptailer") || o.metadata.labels?.app === "droptailer"
    ? { name: o.metadata.name, status: (o as { status?: { phase?: unknown; podIP?: unknown } }).status ?? {} }
    : null;
/** Exporter objects: all of it (an edit by someone else must be undone), bookkeeping aside. */
const wholeObject = (o: KubeObject) => ({ ...o, metadata: { ...o.metadata, resourceVersion: undefined, managedFields: undefined } });

export interface ReconcileSummary {
  /** See {@link ../exit-code.ts}. */
  readonly exitCode: ExitCode;
  /** When to run next, unless something changes first. */
  readonly requeueAfterMs: number;
  /** The objects rejected in this run (for `--once`'s stderr). */
  readonly rejected: readonly Rejection[];
  /** The first failed step's code, when a step failed. */
  readonly errorCode?: FirewallError["code"];
  /** Why the run did not do everything, for `--once`'s stderr. */
  readonly failure?: string;
}

/** Why the controller is not doing its job right now, if it is not; `undefined` when it is. */
type Trouble = string | undefined;

export class Controller {
  readonly #o: ControllerOptions;
  readonly #d: ControllerDeps;
  readonly #api: TrackedApi;
  readonly #signal: AbortSignal;
  readonly #reflectors: Record<Exclude<keyof typeof PATHS, "secrets" | "pods">, Reflector>;
  /** Only with a drop log: the droptailer Secret and pod. */
  readonly #dropTargets: { readonly secrets: Reflector; readonly pods: Reflector } | undefined;
  readonly #coalescer: Coalescer;
  readonly #lastValid = new LastValid<Accepted>();
  /** What this process applied, and what it knows of the kernel since (lib/nft/applier.ts). */
  readonly #applier: Applier;
  /** Renders in proportion to the change (lib/ruleset/incremental.ts); a cache, never the source of truth. */
  readonly #renderer = new IncrementalRenderer();
  #periodicDue = true;
  #intervalMs = DEFAULT_INTERVAL_MS;
  #failures = 0;
  #lastError: Trouble;
  /** Set while the Firewall object is absent (not deleted): the reason, for readiness. */
  #absent: Trouble;
  #crdsSuspect = false;
  #started = false;
  #probing = false;
  /** What the last statistics could not read or left out, repeated in every status message until it changes. */
  #lastStatsNotes: readonly string[] = [];
  /** An observed deletion was honoured: the Firewall being gone now is expected. */
  #deleted = false;
  /** Keys of the objects in the last applied state: first in line for the total budget. */
  #admitted: ReadonlySetLike<string> = new Set();
  /** Classifies again only what changed since the last reconcile. */
  readonly #classifier = new IncrementalClassifier();
  /**
   * Policy objects whose status was found to say what their verdict says, with that verdict: the
   * same object (its status included) and the same verdict need no second look. A write brings a
   * new object version, looked at once more. With the object's verdict key.
   */
  #statusInSync = new WeakMap<object, { readonly key: string; readonly verdict: Verdict | undefined }>();
  /** Every ruleset file this process wrote: removed with the table on deletion. */
  readonly #rulesetFiles = new Set<string>();
  #reconciles = 0;
  #classifications = 0;
  #policyStatusLooks = 0;
  #lastClassified: Classified | undefined;
  #periodicTimer: ReturnType<typeof setTimeout> | undefined;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #probeTimer: ReturnType<typeof setInterval> | undefined;
  /** The last text logged per topic, so a state is logged once when it changes, not every reconcile. */
  readonly #said = new Map<string, string>();
  /** The classification whose rejections were last reported (see #reportRejections). */
  #rejectionsSaid: Classified | undefined;
  /** The last status pass that left every policy's status right: for which verdicts, at which reflector count. */
  #statusPass: { readonly desired: Classified; readonly writes: number } | undefined;

  constructor(options: ControllerOptions, deps: ControllerDeps, signal: AbortSignal) {
    this.#o = options;
    this.#d = deps;
    this.#signal = signal;
    this.#api = trackContact(deps.api, () => this.#now(), () => deps.metrics?.apiError());
    this.#applier = new Applier({ nft: deps.nft, table: TABLE });
    deps.metrics?.readinessFrom(() => this.readiness().ok);
    this.#coalescer = new Coalescer(() => this.#tick(), { delayMs: options.coalesceMs ?? 0, signal });
    // Only the long-running controller reconciles on changes: in `--once` the lists would otherwise
    // start a second reconcile beside the one runOnce runs itself.
    const notify = () => {
      if (this.#started) this.#coalescer.notify();
    };
    const make = (path: string, relevant?: (o: KubeObject) => unknown) =>
      new Reflector({
        api: this.#api.api,
        path,
        onChange: notify,
        ...(relevant ? { relevant } : {}),
        onError: (e) => {
          // Our group answering 404 means its CRDs are gone (a rebuilt cluster): reinstall them.
          if (e instanceof WatchError && e.status === 404 && path.startsWith(GROUP)) this.#crdsSuspect = true;
          this.#sayOnce(`watch ${path}`, "warn", `watch ${path}: ${e.message}; retrying`, { code: "api_failed" });
        },
        signal,
      });
    this.#reflectors = {
      firewalls: make(PATHS.firewalls),
      policies: make(PATHS.policies),
      services: make(PATHS.services, serviceRelevant),
      endpoints: make(PATHS.endpoints, wholeObject),
      endpointSlices: make(PATHS.endpointSlices, wholeObject),
    };
    this.#dropTargets = deps.dropLog ? { secrets: make(PATHS.secrets, secretRelevant), pods: make(PATHS.pods, podRelevant) } : undefined;
    signal.addEventListener("abort", () => {
      clearTimeout(this.#periodicTimer);
      clearTimeout(this.#retryTimer);
      clearInterval(this.#probeTimer);
    }, { once: true });
  }

  /**
   * Reconciles whose classification was new (not the previous one again): a reconcile where
   * nothing that the rules depend on changed classifies nothing anew.
   */
  get classifications(): number {
    return this.#classifications;
  }

  /** Policy objects whose status a reconcile looked at (for tests: after one change, that policy alone). */
  get policyStatusLooks(): number {
    return this.#policyStatusLooks;
  }

  /** Number of reconciles run so far (for tests and metrics). */
  get reconciles(): number {
    return this.#reconciles;
  }

  #now(): number {
    return (this.#d.clock ?? (() => new Date()))().getTime();
  }

  /**
   * Ready: the API server answers, every cache the rules come from is listed
   * and fresh, our Firewall object is there, and the last reconcile did not
   * fail. Otherwise the first reason, for `/readyz`.
   */
  readiness(): { ok: boolean; reason: string } {
    const silentMs = this.#now() - this.#api.lastContact();
    const stale = this.#o.apiStaleAfterMs ?? API_STALE_AFTER_MS;
    if (Number.isFinite(silentMs) && silentMs > stale) {
      const failure = this.#api.lastFailure();
      return { ok: false, reason: `the API server has not answered for ${Math.round(silentMs / 1000)} s${failure ? ` (${failure})` : ""}; the rules in the kernel stay as they are` };
    }
    for (const [name, r] of Object.entries(this.#reflectors)) {
      if (!r.synced) return { ok: false, reason: `${name}: not listed yet${r.lastError ? ` (${r.lastError.message})` : ""}` };
      if (!r.fresh && (RULE_SOURCES as readonly string[]).includes(name)) return { ok: false, reason: `${name}: ${r.lastError?.message ?? "not re-listed yet"}` };
      if (!r.connected && r.lastError) return { ok: false, reason: `${name}: ${r.lastError.message}` };
    }
    if (this.#absent) return { ok: false, reason: this.#absent };
    if (this.#lastError) return { ok: false, reason: this.#lastError };
    return { ok: true, reason: "ok" };
  }

  /** Installs the CRDs, starts the caches, reconciles until the signal aborts. Rules stay in place on exit. */
  async run(): Promise<void> {
    await this.#ensureCrds();
    if (this.#signal.aborted) return;
    for (const r of Object.values(this.#reflectors)) void r.start();
    for (const r of Object.values(this.#dropTargets ?? {})) void r.start();
    this.#started = true;
    this.#probeTimer = setInterval(() => void this.#probe(), PROBE_AFTER_MS / 2);
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
    const r = await this.#reconcile(true);
    if (this.#absent) return { ...r, exitCode: EXIT.failed, failure: `${this.#absent}; nothing changed` };
    if (r.exitCode === EXIT.partial) return { ...r, failure: this.#lastError ?? "a step failed" };
    return r;
  }

  /** Resolves when no reconcile is pending (tests). */
  idle(): Promise<void> {
    return this.#coalescer.idle();
  }

  /** Logs `text` at `level` only when it differs from what was last said on `topic` (one line per state change). */
  #sayOnce(topic: string, level: "info" | "warn" | "error", text: string | undefined, fields: Record<string, unknown> = {}): void {
    if (text === undefined) {
      this.#said.delete(topic);
      return;
    }
    if (this.#said.get(topic) === text) return;
    this.#said.set(topic, text);
    this.#d.log[level](fields, text);
  }

  #relistAll(why: string): void {
    this.#d.log.warn({ code: "api_failed" }, `${why}: listing everything again (the API server may have lost its state); the rules in the kernel stay as they are meanwhile`);
    for (const r of Object.values(this.#reflectors)) r.relist();
  }

  /** When nothing was heard from the API server for a while, ask it something cheap. */
  async #probe(): Promise<void> {
    // Readiness changes are logged as they happen (one line each way), also when nothing else is.
    const ready = this.readiness();
    // The silence's length changes every time; the state does not.
    const state = ready.reason.startsWith("the API server has not answered")
      ? `the API server has not answered for over ${Math.round((this.#o.apiStaleAfterMs ?? API_STALE_AFTER_MS) / 1000)} s; the rules in the kernel stay as they are`
      : ready.reason;
    this.#sayOnce("readiness", ready.ok ? "info" : "warn", ready.ok ? "ready" : `not ready: ${state}`);
    if (this.#probing || this.#now() - this.#api.lastContact() < PROBE_AFTER_MS) return;
    this.#probing = true;
    // Our own Firewall, not /version: a single GET is a quorum read, so an API server whose
    // etcd is gone does not pass for one that answers.
    const r = await this.#api.api.request("GET", `${PATHS.firewalls}/${this.#o.firewallName}`).finally(() => {
      this.#probing = false;
    });
    const answered = r.status > 0 && r.status < 500;
    this.#sayOnce("api", answered ? "info" : "warn", answered ? "the API server answers" : `the API server does not answer: ${statusMessage(r)}`, answered ? {} : { code: "api_failed" });
  }

  async #ensureCrds(maxAttempts = Number.POSITIVE_INFINITY): Promise<void> {
    for (let attempt = 0; !this.#signal.aborted; attempt++) {
      try {
        const r = await ensureCrds(this.#api.api);
        if (r.created.length + r.updated.length > 0) this.#d.log.info(r, "custom resource definitions installed");
        // A CRD that had to be created again means the API server lost its state: the caches'
        // watches may hang on at a resourceVersion the new server has not reached yet.
        if (r.created.length > 0 && this.#started) this.#relistAll("CRDs were missing");
        this.#crdsSuspect = false;
        this.#sayOnce("crds", "info", undefined);
        if (this.#lastError?.startsWith("installing CRDs")) this.#lastError = undefined;
        return;
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        this.#lastError = `installing CRDs: ${msg}`;
        if (attempt + 1 >= maxAttempts) throw e;
        this.#sayOnce("crds", "warn", `installing CRDs failed: ${msg}; retrying`, { code: "api_failed" });
        await sleep(backoffDelay(attempt), this.#signal);
      }
    }
  }

  #schedulePeriodic(ms: number): void {
    clearTimeout(this.#periodicTimer);
    if (this.#signal.aborted) return;
    this.#periodicTimer = setTimeout(() => {
      this.#periodicDue = true;
      this.#coalescer.notify();
    }, ms);
  }

  #scheduleRetry(ms: number): void {
    clearTimeout(this.#retryTimer);
    if (this.#signal.aborted) return;
    this.#retryTimer = setTimeout(() => this.#coalescer.notify(), ms);
  }

  /**
   * One coalesced run. The periodic schedule is its own: events never push
   * it back, so lastRun, verification and statistics keep their interval
   * under any rate of events. Failures retry with backoff beside it.
   */
  async #tick(): Promise<void> {
    const periodic = this.#periodicDue;
    this.#periodicDue = false;
    // Cleared before, not after: the run may schedule its own retry (a stale cache, a conflict).
    clearTimeout(this.#retryTimer);
    if (periodic || this.#crdsSuspect) {
      // Once per interval (two GETs): CRDs deleted or replaced by a rebuilt cluster come back.
      await this.#ensureCrds(1).catch(() => {});
    }
    let failure: FirewallError | undefined;
    let r: ReconcileSummary | undefined;
    try {
      r = await this.#reconcile(periodic);
      if (r.exitCode === EXIT.partial) failure = new FirewallError(r.errorCode ?? "ruleset_file_failed", this.#lastError ?? "a step of the reconcile failed");
    } catch (e) {
      failure = e instanceof FirewallError ? e : new FirewallError("api_failed", e instanceof Error ? e.message : String(e));
    }
    if (failure) {
      // Error policy: log (once per distinct failure), mark not ready, retry with backoff; the
      // rules in the kernel stay (or, partly applied, are in force).
      this.#lastError = failure.message;
      this.#sayOnce("reconcile", "error", `reconcile failed: ${failure.message}`, { code: failure.code });
      // The retry is a full run (verification included): whatever failed is looked at again.
      this.#periodicDue = true;
      this.#scheduleRetry(backoffDelay(this.#failures++, { baseMs: 500 }));
      if (periodic || this.#periodicTimer === undefined) this.#schedulePeriodic(this.#intervalMs);
      return;
    }
    this.#failures = 0;
    if (this.#said.has("reconcile")) this.#sayOnce("reconcile", "info", undefined);
    const next = r?.requeueAfterMs ?? this.#intervalMs;
    if (periodic || next !== this.#intervalMs || this.#periodicTimer === undefined) {
      this.#intervalMs = next;
      this.#schedulePeriodic(next);
    }
  }

  async #reconcile(periodic: boolean): Promise<ReconcileSummary> {
    const { log } = this.#d;
    this.#followDropTarget();
    const stale = RULE_SOURCES.filter((n) => !this.#reflectors[n].fresh);
    if (stale.length > 0) {
      // A cache that failed may miss whatever happened meanwhile: acting on it could revoke or open
      // rules by mistake. The relist triggers the next reconcile; this retry is a backstop.
      this.#sayOnce("stale", "warn", `not reconciling: ${stale.join(", ")} not re-listed since a failure; the rules in the kernel stay as they are`, { code: "api_failed" });
      this.#periodicDue ||= periodic;
      this.#scheduleRetry(STALE_RETRY_MS);
      this.#d.metrics?.reconciled({ outcome: "skipped", seconds: 0 }, new Date(this.#now()));
      return { exitCode: EXIT.failed, requeueAfterMs: this.#intervalMs, rejected: [] };
    }
    this.#sayOnce("stale", "info", undefined);
    for (const r of Object.values(this.#reflectors)) if (r.fresh) this.#sayOnce(`watch ${r.path}`, "info", undefined);
    this.#reconciles++;
    const fwPath = `${PATHS.firewalls}/${this.#o.firewallName}`;
    const fwObject = this.#reflectors.firewalls.get(FIREWALL_NAMESPACE, this.#o.firewallName);
    const fwName = `Firewall ${FIREWALL_NAMESPACE}/${this.#o.firewallName}`;
    if (!fwObject) {
      // Absent is not deleted: a never-created Firewall, an API server restored from nothing, a
      // kubeconfig for the wrong cluster all look like this. The kernel stays as it is.
      this.#absent = this.#deleted
        ? `${fwName} was deleted: table inet ${TABLE} and its shaping were removed; nothing to do until it is created again`
        : `${fwName} is not in the API server (never created, or the API server lost it); the rules in the kernel stay as they are until it is back or deleted explicitly`;
      this.#sayOnce("firewall", "warn", this.#absent);
      this.#d.metrics?.reconciled({ outcome: "skipped", seconds: 0 }, new Date(this.#now()));
      return { exitCode: EXIT.failed, requeueAfterMs: this.#intervalMs, rejected: [] };
    }
    this.#deleted = false;

    if (isBeingDeleted(fwObject)) return this.#honourDeletion(fwObject, fwPath);
    // Only the long-running controller holds a finalizer: after `--once` nobody would remove it,
    // and `kubectl delete firewall` would hang.
    if (this.#started && !hasFinalizer(fwObject)) {
      const r = await addFinalizer(this.#api.api, fwPath, fwObject);
      // Not fatal: the rules still apply. A conflict (our cache is a write behind) is retried soon.
      if (r.status === 409 || r.status === 422) this.#scheduleRetry(STALE_RETRY_MS);
      else if (r.status !== 200) this.#sayOnce("finalizer", "warn", `adding the finalizer to Firewall ${FIREWALL_NAMESPACE}/${this.#o.firewallName} failed: ${statusMessage(r)}`, { code: "api_failed" });
      else this.#sayOnce("finalizer", "info", undefined);
    }

    // The Firewall, Policies and Services as of their last change that matters: our own status
    // writes (the Firewall's every interval) do not make them new objects to classify again.
    const fwStable = this.#reflectors.firewalls.getStable(FIREWALL_NAMESPACE, this.#o.firewallName) ?? fwObject;
    const objects = [fwStable, ...this.#reflectors.policies.stableItems(), ...this.#reflectors.services.stableItems()].map((object) => ({ object }));
    const desired = this.#classifier.classify(objects, {
      firewallName: this.#o.firewallName,
      clusterPrefixes: this.#o.clusterPrefixes,
      privateVrf: this.#o.privateVrf,
      lastValid: this.#lastValid,
      admitted: this.#admitted,
      ...(this.#o.rulesetDir === undefined ? {} : { rulesetDir: this.#o.rulesetDir }),
    });
    if (desired !== this.#lastClassified) this.#classifications++;
    this.#lastClassified = desired;
    if (desired.firewall === null) {
      // Invalid, and no valid version known to this process (it restarted since): its dryrun,
      // ruleset file and limits are unknown, so nothing may be applied on its behalf.
      await this.#reportRejections(desired);
      this.#absent = `${fwName} is invalid and this controller has not seen a valid version of it since it started; the rules in the kernel stay as they are until it is fixed`;
      this.#sayOnce("firewall", "warn", this.#absent);
      this.#d.metrics?.reconciled({ outcome: "skipped", seconds: 0 }, new Date(this.#now()));
      return { exitCode: EXIT.failed, requeueAfterMs: this.#intervalMs, rejected: desired.rejected };
    }
    this.#absent = undefined;
    this.#sayOnce("firewall", "info", undefined);

    const now = performance.now();
    // Events patch without verifying; periodic runs verify when the applier says it is due.
    const result = await reconcile(
      desired,
      { mode: "apply", table: TABLE, rulesetFile: this.#o.rulesetFile, applier: this.#applier, verify: periodic ? "periodic" : false, render: (s) => this.#renderer.render(s) },
      this.#d,
    );
    if (result.rules === "changed" || result.rules === "unchanged") {
      this.#admitted = desired.admitted;
      this.#rulesetFiles.add(desired.firewall.rulesetFile ?? this.#o.rulesetFile);
    }
    const applied = this.#applier.applied;
    this.#d.applied?.(applied ? { table: TABLE, ruleset: applied } : undefined);

    // Readiness knows the outcome before anyone can read it in the status written below.
    this.#lastError = result.errors.length > 0 ? result.errors.map((e) => e.message).join("; ") : undefined;
    this.#sayOnce("shaping", "warn", result.shapingProblems.length > 0 ? result.shapingProblems.map((p) => `rate limit on ${p.interface}: ${p.message}`).join("; ") : undefined, { code: "shaping_failed" });
    if (result.rules === "changed") {
      log.info({ mode: result.applyMode, policies: desired.state.policies.length, services: desired.state.services.length, rejected: desired.rejected.length, ...result.timings }, "ruleset applied");
    }

    await this.#reportRejections(desired);
    await this.#writePolicyStatuses(desired);
    await this.#writeFirewallStatus(fwObject, desired, result, periodic);
    const exporter = await reconcileExporterServices(this.#api.api, this.#o.serviceIp, {
      name: this.#o.firewallName,
      isLive: (n) => this.#reflectors.firewalls.get(FIREWALL_NAMESPACE, n) !== undefined,
    });
    this.#sayOnce("exporter", "warn", exporter.problems.length > 0 ? `exporter services: ${exporter.problems.join("; ")}` : undefined, { code: "api_failed" });
    if (exporter.created.length + exporter.updated.length + exporter.deleted.length > 0) log.info(exporter, "exporter services reconciled");

    const rejectedOf = (kind: string) => desired.rejected.filter((x) => x.ref.kind === kind).length;
    this.#d.metrics?.reconciled({
      outcome: result.rules === "failed" ? "failed" : result.errors.length > 0 ? "partial" : result.rules === "changed" ? "applied" : "unchanged",
      seconds: (performance.now() - now) / 1000,
      elements: result.ruleset.elementCount,
      policies: { ready: desired.state.policies.length, invalid: rejectedOf("ClusterwideNetworkPolicy"), ignored: desired.ignored.filter((i) => i.ref.kind === "ClusterwideNetworkPolicy").length },
      services: { inEffect: desired.state.services.filter((x) => x.addresses.length > 0 && x.ports.length > 0).length, pending: desired.state.services.filter((x) => x.addresses.length === 0 || x.ports.length === 0).length, invalid: rejectedOf("Service") },
    }, new Date(this.#now()));
    if (result.rules === "failed") throw new FirewallError(result.errors[0]?.code ?? "nft_apply_failed", this.#lastError ?? "reconcile failed");
    return {
      exitCode: exitCodeOf({ rules: result.rules, shaping: result.shaping, errors: result.errors.length }, desired.rejected.length),
      ...(result.errors[0] ? { errorCode: result.errors[0].code } : {}),
      requeueAfterMs: desired.firewall?.intervalMs ?? DEFAULT_INTERVAL_MS,
      rejected: desired.rejected,
    };
  }

  /** The drop log ships to where the cluster says: a rotated Secret or a moved pod takes effect at once. */
  #followDropTarget(): void {
    const t = this.#dropTargets;
    if (!t || !this.#d.dropLog) return;
    const r = droptailerTarget(t.secrets.get(FIREWALL_NAMESPACE, DROPTAILER_SECRET), t.pods.items());
    this.#d.dropLog.setTarget(r.ok ? r.target : undefined, r.ok ? undefined : r.reason);
    this.#sayOnce("droptailer", r.ok ? "info" : "warn", r.ok ? undefined : `drop log: not shipping: ${r.reason}`);
  }

  /** An observed deletion: remove our table and shaping, then let the object go. */
  async #honourDeletion(fwObject: KubeObject, fwPath: string): Promise<ReconcileSummary> {
    const removed = await this.#applier.remove();
    this.#d.applied?.(undefined);
    const shaping = await this.#d.shaper.reconcile([]);
    if (shaping.problems.length > 0) throw new FirewallError("shaping_failed", `removing shaping for the deleted Firewall: ${shaping.problems.map((p) => `${p.interface}: ${p.message}`).join("; ")}`);
    // The persisted ruleset too: the OS would otherwise load the deleted rules again at boot.
    for (const file of new Set([this.#o.rulesetFile, ...this.#rulesetFiles])) {
      try {
        await this.#d.removeFile(file);
      } catch (e) {
        throw new FirewallError("ruleset_file_failed", `removing ${file} for the deleted Firewall failed: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    this.#rulesetFiles.clear();
    this.#admitted = new Set();
    if (removed || shaping.changed) this.#d.log.info({}, `Firewall ${FIREWALL_NAMESPACE}/${this.#o.firewallName} is being deleted: table inet ${TABLE}, its shaping and the ruleset file removed`);
    this.#deleted = true;
    this.#absent = `Firewall ${FIREWALL_NAMESPACE}/${this.#o.firewallName} is being deleted: table inet ${TABLE} and its shaping were removed`;
    if (hasFinalizer(fwObject)) {
      const r = await removeFinalizer(this.#api.api, fwPath, fwObject);
      // 404: already gone. Anything else: retried; the kernel is already clean.
      if (r.status !== 200 && r.status !== 404) throw new FirewallError("api_failed", `removing the finalizer of Firewall ${FIREWALL_NAMESPACE}/${this.#o.firewallName} failed: ${statusMessage(r)}`);
    }
    this.#lastError = undefined;
    return { exitCode: EXIT.ok, requeueAfterMs: this.#intervalMs, rejected: [] };
  }

  /** A log line and an Event for every rejection, once per change of its problems (not every reconcile). */
  async #reportRejections(desired: Classified): Promise<void> {
    // The same classification as last time (the classifier returns the very object when nothing
    // changed): everything in it was said; at 10,000 policies the loop alone is felt.
    if (desired === this.#rejectionsSaid) return;
    // After the classification said last time, only the verdicts it says may have changed.
    const said = this.#rejectionsSaid;
    const since = said !== undefined && desired.changes !== undefined && desired.changes.from.deref() === said ? desired.changes.keys : undefined;
    this.#rejectionsSaid = desired;
    const verdicts: Iterable<readonly [string, Verdict | undefined]> = since ? [...since].map((k) => [k, desired.verdicts.get(k)] as const) : desired.verdicts;
    for (const [key, v] of verdicts) {
      // Only rejections are said (and forgotten below): no topic string for the 10,000 others.
      if (v?.state !== "rejected") continue;
      const topic = `rejected ${key}`;
      const text = `${formatProblems(v.problems)}${inForceText(v.inForce)}`;
      if (this.#said.get(topic) === text) continue;
      this.#said.set(topic, text);
      this.#d.log.error({ code: "invalid_object", object: formatRef(v.ref), problems: v.problems }, `rejected ${formatRef(v.ref)}`);
      const kind = v.ref.kind;
      const reason = kind === "Firewall" ? "InvalidFirewall" : kind === "Service" ? "InvalidService" : "InvalidPolicy";
      const object = kind === "Service"
        ? this.#reflectors.services.get(v.ref.namespace, v.ref.name)
        : kind === "Firewall"
          ? this.#reflectors.firewalls.get(v.ref.namespace, v.ref.name)
          : this.#reflectors.policies.get(v.ref.namespace, v.ref.name);
      if (object) await this.#d.events.record(involved(object, kind), "Warning", reason, `rejected: ${text}`);
    }
    for (const topic of [...this.#said.keys()]) {
      if (topic.startsWith("rejected ") && desired.verdicts.get(topic.slice("rejected ".length))?.state !== "rejected") this.#said.delete(topic);
    }
  }

  async #writePolicyStatuses(desired: Classified): Promise<void> {
    // Nothing to look at when the verdicts and the policies (their statuses included) are those
    // of a pass that found or made every status right.
    const writes = this.#reflectors.policies.writes;
    if (this.#statusPass?.desired === desired && this.#statusPass.writes === writes) return;
    let complete = true;
    for (const o of this.#policiesToLookAt(desired)) {
      this.#policyStatusLooks++;
      const ns = o.metadata.namespace ?? "";
      // The key string kept with the object: building 10,000 of them anew was most of this loop.
      const known = this.#statusInSync.get(o);
      const key = known?.key ?? objectKey("ClusterwideNetworkPolicy", ns, o.metadata.name);
      const v: Verdict | undefined = desired.verdicts.get(key);
      if (known !== undefined && known.verdict === v) continue;
      let verdict: PolicyVerdict;
      if (!v || v.state === "ignored") verdict = { kind: "Ignored", reason: v?.reason ?? `only policies in namespace ${FIREWALL_NAMESPACE} take effect` };
      else if (v.state === "rejected") verdict = { kind: "Invalid", problems: v.problems, ...(v.inForce === undefined ? {} : { inForce: v.inForce }) };
      else verdict = { kind: "Ready", notes: v.notes };
      const status = policyStatus(verdict, o.metadata.generation);
      // Only our fields count: another tool's additions to the status must not make us write every time.
      const current = (o as { status?: Record<string, unknown> }).status ?? {};
      if (sameStatus({ state: current.state, message: current.message, observedGeneration: current.observedGeneration }, { observedGeneration: undefined, ...status })) {
        this.#statusInSync.set(o, { key, verdict: v });
        continue;
      }
      const r = await this.#api.api.request("PATCH", `${GROUP}/namespaces/${ns}/clusterwidenetworkpolicies/${o.metadata.name}/status`, {
        body: { status },
        contentType: "application/merge-patch+json",
      });
      if (r.status !== 200) {
        complete = false;
        this.#d.log.warn({ code: "api_failed", object: `${ns}/${o.metadata.name}` }, `writing policy status failed: ${statusMessage(r)}`);
        // Unreachable: the other writes would fail alike; the next reconcile writes what is still due.
        if (r.status === 0) return;
      }
    }
    if (complete) this.#statusPass = { desired, writes };
  }

  /**
   * The policies whose status may be due: after a pass that left every status right, only those
   * whose object changed since, or whose verdict the classification says may have (at 10,000
   * policies a walk of all of them was ~10 % of an event's work); else all of them.
   */
  #policiesToLookAt(desired: Classified): readonly KubeObject[] {
    const reflector = this.#reflectors.policies;
    const pass = this.#statusPass;
    if (pass === undefined) return reflector.items();
    const objects = reflector.changedSince(pass.writes);
    const verdicts = pass.desired === desired ? new Set<string>() : desired.changes !== undefined && desired.changes.from.deref() === pass.desired ? desired.changes.keys : undefined;
    if (!objects || !verdicts) return reflector.items();
    const keys = new Set(objects);
    for (const k of verdicts) {
      const [kind, namespace, name] = JSON.parse(k) as [string, string, string];
      if (kind === "ClusterwideNetworkPolicy") keys.add(`${namespace}/${name}`);
    }
    const out: KubeObject[] = [];
    for (const k of keys) {
      const slash = k.indexOf("/");
      const o = reflector.get(k.slice(0, slash), k.slice(slash + 1));
      if (o) out.push(o);
    }
    return out;
  }

  async #writeFirewallStatus(o: KubeObject, desired: Classified, result: ReconcileResult, periodic: boolean): Promise<void> {
    const fwVerdict = desired.verdicts.get(objectKey("Firewall", FIREWALL_NAMESPACE, this.#o.firewallName));
    const fwRejected = fwVerdict?.state === "rejected" ? fwVerdict : undefined;
    const current = (o as { status?: { message?: string; conditions?: Condition[] } }).status;
    const inEffect = desired.state.services.filter((s) => s.addresses.length > 0 && s.ports.length > 0).length;
    const rejectedRules = desired.rejected.filter((r) => r.ref.kind === "ClusterwideNetworkPolicy" || r.ref.kind === "Service");
    const status = firewallStatus(
      {
        rules: result.rules === "failed" ? "failed" : result.rules === "skipped" ? "dry-run" : result.rules === "changed" ? "applied" : "unchanged",
        ...(result.errors[0] ? { failure: { code: result.errors[0].code, message: result.errors[0].message } } : {}),
        // Rejected policies and Services alike: both are rules an operator expects and does not get.
        policies: { ready: desired.state.policies.length, invalid: rejectedRules.length, ignored: desired.ignored.filter((i) => i.ref.kind === "ClusterwideNetworkPolicy").length },
        services: { inEffect, pending: desired.state.services.length - inEffect },
        rejectedNames: rejectedRules.map((r) => (r.ref.kind === "Service" ? `service ${r.ref.namespace}/${r.ref.name}` : r.ref.name)),
        shapingProblems: [
          ...result.shapingProblems.map((p) => `${p.interface}: ${p.message}`),
          ...(fwRejected ? [`this Firewall object is invalid (${formatProblems(fwRejected.problems)})${inForceText(fwRejected.inForce)}`] : []),
        ],
      },
      new Date(this.#now()),
      o.metadata.generation,
      current?.conditions,
    );
    // Statistics come with the interval (counters → status); what could not be read is said.
    const applied = this.#applier.applied;
    const model = applied ? { table: TABLE, countedRules: applied.countedRules, maps: [...applied.maps.keys()] } : undefined;
    const collected = periodic && this.#d.statistics ? await this.#d.statistics(model, this.#intervalMs) : undefined;
    if (collected) {
      this.#lastStatsNotes = collected.notes;
      this.#sayOnce("statistics", "warn", collected.notes.length > 0 ? `statistics: ${collected.notes.join("; ")}` : undefined);
    }
    const drops = this.#d.dropLog?.status();
    const dropNote = drops && !drops.shipping ? [`drop log not shipping: ${drops.reason ?? "unknown"}`] : [];
    const message = escapeText([status.message, ...this.#lastStatsNotes, ...dropNote].join("; "), { max: 16 * 1024 });
    const changed = current?.message !== message || !sameStatus(current?.conditions, status.conditions);
    // lastRun moves with the interval; other changes are written at once.
    if (!changed && !periodic) return;
    const body = { status: { ...status, message, policies: desired.state.policies.length, ...(collected ? { stats: statsPatch(collected.stats, (o as { status?: { stats?: unknown } }).status?.stats) } : {}) } };
    const r = await this.#api.api.request("PATCH", `${GROUP}/namespaces/${FIREWALL_NAMESPACE}/firewalls/${o.metadata.name}/status`, {
      body,
      contentType: "application/merge-patch+json",
    });
    if (r.status !== 200) {
      this.#d.log.warn({ code: "api_failed" }, `writing the Firewall status failed: ${statusMessage(r)}`);
      // Our cache holds a Firewall the server does not know: the cache is wrong, not the kernel.
      if (r.status === 404) this.#relistAll("the API server does not know the cached Firewall object");
      return;
    }
    // The answer is the server's object: another uid, or a resourceVersion behind ours, means the
    // server is not the one our caches follow (restored, rebuilt) while their watches stay silent.
    const served = (r.body as { metadata?: { uid?: unknown; resourceVersion?: unknown } } | null)?.metadata;
    const behind = Number(served?.resourceVersion) < Number(o.metadata.resourceVersion);
    if ((typeof served?.uid === "string" && served.uid !== o.metadata.uid) || behind) {
      this.#relistAll(behind ? "the API server's resourceVersion went backwards" : "the API server holds another Firewall object of that name than the cache");
      return;
    }
    const rules = status.conditions.find((c) => c.type === "RulesApplied");
    const before = current?.conditions?.find((c) => c.type === "RulesApplied");
    if (rules?.status === "False" && rules.reason !== "DryRun" && (before?.status !== "False" || before.message !== rules.message)) {
      await this.#d.events.record(involved(o, "Firewall"), "Warning", rules.reason, rules.message);
    }
  }
}

function involved(o: KubeObject, kind: string) {
  return {
    apiVersion: kind === "Service" ? "v1" : "metal-stack.io/v1",
    kind,
    namespace: o.metadata.namespace ?? FIREWALL_NAMESPACE,
    name: o.metadata.name,
    ...(o.metadata.uid ? { uid: o.metadata.uid } : {}),
  };
}
