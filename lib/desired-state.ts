/**
 * Sorts the cluster's objects into what takes effect, what is rejected, and
 * what is out of scope (SPEC §3, §5, §8), and assembles the renderer's input.
 * Level-based: it looks only at the objects as they are now.
 *
 * @example
 * ```ts
 * import { parseCidr } from "./api/address.ts";
 * import { buildDesiredState } from "./desired-state.ts";
 * const cluster = parseCidr("10.0.0.0/8");
 * if (cluster.ok) {
 *   const d = buildDesiredState([], { firewallName: "firewall", clusterPrefixes: [cluster.value], privateVrf: 42 });
 *   console.log(d.rejected.length); // 0
 * }
 * ```
 * @module
 */
import type { Cidr } from "./api/address.ts";
import { type FirewallSpec, parseFirewall } from "./api/firewall.ts";
import { type Policy, parsePolicy } from "./api/policy.ts";
import { type Problem, show, type Validated } from "./api/problem.ts";
import { isLoadBalancer, type LoadBalancer, parseService } from "./api/service.ts";
import type { LastValid } from "./last-valid.ts";
import { budgetProblem, ELEMENT_BUDGET, policyElementCount, serviceElementCount } from "./ruleset/budget.ts";
import type { DesiredState, StateChanges } from "./ruleset/render.ts";

/** Policies and the Firewall take effect only in this namespace. */
export const FIREWALL_NAMESPACE = "firewall";

export interface ObjectRef {
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  /** Where it was read from (a manifest file and document), if not from the API. */
  readonly source?: string;
}

/**
 * Which version of a rejected object stays in force: the last valid one this
 * controller saw (its generation), or none; `unknown` when an earlier version
 * may have been valid but this process never saw it (it restarted since).
 */
export type InForce = { readonly generation: number | undefined } | "none" | "unknown";

export interface Rejection {
  readonly ref: ObjectRef;
  readonly problems: readonly Problem[];
  /** Set for objects read from the API (it has generations); absent in manifest mode. */
  readonly inForce?: InForce;
}

export interface Ignored {
  readonly ref: ObjectRef;
  readonly reason: string;
}

export interface Note {
  readonly ref: ObjectRef;
  readonly problems: readonly Problem[];
}

/** The outcome for one object, keyed by what it describes (see {@link objectKey}). */
export type Verdict =
  | { readonly state: "accepted"; readonly ref: ObjectRef; readonly notes: readonly Problem[] }
  | ({ readonly state: "rejected" } & Rejection)
  | ({ readonly state: "ignored" } & Ignored);

export interface Classified {
  readonly state: DesiredState;
  /** The effective Firewall, or null when there is none (or it is invalid and no valid version is known). */
  readonly firewall: FirewallSpec | null;
  /** A Firewall object for this firewall exists (even if invalid). */
  readonly firewallPresent: boolean;
  readonly accepted: readonly ObjectRef[];
  readonly rejected: readonly Rejection[];
  readonly ignored: readonly Ignored[];
  readonly notes: readonly Note[];
  /**
   * One verdict per object, keyed by kind, namespace and name: statuses and
   * Events are written from these, so a Service and a policy of the same
   * name never share one. A duplicate definition (manifests) keeps the
   * first's verdict here; the duplicate is in `rejected`. Read by key: its
   * order is not the objects' (an incremental classification appends).
   */
  readonly verdicts: ReadonlyMap<string, Verdict>;
  /** Keys of the policies and services in `state` (for the next run's `admitted`). */
  readonly admitted: ReadonlySetLike<string>;
  /**
   * Set by an incremental classification: the keys whose verdict may differ from those of the
   * classification `from` (held weakly); every other key has the very same verdict object there.
   * Lets a caller that walked `from`'s verdicts look at these keys alone.
   */
  readonly changes?: { readonly from: WeakRef<Classified>; readonly keys: ReadonlySet<string> };
}

/** What a valid object contributes; what {@link LastValid} remembers. */
export type Accepted =
  | { readonly kind: "ClusterwideNetworkPolicy"; readonly policy: Policy }
  | { readonly kind: "Service"; readonly service: LoadBalancer }
  | { readonly kind: "Firewall"; readonly firewall: FirewallSpec };

