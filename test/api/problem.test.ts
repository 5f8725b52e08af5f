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

  test("values are shown as JSON, escaped, long ones cut with a note on how much", () => {
    expect(show("a\nb")).toBe('"a\\nb"');
    expect(show(undefined)).toBe("undefined");
    expect(show(42)).toBe("42");
    expect(show(12n)).toBe("12");
    expect(show(Number.NaN)).toBe("NaN");
    expect(show({ port: "x", list: [1, null, true] })).toBe('{"port":"x","list":[1,null,true]}');
    expect(show("x".repeat(500))).toBe(`"${"x".repeat(120)}"…(380 more characters)`);
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    expect(show(cyclic)).toBe('{"a":1,"self":"[Circular]"}');
  });

  test("C1 and bidi controls, which JSON leaves alone, are escaped", () => {
    expect(show("a\u009b2Jb")).toBe('"a\\x9b2Jb"');
    expect(show("abc\u202etxt")).toBe('"abc\\u202etxt"');
    expect(show({ ["k\u2066"]: "\u0085" })).toBe('{"k\\u2066":"\\x85"}');
    expect(show("\x1b[31m")).toBe('"\\u001b[31m"');
  });

  test("a 5 MB string costs what its first characters cost, and says how much was cut", () => {
    expect(show("\u202e".repeat(5_000_000))).toBe(`"${"\\u202e".repeat(120)}"…(4,999,880 more characters)`);
  });

  test("a 5 MB structure is cut after the cap too", () => {
    const big = { a: "y".repeat(5_000_000), b: Array.from({ length: 100_000 }, (_, i) => i) };
    expect(show(big)).toBe(`{"a":"${"y".repeat(114)}…(cut at 120 characters)`);
    expect(show(Array.from({ length: 1_000_000 }, () => 7), 10)).toBe("[7,7,7,7,7…(cut at 10 characters)");
  });

  test("a cut never splits a surrogate pair", () => {
    expect(show("ab🔥", 3)).toBe('"ab"…(2 more characters)');
  });

  test("path keys that are not plain names are quoted and escaped", () => {
    expect(issuePath([{ key: "spec" }, { key: "a\nb" }, { key: 0 }, { key: "x\u202ey" }])).toBe('spec["a\\nb"][0]["x\\u202ey"]');
    expect(issuePath([{ key: "spec" }, { key: "has space" }, { key: "" }])).toBe('spec["has space"][""]');
  });
});
