import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { OverlayMap } from "../lib/overlay-map.ts";

/** What a version must read as: a Map copied from the one before and changed the same way. */
const changed = (m: ReadonlyMap<number, string>, deleted: readonly number[], set: readonly (readonly [number, string])[]): Map<number, string> => {
  const copy = new Map(m);
  for (const k of deleted) copy.delete(k);
  for (const [k, v] of set) copy.set(k, v);
  return copy;
};

/** Everything a reader can see of a map: its entries in order, its size, and every key's lookups. */
const view = (m: ReadonlyMap<number, string>, probe: readonly number[]) => ({
  entries: [...m],
  keys: [...m.keys()],
  values: [...m.values()],
  each: (() => {
    const out: [number, string][] = [];
    m.forEach((v, k) => out.push([k, v]));
    return out;
  })(),
  size: m.size,
  lookups: probe.map((k) => [m.has(k), m.get(k)]),
});

// Few distinct keys, so deletions, re-additions and replacements of the same keys are common.
const key = fc.integer({ min: 0, max: 40 });
const step = fc.record({ deleted: fc.array(key, { maxLength: 8 }), set: fc.array(fc.tuple(key, fc.string({ maxLength: 3 })), { maxLength: 8 }) });

describe("overlay map", () => {
  test("every version reads, iterates (in order) and counts as a Map copied and changed alike; earlier versions stay as they were (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(key, fc.string({ maxLength: 3 })), { maxLength: 30 }), fc.array(step, { maxLength: 60 }), (start, steps) => {
        const probe = Array.from({ length: 42 }, (_, i) => i);
        const expected: Map<number, string>[] = [new Map(start)];
        const versions: OverlayMap<number, string>[] = [OverlayMap.of(start)];
        for (const s of steps) {
          expected.push(changed(expected.at(-1) as Map<number, string>, s.deleted, s.set));
          versions.push((versions.at(-1) as OverlayMap<number, string>).next(s.deleted, s.set));
        }
        versions.forEach((v, i) => expect(view(v, probe)).toEqual(view(expected[i] as Map<number, string>, probe)));
      }),
      { numRuns: 300 },
    );
  });

  test("at 20,000 entries, versions of one change each read as a Map changed alike, before and after their changes are folded into a new base", () => {
    const n = 20_000;
    const expected = new Map<number, string>(Array.from({ length: n }, (_, i) => [i, `c${i}`]));
    let m = OverlayMap.of(expected);
    // 2·√20,000 ≈ 283: the changes are folded once, after ~141 versions of two changes each.
    for (let i = 0; i < 300; i++) {
      m = m.next([i * 7], [[n + i, `c${n + i}`], [i * 7 + 1, "replaced"]]);
      expected.delete(i * 7);
      expected.set(n + i, `c${n + i}`);
      expected.set(i * 7 + 1, "replaced");
      if (i % 50 === 0 || i === 299) {
        expect(m.size).toBe(expected.size);
        expect([...m]).toEqual([...expected]);
      }
    }
  });

  test("of copies its input: changing the source afterwards changes no version", () => {
    const source = new Map([["a", 1]]);
    const m = OverlayMap.of(source);
    source.set("b", 2);
    source.delete("a");
    expect([...m]).toEqual([["a", 1]]);
  });
});
