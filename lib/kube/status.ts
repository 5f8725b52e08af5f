/**
 * What the controller reports into the objects' status (SPEC §3.1, §3.2):
 * pure functions from one reconcile's outcome to the Firewall status and to
 * every policy's status. `lastTransitionTime` only moves when a condition's
 * status does, so an unchanged world writes nothing.
 *
 * @example
 * ```ts
 * import { policyStatus } from "./status.ts";
 * policyStatus({ kind: "Invalid", problems: [{ path: "spec.egress[0].ports[0].port", message: "0 is not a port (1..65535)" }] }, 3);
 * // { state: "Invalid", message: "spec.egress[0].ports[0].port: 0 is not a port (1..65535)", observedGeneration: 3 }
 * ```
 * @module
 */
import { formatProblems, type Problem } from "../api/problem.ts";
import type { InForce } from "../desired-state.ts";
import { escapeText } from "../escape.ts";
import type { FirewallStats } from "../stats/collect.ts";

/**
 * Status messages pass the output gate: kubectl prints them as they are.
 * 16 KiB keeps the objects far from etcd's limit with room for every problem
 * of a broken policy (each value in them is cut at the source already).
 */
const MAX_STATUS_MESSAGE = 16 * 1024;
const gate = (text: string) => escapeText(text, { max: MAX_STATUS_MESSAGE });

export interface Condition {
  readonly type: "Ready" | "RulesApplied";
  readonly status: "True" | "False" | "Unknown";
  readonly reason: string;
  readonly message: string;
  readonly lastTransitionTime: string;
  readonly observedGeneration?: number;
}

export interface PolicyStatus {
  readonly state: "Ready" | "Invalid" | "Ignored";
  readonly message: string;
  readonly observedGeneration?: number;
}

/** How one policy fared in a reconcile. */
export type PolicyVerdict =
  | { readonly kind: "Ready"; readonly notes?: readonly Problem[] }
  | { readonly kind: "Invalid"; readonly problems: readonly Problem[]; readonly inForce?: InForce }
  | { readonly kind: "Ignored"; readonly reason: string };

// The API server keeps status.message, but kubectl shows it in a column: long lists of problems stay whole here.
export function policyStatus(verdict: PolicyVerdict, generation: number | undefined): PolicyStatus {
  const observed = generation === undefined ? {} : { observedGeneration: generation };
  switch (verdict.kind) {
    case "Invalid":
      return { state: "Invalid", message: gate(`${formatProblems(verdict.problems)}${inForceText(verdict.inForce)}`), ...observed };
    case "Ignored":
      return { state: "Ignored", message: gate(verdict.reason), ...observed };
    case "Ready": {
      // Whether it is in the kernel is each firewall's own business (its Firewall's RulesApplied):
      // an HA pair writes this status from two machines, and the two must agree.
      const notes = verdict.notes && verdict.notes.length > 0 ? `; ${formatProblems(verdict.notes)}` : "";
      return { state: "Ready", message: gate(`valid${notes}`), ...observed };
    }
  }
}

/**
 * What stays in force of a rejected object, for its status and Event.
 *
 * @example
 * ```ts
 * import { inForceText } from "./status.ts";
 * inForceText({ generation: 3 }); // "; generation 3, the last valid one, stays in force"
 * ```
 */
export function inForceText(inForce: InForce | undefined): string {
  if (inForce === undefined) return "";
  if (inForce === "none") return "; not in force";
  if (inForce === "unknown") return "; not in force: an earlier version may have been valid, but this controller has not seen one since it started";
  return `; ${inForce.generation === undefined ? "the last valid version" : `generation ${inForce.generation}, the last valid one,`} stays in force`;
}

/** The Firewall-level summary of one reconcile. */
export interface FirewallOutcome {
  /** `applied`, `unchanged`, `dry-run` (spec.dryrun), or `failed` with a reason code. */
  readonly rules: "applied" | "unchanged" | "dry-run" | "failed";
  readonly failure?: { readonly code: string; readonly message: string };
  readonly policies: { readonly ready: number; readonly invalid: number; readonly ignored: number };
  /** Valid LoadBalancer services: in effect (with an address and ports), pending (without). */
  readonly services: { readonly inEffect: number; readonly pending: number };
  readonly rejectedNames: readonly string[];
  readonly shapingProblems: readonly string[];
}

export interface FirewallStatus {
  readonly message: string;
  readonly lastRun: string;
  readonly conditions: readonly Condition[];
}

