import { describe, expect, test } from "bun:test";
import { EXIT, exitCodeOf } from "../lib/exit-code.ts";

describe("exit codes of --once", () => {
  test.each([
    ["all applied", { rules: "changed", shaping: "changed", errors: 0 }, 0, EXIT.ok],
    ["nothing to do", { rules: "unchanged", shaping: "unchanged", errors: 0 }, 0, EXIT.ok],
    ["applied, some rejected", { rules: "changed", shaping: "unchanged", errors: 0 }, 2, EXIT.rejected],
    ["nft refused: nothing changed", { rules: "failed", shaping: "skipped", errors: 1 }, 2, EXIT.failed],
    ["new rules in force, the ruleset file failed", { rules: "changed", shaping: "unchanged", errors: 1 }, 0, EXIT.partial],
    ["rules as before, shaping failed half way", { rules: "unchanged", shaping: "failed", errors: 1 }, 0, EXIT.partial],
    ["rules as before, shaping as before, the ruleset file failed: nothing changed", { rules: "unchanged", shaping: "unchanged", errors: 1 }, 0, EXIT.failed],
  ] as const)("%s", (_what, outcome, rejected, code) => {
    expect(exitCodeOf(outcome, rejected)).toBe(code);
  });
});
