/**
 * Classification for a controller that classifies the same cluster on every event: the same
 * result as {@link buildDesiredState}, but looking again only at the objects that changed since
 * the last call (by identity: the watch caches hand on an unchanged object as the same object).
 * At 10,000 policies a call costs a walk over the objects instead of classifying each.
 *
 * It takes the short way only where the outcome cannot depend on the order of objects: objects
 * from the API (no manifest source), one object per verdict key, everything within the total
 * element budget, at most {@link MAX_CHANGED} objects added or removed, the same options. Any
 * other call is {@link buildDesiredState} itself, and the next short way starts from it.
 *
 * @example
 * ```ts
 * import { parseCidr } from "./api/address.ts";
 * import { IncrementalClassifier } from "./classifier.ts";
 * import { LastValid } from "./last-valid.ts";
 * const cluster = parseCidr("10.0.0.0/8");
 * if (cluster.ok) {
 *   const classifier = new IncrementalClassifier();
 *   const options = { firewallName: "firewall", clusterPrefixes: [cluster.value], privateVrf: 42, lastValid: new LastValid() };
 *   console.log(classifier.classify([], options).state.policies.length); // 0
 * }
 * ```
 * @module
 */
import type { FirewallSpec } from "./api/firewall.ts";
import type { Policy } from "./api/policy.ts";
import type { LoadBalancer } from "./api/service.ts";
import {
  type Accepted,
  buildDesiredState,
  type Classified,
  classified,
  type ClassifyOptions,
  type Ignored,
  type Note,
  type ObjectRef,
  type Rejection,
  type Routed,
  routed,
  routeSignature,
  type Verdict,
} from "./desired-state.ts";
import { OverlayMap } from "./overlay-map.ts";
import { ELEMENT_BUDGET, policyElementCount, serviceElementCount } from "./ruleset/budget.ts";

/** More objects added or removed than this in one call: classified from scratch. */
export const MAX_CHANGED = 64;

/** What one object contributes to a result. */
interface Outcome {
  readonly key: string;
  readonly ref: ObjectRef;
  readonly verdict: Verdict;
  /** Ignored objects. */
  readonly ignored?: Ignored;
  /** Objects that reached validation: accepted (with their notes, if any) or rejected. */
  readonly accepted?: boolean;
  readonly note?: Note;
  readonly rejection?: Rejection;
  /** What it puts in force (its value, or for a rejected one its last valid version), and its kind. */
  readonly value?: Accepted;
  /** Set for objects that reached validation (they hold a place in the state, and a memory entry). */
  readonly takes?: boolean;
  /** Map elements of the value in force. */
  readonly count: number;
  /** The call that last found it in its input (to tell an object given twice). */
  seen?: number;
}

interface Last {
  readonly options: ClassifyOptions;
  readonly signature: string;
  readonly list: readonly object[];
  readonly outcomes: Map<object, Outcome>;
  /** Verdict key → the object it is for: one object per key, else order decides. */
  readonly keys: Map<string, object>;
  sum: number;
  result: Classified;
}

const countOf = (v: Accepted | undefined): number =>
  v === undefined ? 0 : v.kind === "ClusterwideNetworkPolicy" ? policyElementCount(v.policy) : v.kind === "Service" ? serviceElementCount(v.service) : 0;

/** A map or key set as an overlay map, to make versions of: itself when it is one already (once per full classification otherwise). */
function overlay<V>(m: ReadonlyMap<string, V> | ReadonlySetLike<string>): OverlayMap<string, V> {
  if (m instanceof OverlayMap) return m as OverlayMap<string, V>;
  if (m instanceof Map) return OverlayMap.of(m as Map<string, V>);
  const entries: [string, V][] = [];
  const keys = m.keys();
  for (let k = keys.next(); !k.done; k = keys.next()) entries.push([k.value, true as V]);
  return OverlayMap.of(entries);
}

export class IncrementalClassifier {
  #last: Last | undefined;
  #calls = 0;
  /** How the last call went (for tests and logs). */
  lastPath: "full" | "incremental" = "full";