export interface ClassifyOptions {
  readonly firewallName: string;
  readonly clusterPrefixes: readonly Cidr[];
  readonly privateVrf: number | null;
  /**
   * The controller's memory of valid versions: with it, an invalid update
   * keeps the last valid version in force (and rejections say which).
   */
  readonly lastValid?: LastValid<Accepted>;
  /** Where a Firewall's `ipv4rulefile` may point (`--ruleset-dir`); default `/etc/nftables/`. */
  readonly rulesetDir?: string;
  /** Map elements per object and in total; default {@link ELEMENT_BUDGET} (tests use small ones). */
  readonly budget?: { readonly perObject: number; readonly total: number };
  /**
   * Keys of the objects in the last applied state (the previous result's
   * `admitted`): they come first under the total budget, so a newcomer can
   * never push out rules already in force.
   */
  readonly admitted?: ReadonlySetLike<string>;
}

/**
 * The key of an object's verdict: kind, namespace and name, unambiguous for
 * any strings (a hostile name cannot make two objects share one).
 *
 * @example
 * ```ts
 * import { objectKey } from "./desired-state.ts";
 * objectKey("Service", "firewall", "web") === objectKey("ClusterwideNetworkPolicy", "firewall", "web"); // false
 * ```
 */
export const objectKey = (kind: string, namespace: string, name: string): string => JSON.stringify([kind, namespace, name]);

/** `kind namespace/name (source)`, for messages. */
export const formatRef = (r: ObjectRef): string => `${r.kind} ${r.namespace}/${r.name}${r.source ? ` (${r.source})` : ""}`;

/**
 * User text as it may appear in a report line: plain when it is made of
 * name-like characters, else JSON-quoted, so a name can never add a line or
 * send a terminal escape.
 */