function condition(
  type: Condition["type"],
  status: Condition["status"],
  reason: string,
  message: string,
  now: string,
  generation: number | undefined,
  previous: readonly Condition[] | undefined,
): Condition {
  const before = previous?.find((c) => c.type === type);
  const lastTransitionTime = before && before.status === status ? before.lastTransitionTime : now;
  return { type, status, reason, message: gate(message), lastTransitionTime, ...(generation === undefined ? {} : { observedGeneration: generation }) };
}

/** The Firewall's status after a reconcile; `previous` keeps transition times of conditions that did not flip. */
export function firewallStatus(o: FirewallOutcome, now: Date, generation: number | undefined, previous?: readonly Condition[]): FirewallStatus {
  const at = now.toISOString().replace(/\.\d{3}Z$/, "Z");
  const parts = [
    `${count(o.policies.ready, "policy", "policies")} and ${count(o.services.inEffect, "service", "services")} in effect`,
    ...(o.services.pending > 0 ? [`${count(o.services.pending, "service", "services")} pending (no load balancer address yet)`] : []),
    ...(o.policies.invalid > 0 ? [`${o.policies.invalid} rejected (${o.rejectedNames.slice(0, 5).join(", ")}${o.rejectedNames.length > 5 ? ", ..." : ""})`] : []),
    ...(o.policies.ignored > 0 ? [`${o.policies.ignored} ignored`] : []),
    ...(o.shapingProblems.length > 0 ? [`rate limits: ${o.shapingProblems.join("; ")}`] : []),
  ];
  const rules =
    o.rules === "failed"
      ? condition("RulesApplied", "False", camel(o.failure?.code ?? "failed"), o.failure?.message ?? "applying the ruleset failed; the previous ruleset stays active", at, generation, previous)
      : o.rules === "dry-run"
        ? condition("RulesApplied", "False", "DryRun", "spec.dryrun is true: rendered and validated, nothing applied", at, generation, previous)
        : condition("RulesApplied", "True", o.rules === "applied" ? "Applied" : "Unchanged", "the ruleset in the kernel is the rendered one", at, generation, previous);
  const healthy = o.rules !== "failed" && o.shapingProblems.length === 0;
  const ready = condition(
    "Ready",
    healthy ? "True" : "False",
    o.rules === "failed" ? "RulesNotApplied" : o.shapingProblems.length > 0 ? "ShapingProblems" : o.policies.invalid > 0 ? "SomePoliciesRejected" : "Reconciled",
    parts.join("; "),
    at,
    generation,
    previous,
  );
  return { message: gate(o.rules === "failed" ? `${rules.message}; ${parts.join("; ")}` : parts.join("; ")), lastRun: at, conditions: [ready, rules] };
}

const count = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;

/** `nft_check_failed` → `NftCheckFailed`: condition reasons are CamelCase. */
const camel = (code: string) => code.split(/[_-]/).map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join("");

/** Status objects equal for writing purposes (order of keys aside; lastRun is compared by the caller). */
export function sameStatus(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

function canonical(x: unknown): string {
  if (Array.isArray(x)) return `[${x.map(canonical).join(",")}]`;
  if (x && typeof x === "object") {
    return `{${Object.keys(x as object).sort().map((k) => `${JSON.stringify(k)}:${canonical((x as Record<string, unknown>)[k])}`).join(",")}}`;
  }
  return JSON.stringify(x) ?? "null";
}

/**
 * A merge patch of `status.stats` that also removes what is gone: merge patch
 * merges maps, so a rule or interface no longer counted needs an explicit null.
 *
 * @example
 * ```ts
 * import { statsPatch } from "./status.ts";
 * const zero = { in: 0, out: 0, total: 0 };
 * statsPatch({ devices: { external: zero, internal: zero }, idsstats: {}, rules: { accept: {}, drop: {}, other: {} } }, { idsstats: { eth0: {} } }).idsstats;
 * // { eth0: null }
 * ```
 */
export function statsPatch(next: FirewallStats, current: unknown): Record<string, unknown> {
  const cur = (current ?? {}) as { rules?: Record<string, Record<string, unknown>>; idsstats?: Record<string, unknown> };
  const withNulls = (now: Readonly<Record<string, unknown>>, before: Record<string, unknown> | undefined) => ({
    ...Object.fromEntries(Object.keys(before ?? {}).filter((k) => !Object.hasOwn(now, k)).map((k) => [k, null])),
    ...now,
  });
  return {
    devices: next.devices,
    idsstats: withNulls(next.idsstats, cur.idsstats),
    rules: Object.fromEntries((["accept", "drop", "other"] as const).map((g) => [g, withNulls(next.rules[g], cur.rules?.[g])])),
  };
}
