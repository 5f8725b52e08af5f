import { describe, expect, test } from "bun:test";
import { formatProblems, issuePath, show } from "../../lib/api/problem.ts";

describe("problem helpers", () => {
  test("issue paths render keys with dots and indexes with brackets", () => {
    expect(issuePath([{ key: "spec" }, { key: "egress" }, { key: 0 }, { key: "to" }, { key: 1 }, { key: "except" }, { key: 0 }])).toBe("spec.egress[0].to[1].except[0]");
    expect(issuePath(undefined)).toBe("");
    expect(issuePath([{ key: 2 }], "items")).toBe("items[2]");
  });

  test("problems are joined as path: message", () => {
    expect(formatProblems([{ path: "a", message: "x" }, { path: "b[0]", message: "y" }])).toBe("a: x; b[0]: y");
    expect(formatProblems([])).toBe("");
  });

  test("values are shown as JSON, long ones cut", () => {
    expect(show("a\nb")).toBe('"a\\nb"');
    expect(show(undefined)).toBe("undefined");
    expect(show(42)).toBe("42");
    const long = show("x".repeat(500));
    expect(long.length).toBe(120);
    expect(long.endsWith("...")).toBe(true);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(show(cyclic)).toBe("[object Object]");
  });
});
