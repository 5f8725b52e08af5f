import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { sharedWith } from "../../lib/kube/shared-with.ts";

/** Every part of `x` equal (as JSON text, key order included) to the part of `y` at its path is `y`'s part itself. */
function checkShared(x: unknown, y: unknown): void {
  if (typeof x !== "object" || x === null) return;
  if (typeof y === "object" && y !== null && JSON.stringify(x) === JSON.stringify(y) && Array.isArray(x) === Array.isArray(y)) {
    expect(x).toBe(y);
    return;
  }
  if (typeof y !== "object" || y === null || Array.isArray(x) !== Array.isArray(y)) return;
  for (const k of Object.keys(x)) {
    if (k !== "__proto__" && Object.hasOwn(y, k)) checkShared((x as Record<string, unknown>)[k], (y as Record<string, unknown>)[k]);
  }
}

// Versions of one object: small key and value pools, so that equal parts at equal paths are common.
const json = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: "small" }, fc.constantFrom(0, 1, "a", "b", true, null), fc.array(tie("value"), { maxLength: 3 }), fc.dictionary(fc.constantFrom("spec", "status", "ports", "x", "__proto__"), tie("value"), { maxKeys: 3 })),
})).value;

describe("sharedWith", () => {
  test("the result reads exactly as the new version (JSON text, key order included); its parts equal to the old version's at the same path are the old version's; the old version is unchanged (property)", () => {
    fc.assert(
      fc.property(json, json, (a, b) => {
        // Two versions as the API gives them: parsed from text (so "__proto__" is an own key).
        const prev = JSON.parse(JSON.stringify(a)) as unknown;
        const next = JSON.parse(JSON.stringify(b)) as unknown;
        const prevText = JSON.stringify(prev);
        const nextText = JSON.stringify(next);
        const out = sharedWith(next, prev);
        expect(JSON.stringify(out)).toBe(nextText);
        expect(JSON.stringify(prev)).toBe(prevText);
        checkShared(out, prev);
      }),
      { numRuns: 2000 },
    );
  });

  test("a status write: the new version keeps its own status and metadata and takes the old spec", () => {
    const prev = JSON.parse('{"metadata":{"name":"p","resourceVersion":"1"},"spec":{"egress":[{"ports":[{"port":443}]}]}}') as { spec: unknown };
    const next = JSON.parse('{"metadata":{"name":"p","resourceVersion":"2"},"spec":{"egress":[{"ports":[{"port":443}]}]},"status":{"state":"Ready"}}') as { spec: unknown; metadata: unknown };
    const out = sharedWith(next, prev);
    expect(out).toBe(next);
    expect(out.spec).toBe(prev.spec);
    expect(out.metadata).not.toBe((prev as unknown as { metadata: unknown }).metadata);
  });

  test("keys in another order are not the same object; an own __proto__ is never assigned (no prototype is set)", () => {
    const prev = JSON.parse('{"a":{"x":1,"y":2}}') as { a: unknown };
    const next = JSON.parse('{"a":{"y":2,"x":1}}') as { a: unknown };
    expect(sharedWith(next, prev).a).not.toBe(prev.a);
    const hostile = JSON.parse('{"__proto__":{"polluted":true},"b":1}') as Record<string, unknown>;
    const out = sharedWith(hostile, JSON.parse('{"__proto__":{"polluted":true},"b":1}')) as Record<string, unknown>;
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(JSON.stringify(out)).toBe('{"__proto__":{"polluted":true},"b":1}');
  });

  test("nesting deeper than 64 levels is left as it is, without recursing further", () => {
    const deep = (n: number): unknown => (n === 0 ? { leaf: 1 } : [deep(n - 1)]);
    const prev = deep(10_000);
    const next = deep(10_000);
    expect(sharedWith(next, prev)).toBe(next);
  });
});
