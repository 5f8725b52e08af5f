import { describe, expect, test } from "bun:test";
import { parseDuration } from "../../lib/api/duration.ts";

describe("parseDuration", () => {
  test.each([
    ["10s", 10_000],
    ["1m30s", 90_000],
    ["500ms", 500],
    ["1h", 3_600_000],
    ["2h45m", 9_900_000],
    ["1h2m3s4ms", 3_723_004],
    ["1.5s", 1_500],
    ["0.5m", 30_000],
    ["0s", 0],
    ["1500000us", 1_500],
    ["1500000µs", 1_500],
    ["2000000000ns", 2_000],
    ["1s1s", 2_000],
  ])("%p is %p ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  test.each([["10"], [""], ["s"], ["-1s"], ["+1s"], ["1d"], ["1 s"], ["1m 30s"], [" 10s"], ["10s "], ["ten"], ["1.s"], [".5s"], ["1S"], ["1e3s"]])(
    "%p is not a duration",
    (text) => {
      expect(parseDuration(text)).toBeUndefined();
    },
  );
});
