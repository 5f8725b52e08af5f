/**
 * The element budget (SPEC §3.2): how many map elements one policy or service
 * may add to the ruleset, and all of them together.
 *
 * The counts are arithmetic (block ranges times port entries; nothing is
 * rendered), fast also for an object that would render a million elements, and
 * an upper bound of what that object adds to {@link renderRuleset}'s maps
 * whatever other objects exist: the renderer never splits one object's element
 * against another's (lib/ruleset/layers.ts), it only drops or shrinks them.
 * So the rendered ruleset has at most the sum of its objects' counts.
 *
 * The limits are measured (README "Benchmarks"): a ruleset at the total budget
 * still checks and loads with `nft` in a few seconds, where a million elements
 * took minutes and gigabytes.
 *
 * @example
 * ```ts
 * import { parsePolicy } from "../api/policy.ts";
 * import { budgetProblem, ELEMENT_BUDGET, policyElementCount } from "./budget.ts";
 * const r = parsePolicy({
 *   apiVersion: "metal-stack.io/v1", kind: "ClusterwideNetworkPolicy",
 *   metadata: { name: "allow-dns", namespace: "firewall" },
 *   spec: { egress: [{ to: [{ cidr: "8.8.8.8/32" }], ports: [{ protocol: "UDP", port: 53 }, { protocol: "TCP", port: 53 }] }] },
 * });
 * if (r.ok) {
 *   const count = policyElementCount(r.value); // 2
 *   if (count > ELEMENT_BUDGET.perObject) console.log(budgetProblem(count, ELEMENT_BUDGET.perObject, "object").message);
 * }
 * ```
 * @module
 */
import { type Family, subtractRanges } from "../api/address.ts";
import type { Policy, PolicyRule } from "../api/policy.ts";
import type { Problem } from "../api/problem.ts";
import type { LoadBalancer } from "../api/service.ts";

/** Map elements one object may render, and the whole ruleset. */
export const ELEMENT_BUDGET = { perObject: 10_000, total: 200_000 } as const;

/** Interval map entries a rule without ports adds per address range: tcp, udp, sctp in the ports map, one in the any map. */
const ANY_RULE_ELEMENTS = 4;

/** Address ranges of one rule in one family: each block's cidr minus its own excepts (missing peers: the whole family). */
function rangeCount(peers: PolicyRule["peers"], family: Family): number {
  if (peers === null) return 1;
  let n = 0;
  for (const b of peers) if (b.cidr.family === family) n += subtractRanges(b.cidr, b.except).length;
  return n;
}

/**
 * Upper bound of the map elements `policy` adds to the ruleset, computed
 * without rendering (each rule: its address ranges times its port entries).
 *
 * @example
 * ```ts
 * import { parsePolicy } from "../api/policy.ts";
 * import { policyElementCount } from "./budget.ts";
 * const r = parsePolicy({ apiVersion: "metal-stack.io/v1", kind: "ClusterwideNetworkPolicy", metadata: { name: "open" }, spec: { egress: [{}] } });
 * if (r.ok) policyElementCount(r.value); // 8: any IPv4 and any IPv6 address, tcp/udp/sctp/any each
 * ```
 */
export function policyElementCount(policy: Policy): number {
  // Parsed objects are immutable and handed on unchanged while the object is: counted once.
  const known = policyCounts.get(policy);
  if (known !== undefined) return known;
  let n = 0;
  for (const rule of [...policy.egress, ...policy.ingress]) {
    const perRange = rule.ports === null ? ANY_RULE_ELEMENTS : rule.ports.length;
    n += (rangeCount(rule.peers, 4) + rangeCount(rule.peers, 6)) * perRange;
  }
  policyCounts.set(policy, n);
  return n;
}

const policyCounts = new WeakMap<Policy, number>();

/**
 * Upper bound of the map elements `service` adds: its addresses times its
 * ports times its source ranges of the address's family (any source: one).
 *
 * @example
 * ```ts
 * import { parseService } from "../api/service.ts";
 * import { serviceElementCount } from "./budget.ts";
 * const r = parseService({ apiVersion: "v1", kind: "Service", metadata: { name: "web", namespace: "shop" },
 *   spec: { type: "LoadBalancer", ports: [{ port: 443 }, { port: 80 }] }, status: { loadBalancer: { ingress: [{ ip: "203.0.113.80" }] } } });
 * if (r.ok) serviceElementCount(r.value); // 2
 * ```
 */
export function serviceElementCount(service: LoadBalancer): number {
  let n = 0;
  for (const addr of service.addresses) {
    const sources = service.sourceRanges.length === 0 ? 1 : service.sourceRanges.filter((c) => c.family === addr.family).length;
    n += service.ports.length * sources;
  }
  return n;
}

const thousands = (n: number): string => n.toLocaleString("en-US");

/**
 * The problem reported for an object over the budget: `object` when its own
 * count is over `limit` (the per-object limit), `total` when `count` is the
 * running sum (in stable order) that this object brings over the total limit.
 *
 * @example
 * ```ts
 * import { budgetProblem } from "./budget.ts";
 * budgetProblem(1_001_000, 10_000, "object");
 * // { path: "spec", message: "renders 1,001,000 map elements, more than the limit of 10,000 per object" }
 * ```
 */
export function budgetProblem(count: number, limit: number, scope: "object" | "total"): Problem {
  return {
    path: "spec",
    message:
      scope === "object"
        ? `renders ${thousands(count)} map elements, more than the limit of ${thousands(limit)} per object`
        : `brings the ruleset to ${thousands(count)} map elements, more than the limit of ${thousands(limit)} in total (objects already in force come first, then by name)`,
  };
}
