/**
 * The exit codes of a `--once` run (SPEC §5), from what the reconcile did.
 * Operators script against these: 1 must mean "nothing changed", so that a
 * retry is safe and a half-applied state is never mistaken for "nothing
 * happened".
 *
 * @example
 * ```ts
 * import { EXIT, exitCodeOf } from "./exit-code.ts";
 * exitCodeOf({ rules: "changed", errors: 1 }, 0) === EXIT.partial; // true: rules in force, a later step failed
 * exitCodeOf({ rules: "failed", errors: 1 }, 3) === EXIT.failed; // true
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
  /** The rules are in force, but a later step failed: the ruleset file or shaping. */
  partial: 3,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** `rules`: the reconcile's rules outcome; `errors`: how many steps failed; `rejected`: invalid objects. */
export function exitCodeOf(outcome: { readonly rules: "changed" | "unchanged" | "skipped" | "failed"; readonly errors: number }, rejected: number): ExitCode {
  if (outcome.rules === "failed") return EXIT.failed;
  if (outcome.errors > 0) return EXIT.partial;
  return rejected > 0 ? EXIT.rejected : EXIT.ok;
}