  classify(objects: readonly { object: unknown; source?: string }[], options: ClassifyOptions): Classified {
    const last = this.#last;
    const quick = last ? this.#incremental(last, objects, options) : undefined;
    if (quick) {
      this.lastPath = "incremental";
      return quick;
    }
    this.lastPath = "full";
    const result = buildDesiredState(objects, options);
    this.#last = this.#remember(objects, options, result);
    return result;
  }

  /** What the next call starts from, when `result` is one the short way can continue (else undefined). */
  #remember(objects: readonly { object: unknown; source?: string }[], options: ClassifyOptions, result: Classified): Last | undefined {
    const budget = options.budget ?? ELEMENT_BUDGET;
    const signature = routeSignature(options, budget.perObject);
    const policies = new Map<string, Policy>(result.state.policies.map((p) => [p.name, p]));
    const services = new Map<string, LoadBalancer>(result.state.services.map((s) => [`${s.namespace}/${s.name}`, s]));
    const rejections = new Map<ObjectRef, Rejection>(result.rejected.map((r) => [r.ref, r]));
    const outcomes = new Map<object, Outcome>();
    const keys = new Map<string, object>();
    let sum = 0;
    for (const { object, source } of objects) {
      if (source !== undefined || typeof object !== "object" || object === null || Array.isArray(object) || outcomes.has(object)) return undefined;
      const r = routed(object, undefined, options, signature, budget.perObject);
      const { key, ref } = r.facts;
      const verdict = result.verdicts.get(key);
      // Two objects for one key (a name given twice, or one name as a policy and as something
      // ignored): which one counts depends on the order.
      if (!verdict || keys.has(key)) return undefined;
      keys.set(key, object);
      if (r.route.t === "ignore") {
        outcomes.set(object, { key, ref, verdict, ignored: r.route.ignored, count: 0 });
        continue;
      }
      // A valid one is in force as itself; an invalid one by its last valid version, if the state has it.
      const value: Accepted | undefined = r.route.r.ok ? r.route.r.value
        : r.route.t === "policy" ? (policies.has(r.route.name) ? { kind: "ClusterwideNetworkPolicy", policy: policies.get(r.route.name) as Policy } : undefined)
        : r.route.t === "service" ? (services.has(r.route.skey) ? { kind: "Service", service: services.get(r.route.skey) as LoadBalancer } : undefined)
        : result.firewall ? { kind: "Firewall", firewall: result.firewall } : undefined;
      const count = countOf(value);
      sum += count;
      if (verdict.state === "accepted") {
        const notes = r.route.r.ok ? r.route.r.notes : [];
        outcomes.set(object, { key, ref, verdict, accepted: true, ...(notes.length > 0 ? { note: { ref, problems: notes } } : {}), ...(value ? { value } : {}), takes: true, count });
      } else {
        // Rejected for anything but its own problems (left out for the total budget, its last
        // valid version included): where order decides.
        const rejection = rejections.get(ref);
        if (r.route.r.ok || !rejection || rejection.problems !== r.route.r.problems) return undefined;
        outcomes.set(object, { key, ref, verdict, accepted: false, rejection, ...(value ? { value } : {}), takes: true, count });
      }
    }
    // Something was left out for the total budget: which, depends on the order of objects.
    if (sum > budget.total || result.rejected.length !== [...outcomes.values()].filter((o) => o.accepted === false).length) return undefined;
    return { options, signature, list: objects.map((o) => o.object as object), outcomes, keys, sum, result };
  }

  #incremental(last: Last, objects: readonly { object: unknown; source?: string }[], options: ClassifyOptions): Classified | undefined {
    const budget = options.budget ?? ELEMENT_BUDGET;
    const before = last.options;
    const samePrefixes = options.clusterPrefixes === before.clusterPrefixes ||
      (options.clusterPrefixes.length === before.clusterPrefixes.length && options.clusterPrefixes.every((c, i) => c.text === before.clusterPrefixes[i]?.text));
    if (options.lastValid !== before.lastValid || !samePrefixes || options.privateVrf !== before.privateVrf) return undefined;
    const signature = routeSignature(options, budget.perObject);
    const total = (before.budget ?? ELEMENT_BUDGET).total;
    if (signature !== last.signature || budget.total !== total) return undefined;

    const call = ++this.#calls;
    const added: object[] = [];
    const seen = new Set<object>();
    let kept = 0;
    let sameOrder = objects.length === last.list.length;
    for (let i = 0; i < objects.length; i++) {
      const { object, source } = objects[i] as { object: unknown; source?: string };
      if (source !== undefined || typeof object !== "object" || object === null || Array.isArray(object)) return undefined;
      if (sameOrder && last.list[i] !== object) sameOrder = false;
      const known = last.outcomes.get(object);
      if (known) {
        // An object given twice: the full classification says which counts.
        if (known.seen === call) return undefined;
        known.seen = call;
        kept++;
      } else {
        if (seen.has(object)) return undefined;
        seen.add(object);
        added.push(object);
        if (added.length > MAX_CHANGED) return undefined;
      }
    }
    if (sameOrder) return last.result; // the very same objects, in the same order
    const removed: object[] = [];
    if (kept !== last.outcomes.size) {
      for (const o of last.list) {
        if ((last.outcomes.get(o) as Outcome).seen === call) continue;
        removed.push(o);
        if (removed.length > MAX_CHANGED) return undefined;
      }
    }

    // Checks first, changes after: a call that falls back must leave the state as it was.
    const memory = options.lastValid;
    const routes = added.map((o) => routed(o, undefined, options, signature, budget.perObject));
    const freed = new Set(removed.map((o) => (last.outcomes.get(o) as Outcome).key));
    const claimed = new Set<string>();
    /** Keys an added object validates under: their memory entries stay. */
    const taken = new Set<string>();
    for (const r of routes) {
      const key = r.facts.key;
      if (claimed.has(key) || (last.keys.has(key) && !freed.has(key))) return undefined;
      claimed.add(key);
      if (r.route.t !== "ignore") taken.add(key);
    }
    // Outcomes of the added objects (the memory is read before anything is remembered, as the full classification does).
    const fresh = routes.map((r) => outcomeOf(r, memory));
    let sum = last.sum;
    for (const o of removed) sum -= (last.outcomes.get(o) as Outcome).count;
    for (const o of fresh) sum += o.count;
    if (sum > budget.total) return undefined;

    // Only the verdicts of objects that came or went can differ from the last result's (anything
    // order-dependent fell back above).
    const goneOutcomes = removed.map((o) => last.outcomes.get(o) as Outcome);
    const changedKeys = new Set<string>(fresh.map((o) => o.key));
    for (const o of goneOutcomes) changedKeys.add(o.key);
    // Likewise the policies and services in force: those of the objects that came, less those of
    // the objects that went (an invalid new version keeps its last valid value: it stays).
    const came = { policies: new Set<Policy>(), services: new Set<LoadBalancer>() };
    const went = { policies: new Set<Policy>(), services: new Set<LoadBalancer>() };
    const value = (v: Accepted | undefined, into: typeof came) => {
      if (v?.kind === "ClusterwideNetworkPolicy") into.policies.add(v.policy);
      else if (v?.kind === "Service") into.services.add(v.service);
    };
    for (const o of goneOutcomes) value(o.value, went);
    for (const o of fresh) value(o.value, came);
    for (const p of came.policies) if (went.policies.delete(p)) came.policies.delete(p);
    for (const x of came.services) if (went.services.delete(x)) came.services.delete(x);
    for (const o of removed) {
      const out = last.outcomes.get(o) as Outcome;
      last.outcomes.delete(o);
      if (last.keys.get(out.key) === o) last.keys.delete(out.key);
      // Gone, and not back as a new version: its last valid version goes with it.
      if (out.takes && !taken.has(out.key)) memory?.forget(out.key);
    }
    added.forEach((object, i) => {
      const out = fresh[i] as Outcome;
      last.outcomes.set(object, out);
      last.keys.set(out.key, object);
      const r = routes[i] as Routed;
      if (out.accepted && out.value) memory?.remember(out.key, r.facts.meta.uid, r.facts.meta.generation, out.value);
    });
    last.sum = sum;

    // The result, walked in input order as the full classification builds it.
    const accepted: ObjectRef[] = [];
    const rejected: Rejection[] = [];
    const ignored: Ignored[] = [];
    const notes: Note[] = [];
    const policies: Policy[] = [];
    const services: LoadBalancer[] = [];
    let firewall: FirewallSpec | null = null;
    let firewallPresent = false;
    const list: object[] = [];
    for (const { object } of objects) {
      const o = last.outcomes.get(object as object) as Outcome;
      list.push(object as object);
      if (o.ignored) {
        ignored.push(o.ignored);
        continue;
      }
      if (o.accepted) {
        if (o.note) notes.push(o.note);
        accepted.push(o.ref);
      } else rejected.push(o.rejection as Rejection);
      const v = o.value;
      if (o.ref.kind === "Firewall") firewallPresent = true;
      if (!v) continue;
      if (v.kind === "ClusterwideNetworkPolicy") policies.push(v.policy);
      else if (v.kind === "Service") services.push(v.service);
      else firewall = v.firewall;
    }
    // Verdicts and admitted keys: the last result's, changed where objects came and went (a
    // version costs the changes; building 10,000 entries anew was a third of this call).
    const admits = (outs: readonly Outcome[]) => outs.filter((o) => o.value?.kind === "ClusterwideNetworkPolicy" || o.value?.kind === "Service").map((o) => o.key);
    const cameKeys = new Set(fresh.map((o) => o.key));
    const verdicts = overlay(last.result.verdicts).next(goneOutcomes.map((o) => o.key).filter((k) => !cameKeys.has(k)), fresh.map((o) => [o.key, o.verdict] as const));
    const admitted = overlay(last.result.admitted).next(admits(goneOutcomes), admits(fresh).map((k) => [k, true] as const));
    const result = classified(options, {
      policies,
      services,
      firewall: firewall as FirewallSpec | null,
      firewallPresent,
      accepted,
      rejected,
      ignored,
      notes,
      verdicts,
      admitted,
      changes: { from: new WeakRef(last.result), keys: changedKeys },
    }, {
      from: new WeakRef(last.result.state),
      policies: { added: [...came.policies], removed: [...went.policies] },
      services: { added: [...came.services], removed: [...went.services] },
    });
    this.#last = { options, signature, list, outcomes: last.outcomes, keys: last.keys, sum, result };
    return result;
  }
}

