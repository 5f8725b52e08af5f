/**
 * Reconciles the kernel's shaping with the wanted rate limits (SPEC §4.8):
 * observe, plan, run the plan. Unchanged input runs no mutating command. A
 * missing interface or a failing command is a problem of that interface only;
 * the other interfaces are still shaped.
 *
 * @example
 * ```ts
 * import { runCommand } from "../exec.ts";
 * import { applyShaping } from "./apply.ts";
 * const r = await applyShaping([{ interface: "vrf104009", rateMbit: 10 }], { exec: runCommand });
 * for (const p of r.problems) console.error(`${p.interface}: ${p.message}`);
 * ```
 * @module
 */
import { observeShaping, type ShapingDeps } from "./observe.ts";
import { planShaping, type RateLimitEntry, type ShapingProblem } from "./plan.ts";

export type { ShapingDeps } from "./observe.ts";

export interface ShapingResult {
  /** True when at least one command changed the kernel. */
  readonly changed: boolean;
  readonly problems: readonly ShapingProblem[];
  /** The commands run, as shell-quoted lines, in order (failed ones too; their error is in `problems`). */
  readonly actions: readonly string[];
}

const SAFE = /^[A-Za-z0-9_./:@%+=,-]+$/;

/** One argv as a line an operator can paste into a shell. */
export const shellLine = (argv: readonly string[]): string =>
  argv.map((a) => (SAFE.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)).join(" ");

/**
 * Makes the kernel shape exactly `entries`: creates, changes and removes IFB
 * devices, TBF qdiscs, ingress qdiscs and redirect filters of ours, and never
 * touches devices, qdiscs or filters that are not. Throws a `shaping_failed`
 * FirewallError only when the state cannot be read at all.
 *
 * @example
 * ```ts
 * import { runCommand } from "../exec.ts";
 * import { applyShaping } from "./apply.ts";
 * await applyShaping([], { exec: runCommand }); // removes every limit this program set
 * ```
 */
export async function applyShaping(entries: readonly RateLimitEntry[], deps: ShapingDeps): Promise<ShapingResult> {
  const state = await observeShaping(deps);
  const plan = planShaping(entries, state);
  const problems = [...plan.problems];
  const actions: string[] = [];
  const failed = new Set<string>();
  let changed = false;
  for (const c of plan.commands) {
    // Later steps of a failed interface build on the failed one: skip them, keep going with the rest.
    if (failed.has(c.interface)) continue;
    const argv = [c.tool === "tc" ? (deps.tc ?? "tc") : (deps.ip ?? "ip"), ...c.args];
    actions.push(shellLine(argv));
    const r = await deps.exec(argv);
    if (r.code === 0) {
      changed = true;
      continue;
    }
    failed.add(c.interface);
    problems.push({ interface: c.interface, message: `\`${shellLine(argv)}\` failed: ${r.stderr.trim() || `exit ${r.code}`}` });
  }
  return { changed, problems, actions };
}
