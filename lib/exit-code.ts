/**
 * The exit codes of a `--once` run (SPEC §5), from what the reconcile did.
 * Operators script against these: 1 must mean "nothing changed", so that a
 * retry is safe and a half-applied state is never mistaken for "nothing
 * happened".
 *
 * @example
 * ```ts
 * import { EXIT, exitCodeOf } from "./exit-code.ts";
 * exitCodeOf({ rules: "changed", shaping: "unchanged", errors: 1 }, 0) === EXIT.partial; // true: new rules in force, a later step failed
 * exitCodeOf({ rules: "unchanged", shaping: "unchanged", errors: 1 }, 0) === EXIT.failed; // true: nothing changed
 * exitCodeOf({ rules: "failed", shaping: "skipped", errors: 1 }, 3) === EXIT.failed; // true
 * ```
 * @module
 */

export const EXIT = {
  /** Everything valid, and applied (or printed). */
  ok: 0,
  /** Nothing was changed: unreadable input, bad flags, `nft` refused or failed; shaping untouched. */
  failed: 1,
  /** Applied (or printed), but some objects were rejected as invalid. */
  rejected: 2,
  /** Something took effect (new rules, shaping), but a step failed: the ruleset file or shaping. */
  partial: 3,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

type Outcome = "changed" | "unchanged" | "skipped" | "failed";

/**
 * `rules`, `shaping`: the reconcile's outcomes; `errors`: how many steps
 * failed; `rejected`: invalid objects. A failed shaping step may have run
 * some of its commands, so it counts as having changed something.
 */
export function exitCodeOf(outcome: { readonly rules: Outcome; readonly shaping: Outcome; readonly errors: number }, rejected: number): ExitCode {
  if (outcome.rules === "failed") return EXIT.failed;
  if (outcome.errors > 0) return outcome.rules === "changed" || outcome.shaping === "changed" || outcome.shaping === "failed" ? EXIT.partial : EXIT.failed;
  return rejected > 0 ? EXIT.rejected : EXIT.ok;
}