/** One added object's outcome, as the full classification would find it (no duplicates, within the total). */
function outcomeOf(r: Routed, memory: ClassifyOptions["lastValid"]): Outcome {
  const { key, ref, meta } = r.facts;
  const route = r.route;
  if (route.t === "ignore") return { key, ref, verdict: route.verdict, ignored: route.ignored, count: 0 };
  const res = route.r;
  if (res.ok) {
    const value = res.value as Accepted;
    return { key, ref, verdict: r.verdict as Verdict, accepted: true, ...(res.notes.length > 0 ? { note: { ref, problems: res.notes } } : {}), value, takes: true, count: countOf(value) };
  }
  if (!memory) {
    const rejection: Rejection = { ref, problems: res.problems };
    return { key, ref, verdict: { state: "rejected", ...rejection }, accepted: false, rejection, takes: true, count: 0 };
  }
  const before = memory.recall(key, meta.uid);
  const inForce = before ? { generation: before.generation } : meta.generation !== undefined && meta.generation > 1 ? ("unknown" as const) : ("none" as const);
  const rejection: Rejection = { ref, problems: res.problems, inForce };
  const value = before?.value;
  return { key, ref, verdict: { state: "rejected", ...rejection }, accepted: false, rejection, ...(value ? { value } : {}), takes: true, count: countOf(value) };
}
