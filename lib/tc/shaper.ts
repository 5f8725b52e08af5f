/**
 * The rate-limiting part of a reconcile, as {@link Shaper}: describe for
 * `--dry-run`, reconcile against the kernel with `tc` and `ip`.
 *
 * @example
 * ```ts
 * import { runCommand } from "../exec.ts";
 * import { tcShaper } from "./shaper.ts";
 * const shaper = tcShaper({ tc: "tc", ip: "ip", exec: runCommand });
 * console.log(shaper.describe([{ interface: "vrf104009", rateMbit: 10 }]));
 * ```
 * @module
 */
import type { Executor } from "../exec.ts";
import type { Shaper } from "../reconcile.ts";
import { applyShaping } from "./apply.ts";
import { describeShaping } from "./describe.ts";

export function tcShaper(options: { tc: string; ip: string; exec: Executor }): Shaper {
  return { describe: describeShaping, reconcile: (limits) => applyShaping(limits, options) };
}