const printable = (x: string): string => (/^[A-Za-z0-9._\-/:#\[\]]{1,253}$/.test(x) ? x : show(x));

function refOf(object: unknown, source: string | undefined): ObjectRef {
  const o = (object ?? {}) as { kind?: unknown; metadata?: { name?: unknown; namespace?: unknown } };
  const text = (x: unknown, fallback: string) => (typeof x === "string" && x !== "" ? printable(x) : fallback);
  return {
    kind: text(o.kind, "(no kind)"),
    namespace: text(o.metadata?.namespace, "default"),
    name: text(o.metadata?.name, "(no name)"),
    ...(source ? { source: printable(source) } : {}),
  };
}

// Validation is pure and the caches hand us the same object until it changes, so a result can be
// reused by identity: a reconcile at 1,000 policies then parses only what changed. (The controller
// classifies each object as of its last change that matters — `Reflector.stableItems` — so a status
// write does not make a new object here; an index by content for that case held ~5 MB at 10,000
// policies and is gone.)
const parsed = new WeakMap<object, Validated<unknown>>();
function memo<T>(object: object, parse: (o: unknown) => Validated<T>): Validated<T> {
  let r = parsed.get(object) as Validated<T> | undefined;
  if (!r) parsed.set(object, (r = parse(object)));
  return r;
}

const rawMeta = (object: unknown) => {
  const m = (object as { metadata?: { name?: unknown; namespace?: unknown; uid?: unknown; generation?: unknown } }).metadata ?? {};
  const str = (x: unknown) => (typeof x === "string" ? x : "");
  return {
    name: str(m.name),
    namespace: str(m.namespace) || "default",
    uid: typeof m.uid === "string" || typeof m.uid === "number" ? String(m.uid) : undefined,
    generation: typeof m.generation === "number" ? m.generation : undefined,
  };
};

const wrapped = new WeakMap<object, Validated<Accepted>>();
/** One accepted verdict per validated value, and the value it accepted. */
const acceptedVerdicts = new WeakMap<object, Verdict>();
const accepts = new WeakMap<Verdict, Accepted>();
function acceptedVerdict(r: Extract<Validated<Accepted>, { ok: true }>, ref: ObjectRef): Verdict {
  let v = acceptedVerdicts.get(r);
  if (v === undefined || (v.state === "accepted" && v.ref !== ref)) {
    v = { state: "accepted", ref, notes: r.notes };
    acceptedVerdicts.set(r, v);
    accepts.set(v, r.value);
  }
  return v;
}

/** @internal */
export interface Facts {
  readonly ref: ObjectRef;
  readonly meta: ReturnType<typeof rawMeta>;
  readonly rawKind: unknown;
  readonly key: string;
  readonly apiVersion: unknown;
  readonly group: string | undefined;
}

// What every reconcile asks of an object before validating it, also by identity: at 10,000
// policies that is most of a reconcile's classification otherwise.
const facts = new WeakMap<object, Facts>();
function factsOf(object: object, source: string | undefined): Facts {
  const known = source === undefined ? facts.get(object) : undefined;
  if (known) return known;
  const meta = rawMeta(object);
  const rawKind = (object as { kind?: unknown }).kind;
  const apiVersion = (object as { apiVersion?: unknown }).apiVersion;
  const f: Facts = {
    ref: refOf(object, source),
    meta,
    rawKind,
    key: objectKey(typeof rawKind === "string" ? rawKind : "", meta.namespace, meta.name),
    apiVersion,
    group: typeof apiVersion === "string" && apiVersion.includes("/") ? apiVersion.split("/")[0] : "",
  };
  if (source === undefined) facts.set(object, f);
  return f;
}

/**
 * Where one object goes on its own, before any other object or the memory of valid versions has a
 * say: ignored (and why), or a policy, Service or Firewall with its validated (and budget-checked)
 * value. A function of the object and of the options in {@link routeSignature}.
 * @internal Exported for lib/classifier.ts.
 */
export type Route =
  | { readonly t: "ignore"; readonly ignored: Ignored; readonly verdict: Verdict }
  | { readonly t: "policy"; readonly name: string; readonly r: Validated<Extract<Accepted, { kind: "ClusterwideNetworkPolicy" }>> }
  | { readonly t: "service"; readonly skey: string; readonly r: Validated<Extract<Accepted, { kind: "Service" }>> }
  | { readonly t: "firewall"; readonly r: Validated<Extract<Accepted, { kind: "Firewall" }>> };

/** An object's facts and route, and for a valid one its accepted verdict, made once per identity and options. @internal Exported for lib/classifier.ts. */
export interface Routed {
  readonly facts: Facts;
  readonly signature: string;
  readonly route: Route;
  /** The accepted verdict of a valid object. */
  readonly verdict?: Verdict;
}

/** The options a route depends on. @internal For lib/classifier.ts. */
export const routeSignature = (options: ClassifyOptions, perObject: number): string =>
  JSON.stringify([options.firewallName, options.rulesetDir ?? null, perObject]);

// Every reconcile routes every object; by identity, an unchanged object costs one lookup.
const routes = new WeakMap<object, Routed>();

/** A valid object's value, unless it alone is over the per-object budget: then it is rejected like any invalid object. */
function withinObjectBudget<K extends Accepted["kind"], T>(wrap: (t: T) => Extract<Accepted, { kind: K }>, r: Validated<T>, count: (t: T) => number, perObject: number): Validated<Extract<Accepted, { kind: K }>> {
  if (!r.ok) return r;
  const n = count(r.value);
  if (n > perObject) return { ok: false, problems: [budgetProblem(n, perObject, "object")] };
  // The same wrapper for the same validated value: the last-valid memory then sees it unchanged.
  const known = wrapped.get(r) as Validated<Extract<Accepted, { kind: K }>> | undefined;
  if (known) return known;
  const w: Validated<Extract<Accepted, { kind: K }>> = { ok: true, value: wrap(r.value), notes: r.notes };
  wrapped.set(r, w);
  return w;
}

function routeOf(object: object, f: Facts, options: ClassifyOptions, perObject: number): Route {
  const { meta, rawKind, apiVersion, group, ref } = f;
  const ignore = (reason: string): Route => ({ t: "ignore", ignored: { ref, reason }, verdict: { state: "ignored", ref, reason } });
  switch (rawKind) {
    case "ClusterwideNetworkPolicy":
      if (group !== "metal-stack.io") return ignore(`apiVersion ${show(apiVersion)} is not metal-stack.io/v1`);
      if (meta.namespace !== FIREWALL_NAMESPACE) return ignore(`namespace ${show(meta.namespace)} is not ${FIREWALL_NAMESPACE}; only policies there take effect`);
      return { t: "policy", name: meta.name, r: withinObjectBudget((policy: Policy) => ({ kind: "ClusterwideNetworkPolicy", policy }), memo(object, parsePolicy), policyElementCount, perObject) };
    case "Firewall":
      if (group !== "metal-stack.io") return ignore(`apiVersion ${show(apiVersion)} is not metal-stack.io/v1`);
      if (meta.namespace !== FIREWALL_NAMESPACE || meta.name !== options.firewallName) return ignore(`only Firewall ${FIREWALL_NAMESPACE}/${options.firewallName} configures this firewall`);
      return { t: "firewall", r: withinObjectBudget((fw: FirewallSpec) => ({ kind: "Firewall", firewall: fw }), parseFirewall(object, options.rulesetDir === undefined ? {} : { rulesetDir: options.rulesetDir }), () => 0, perObject) };
    case "Service":
      if (apiVersion !== "v1") return ignore(`apiVersion ${show(apiVersion)} is not v1`);
      if (!isLoadBalancer(object)) return ignore("not of type LoadBalancer; opens nothing");
      return { t: "service", skey: `${meta.namespace}/${meta.name}`, r: withinObjectBudget((service: LoadBalancer) => ({ kind: "Service", service }), memo(object, parseService), serviceElementCount, perObject) };
    default:
      return ignore(`kind ${show(rawKind)} is not used by firewall-controller`);
  }
}

/** @internal For lib/classifier.ts. */
export function routed(object: object, source: string | undefined, options: ClassifyOptions, signature: string, perObject: number): Routed {
  const known = source === undefined ? routes.get(object) : undefined;
  if (known && known.signature === signature) return known;
  const f = factsOf(object, source);
  const route = routeOf(object, f, options, perObject);
  const r: Routed = { facts: f, signature, route, ...(route.t !== "ignore" && route.r.ok ? { verdict: acceptedVerdict(route.r, f.ref) } : {}) };
  if (source === undefined) routes.set(object, r);
  return r;
}

/** Classifies every object; `source` tells where each came from (manifest mode). */
export function buildDesiredState(objects: readonly { object: unknown; source?: string }[], options: ClassifyOptions): Classified {
  const accepted: ObjectRef[] = [];
  const rejected: Rejection[] = [];
  const ignored: Ignored[] = [];
  const notes: Note[] = [];
  const verdicts = new Map<string, Verdict>();
  const policies = new Map<string, { policy: Policy; ref: ObjectRef; key: string }>();
  const services = new Map<string, { service: LoadBalancer; ref: ObjectRef; key: string }>();
  const memory = options.lastValid;
  // Remembered only once the object is really in: one rejected by the total budget never was.
  const toRemember = new Map<string, Facts>();
  const budget = options.budget ?? ELEMENT_BUDGET;
  const live = new Set<string>();
  let firewall: FirewallSpec | null = null;
  let firewallPresent = false;

  const verdict = (key: string, v: Verdict) => {
    if (!verdicts.has(key)) verdicts.set(key, v);
  };
  const reject = (key: string, ref: ObjectRef, problems: readonly Problem[], inForce?: InForce) => {
    const r: Rejection = { ref, problems, ...(inForce === undefined ? {} : { inForce }) };
    rejected.push(r);
    verdict(key, { state: "rejected", ...r });
  };

  /**
   * A valid object's value, or, for an invalid one, its last valid version
   * when the controller remembers one (the rejection still reported).
   */
  const take = <K extends Accepted["kind"]>(o: Routed, r: Validated<Extract<Accepted, { kind: K }>>): Extract<Accepted, { kind: K }> | undefined => {
    const { key, ref, meta } = o.facts;
    if (memory) live.add(key);
    if (r.ok) {
      if (r.notes.length > 0) notes.push({ ref, problems: r.notes });
      if (memory) toRemember.set(key, o.facts);
      accepted.push(ref);
      verdict(key, o.verdict as Verdict);
      return r.value;
    }
    if (!memory) {
      reject(key, ref, r.problems);
      return undefined;
    }
    const before = memory.recall(key, meta.uid);
    if (before) {
      reject(key, ref, r.problems, { generation: before.generation });
      return before.value as Extract<Accepted, { kind: K }>;
    }
    reject(key, ref, r.problems, meta.generation !== undefined && meta.generation > 1 ? "unknown" : "none");
    return undefined;
  };

  const signature = routeSignature(options, budget.perObject);
  for (const { object, source } of objects) {
    if (typeof object !== "object" || object === null || Array.isArray(object)) {
      reject(objectKey("(none)", "", String(rejected.length)), refOf(object, source), [{ path: "(object)", message: `${show(object)} is not a Kubernetes object` }]);
      continue;
    }
    const o = routed(object, source, options, signature, budget.perObject);
    const { ref, meta, key } = o.facts;
    const route = o.route;
    switch (route.t) {
      case "ignore":
        ignored.push(route.ignored);
        verdict(key, route.verdict);
        break;
      case "policy": {
        const prev = policies.get(route.name);
        if (prev) {
          reject(key, ref, [{ path: "metadata.name", message: `${show(meta.name)} is defined twice; the first definition${prev.ref.source ? ` (${prev.ref.source})` : ""} is used` }]);
          break;
        }
        const v = take(o, route.r);
        if (v) policies.set(route.name, { policy: v.policy, ref, key });
        break;
      }
      case "firewall": {
        if (firewallPresent) {
          reject(key, ref, [{ path: "metadata.name", message: `${show(meta.name)} is defined twice; the first definition is used` }]);
          break;
        }
        firewallPresent = true;
        const v = take(o, route.r);
        if (v) firewall = v.firewall;
        break;
      }
      case "service": {
        if (services.has(route.skey)) {
          reject(key, ref, [{ path: "metadata.name", message: `${show(route.skey)} is defined twice; the first definition is used` }]);
          break;
        }
        const v = take(o, route.r);
        if (v) services.set(route.skey, { service: v.service, ref, key });
        break;
      }
    }
  }
  // The total budget. What was in force last time comes first (a newcomer never pushes out rules
  // in force), then policies by name and services by namespace/name. An object that would bring
  // the sum over the budget is rejected; later ones may still fit.
  const byKey = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  const admittedBefore = options.admitted ?? new Set<string>();
  let elements = 0;
  const withinTotal = <T>(entries: Map<string, { ref: ObjectRef; key: string } & T>, count: (e: T) => number) => {
    // All of them fit (the usual case): the order cannot matter, so nothing is sorted.
    let sum = 0;
    for (const e of entries.values()) sum += count(e);
    if (elements + sum <= budget.total) {
      elements += sum;
      return;
    }
    const names = [...entries.keys()].sort(byKey);
    const first: string[] = [];
    const then: string[] = [];
    for (const n of names) (admittedBefore.has((entries.get(n) as { key: string }).key) ? first : then).push(n);
    const order = [...first, ...then];
    for (const name of order) {
      const e = entries.get(name) as { ref: ObjectRef; key: string } & T;
      const n = count(e);
      if (elements + n <= budget.total) {
        elements += n;
        continue;
      }
      entries.delete(name);
      const key = e.key;
      toRemember.delete(key);
      verdicts.delete(key);
      const i = accepted.indexOf(e.ref);
      if (i >= 0) accepted.splice(i, 1);
      // An invalid object whose last valid version was standing in: it is out now for the budget.
      const j = rejected.findIndex((r) => r.ref === e.ref);
      if (j >= 0) rejected.splice(j, 1);
      reject(key, e.ref, [budgetProblem(elements + n, budget.total, "total")], memory ? "none" : undefined);
    }
  };
  withinTotal(policies, (e) => policyElementCount(e.policy));
  withinTotal(services, (e) => serviceElementCount(e.service));
  if (memory) {
    for (const [key, f] of toRemember) {
      const v = verdicts.get(key);
      if (v?.state === "accepted") memory.remember(key, f.meta.uid, f.meta.generation, (accepts.get(v) as Accepted));
    }
    memory.retain(live);
  }

  return classified(options, {
    policies: [...policies.values()].map((p) => p.policy),
    services: [...services.values()].map((s) => s.service),
    firewall: firewall as FirewallSpec | null,
    firewallPresent,
    accepted,
    rejected,
    ignored,
    notes,
    verdicts,
    admitted: new Set([...[...policies.values()].map((p) => p.key), ...[...services.values()].map((x) => x.key)]),
  });
}

/**
 * A classification result from its parts; the renderer's input takes the internal prefixes and
 * accept logging of the Firewall in force. @internal Exported for lib/classifier.ts.
 */
export function classified(
  options: ClassifyOptions,
  parts: Omit<Classified, "state"> & { readonly policies: readonly Policy[]; readonly services: readonly LoadBalancer[] },
  stateChanges?: StateChanges,
): Classified {
  const { policies, services, ...rest } = parts;
  const fw = parts.firewall;
  return {
    state: {
      policies,
      services,
      clusterPrefixes: options.clusterPrefixes,
      internalPrefixes: fw?.internalPrefixes ?? [],
      privateVrf: options.privateVrf,
      logAcceptedConnections: fw?.logAcceptedConnections ?? false,
      ...(stateChanges ? { changes: stateChanges } : {}),
    },
    ...rest,
  };
}
