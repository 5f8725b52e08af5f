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
import type { DesiredState } from "./ruleset/render.ts";

/** Policies and the Firewall take effect only in this namespace. */
export const FIREWALL_NAMESPACE = "firewall";

export interface ObjectRef {
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  /** Where it was read from (a manifest file and document), if not from the API. */
  readonly source?: string;
}

export interface Rejection {
  readonly ref: ObjectRef;
  readonly problems: readonly Problem[];
}

export interface Ignored {
  readonly ref: ObjectRef;
  readonly reason: string;
}

export interface Note {
  readonly ref: ObjectRef;
  readonly problems: readonly Problem[];
}

export interface Classified {
  readonly state: DesiredState;
  /** The effective Firewall, or null when there is none (or it is invalid). */
  readonly firewall: FirewallSpec | null;
  /** A Firewall object for this firewall exists (even if invalid). */
  readonly firewallPresent: boolean;
  readonly accepted: readonly ObjectRef[];
  readonly rejected: readonly Rejection[];
  readonly ignored: readonly Ignored[];
  readonly notes: readonly Note[];
}

export interface ClassifyOptions {
  readonly firewallName: string;
  readonly clusterPrefixes: readonly Cidr[];
  readonly privateVrf: number | null;
}

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
// reused by identity: a reconcile at 1,000 policies then parses only what changed.
const parsed = new WeakMap<object, Validated<unknown>>();
function memo<T>(object: object, parse: (o: unknown) => Validated<T>): Validated<T> {
  let r = parsed.get(object) as Validated<T> | undefined;
  if (!r) {
    r = parse(object);
    parsed.set(object, r);
  }
  return r;
}

/** Classifies every object; `source` tells where each came from (manifest mode). */
export function buildDesiredState(objects: readonly { object: unknown; source?: string }[], options: ClassifyOptions): Classified {
  const accepted: ObjectRef[] = [];
  const rejected: Rejection[] = [];
  const ignored: Ignored[] = [];
  const notes: Note[] = [];
  const policies = new Map<string, { policy: Policy; ref: ObjectRef }>();
  const services = new Map<string, { service: LoadBalancer; ref: ObjectRef }>();
  let firewall: FirewallSpec | null = null;
  let firewallPresent = false;

  const take = <T>(ref: ObjectRef, r: Validated<T>): T | undefined => {
    if (!r.ok) {
      rejected.push({ ref, problems: r.problems });
      return undefined;
    }
    if (r.notes.length > 0) notes.push({ ref, problems: r.notes });
    return r.value;
  };

  for (const { object, source } of objects) {
    const ref = refOf(object, source);
    if (typeof object !== "object" || object === null || Array.isArray(object)) {
      rejected.push({ ref, problems: [{ path: "(object)", message: `${show(object)} is not a Kubernetes object` }] });
      continue;
    }
    const apiVersion = (object as { apiVersion?: unknown }).apiVersion;
    const group = typeof apiVersion === "string" && apiVersion.includes("/") ? apiVersion.split("/")[0] : "";
    switch (ref.kind) {
      case "ClusterwideNetworkPolicy": {
        if (group !== "metal-stack.io") {
          ignored.push({ ref, reason: `apiVersion ${show(apiVersion)} is not metal-stack.io/v1` });
          break;
        }
        if (ref.namespace !== FIREWALL_NAMESPACE) {
          ignored.push({ ref, reason: `namespace ${show(ref.namespace)} is not ${FIREWALL_NAMESPACE}; only policies there take effect` });
          break;
        }
        const policy = take(ref, memo(object, parsePolicy));
        if (!policy) break;
        const prev = policies.get(policy.name);
        if (prev) {
          rejected.push({ ref, problems: [{ path: "metadata.name", message: `${show(policy.name)} is defined twice; the first definition${prev.ref.source ? ` (${prev.ref.source})` : ""} is used` }] });
          break;
        }
        policies.set(policy.name, { policy, ref });
        accepted.push(ref);
        break;
      }
      case "Firewall": {
        if (group !== "metal-stack.io") {
          ignored.push({ ref, reason: `apiVersion ${show(apiVersion)} is not metal-stack.io/v1` });
          break;
        }
        if (ref.namespace !== FIREWALL_NAMESPACE || ref.name !== options.firewallName) {
          ignored.push({ ref, reason: `only Firewall ${FIREWALL_NAMESPACE}/${options.firewallName} configures this firewall` });
          break;
        }
        if (firewallPresent) {
          rejected.push({ ref, problems: [{ path: "metadata.name", message: `${show(ref.name)} is defined twice; the first definition is used` }] });
          break;
        }
        firewallPresent = true;
        const fw = take(ref, parseFirewall(object));
        if (fw) {
          firewall = fw;
          accepted.push(ref);
        }
        break;
      }
      case "Service": {
        if (apiVersion !== "v1") {
          ignored.push({ ref, reason: `apiVersion ${show(apiVersion)} is not v1` });
          break;
        }
        if (!isLoadBalancer(object)) {
          ignored.push({ ref, reason: "not of type LoadBalancer; opens nothing" });
          break;
        }
        const svc = take(ref, memo(object, parseService));
        if (!svc) break;
        const key = `${svc.namespace}/${svc.name}`;
        if (services.has(key)) {
          rejected.push({ ref, problems: [{ path: "metadata.name", message: `${show(key)} is defined twice; the first definition is used` }] });
          break;
        }
        services.set(key, { service: svc, ref });
        accepted.push(ref);
        break;
      }
      default:
        ignored.push({ ref, reason: `kind ${show(ref.kind)} is not used by firewall-controller` });
    }
  }

  const fw = firewall as FirewallSpec | null;
  return {
    state: {
      policies: [...policies.values()].map((p) => p.policy),
      services: [...services.values()].map((s) => s.service),
      clusterPrefixes: options.clusterPrefixes,
      internalPrefixes: fw?.internalPrefixes ?? [],
      privateVrf: options.privateVrf,
    },
    firewall: fw,
    firewallPresent,
    accepted,
    rejected,
    ignored,
    notes,
  };
}
