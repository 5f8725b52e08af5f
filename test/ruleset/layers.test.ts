import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { layer } from "../../lib/ruleset/layers.ts";
import type { Box, Piece, Span } from "../../lib/ruleset/partition.ts";

const b = (owner: number, ...dims: [number, number][]): Box => ({ owner, dims: dims.map(([x, y]) => [BigInt(x), BigInt(y)] as Span) });
const plain = (layers: readonly (readonly Piece[])[]) => layers.map((l) => l.map((p) => ({ owner: p.owner, dims: p.dims.map(([x, y]) => [Number(x), Number(y)]) })));

/** The owner the forward chain would count for `point`: first layer with a match; throws on overlaps inside a layer. */
function layeredOwner(layers: readonly (readonly Piece[])[], point: readonly bigint[]): number | null {
  for (const l of layers) {
    const hits = l.filter((p) => p.dims.every(([x, y], d) => (point[d] as bigint) >= x && (point[d] as bigint) <= y));
    if (hits.length > 1) throw new Error(`layer has ${hits.length} overlapping elements at ${point.join(",")}`);
    if (hits[0]) return hits[0].owner;
  }
  return null;
}

/** The first owner (lowest number) of any box containing `point`: the ownership SPEC §4.6 asks for. */
const firstOwner = (boxes: readonly Box[], point: readonly bigint[]): number | null =>
  boxes.filter((x) => x.dims.every(([lo, hi], d) => (point[d] as bigint) >= lo && (point[d] as bigint) <= hi)).reduce<number | null>((m, x) => (m === null || x.owner < m ? x.owner : m), null);

describe("layer: small cases", () => {
  test("no boxes give no layers", () => {
    expect(layer([], 8)).toEqual([]);
  });

  test("disjoint owners share layer 0", () => {
    expect(plain(layer([b(0, [0, 9], [1, 1]), b(1, [10, 19], [1, 1]), b(2, [0, 9], [2, 2])], 8))).toEqual([
      [
        { owner: 0, dims: [[0, 9], [1, 1]] },
        { owner: 1, dims: [[10, 19], [1, 1]] },
        { owner: 2, dims: [[0, 9], [2, 2]] },
      ],
    ]);
  });

  test("a later owner crossing an earlier one goes one layer up, unsplit", () => {
    expect(plain(layer([b(0, [0, 255], [443, 443]), b(1, [7, 7], [0, 65535])], 8))).toEqual([[{ owner: 0, dims: [[0, 255], [443, 443]] }], [{ owner: 1, dims: [[7, 7], [0, 65535]] }]]);
  });

  test("a box inside an earlier owner's box disappears", () => {
    expect(plain(layer([b(0, [0, 100], [0, 9]), b(1, [5, 6], [1, 2])], 8))).toEqual([[{ owner: 0, dims: [[0, 100], [0, 9]] }]]);
  });

  test("a box cut along one side by an earlier box keeps the rest, in layer 0", () => {
    expect(plain(layer([b(0, [0, 100], [0, 9]), b(1, [50, 200], [0, 9])], 8))).toEqual([
      [
        { owner: 0, dims: [[0, 100], [0, 9]] },
        { owner: 1, dims: [[101, 200], [0, 9]] },
      ],
    ]);
  });

  test("overlapping boxes of one owner are merged when that gives fewer elements", () => {
    expect(plain(layer([b(3, [0, 9], [0, 0]), b(3, [5, 19], [0, 0])], 8))).toEqual([[{ owner: 3, dims: [[0, 19], [0, 0]] }]]);
  });

  test("crossing boxes of one owner are not split: they go to two layers", () => {
    expect(plain(layer([b(3, [0, 9], [4, 5]), b(3, [4, 5], [0, 9])], 8))).toEqual([[{ owner: 3, dims: [[0, 9], [4, 5]] }], [{ owner: 3, dims: [[4, 5], [0, 9]] }]]);
  });

  test("an overlap chain deeper than the bound is split in the top layer, still exact", () => {
    // Crossing boxes: owner i is a vertical bar crossed by every earlier horizontal bar.
    const boxes = [0, 1, 2, 3].map((i) => (i % 2 === 0 ? b(i, [0, 9], [i, i]) : b(i, [i, i], [0, 9])));
    const layers = layer(boxes, 2);
    expect(layers).toHaveLength(2);
    for (let x = 0n; x < 10n; x++) for (let y = 0n; y < 10n; y++) expect(layeredOwner(layers, [x, y])).toBe(firstOwner(boxes, [x, y]));
  });
});

describe("layer: the split limit", () => {
  // Many crossing bars over two layers: the top layer must split, into more pieces than allowed.
  const boxes = Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? b(i, [0, 99], [i * 3, i * 3]) : b(i, [i * 3, i * 3], [0, 99])));

  test("a split of the top layer over the limit is reported as overflow, not computed", () => {
    const report = { overflow: false };
    layer(boxes, 2, 5, report);
    expect(report.overflow).toBe(true);
  });

  test("within the limit nothing is reported and the split is exact", () => {
    const report = { overflow: false };
    const layers = layer(boxes, 2, 10_000, report);
    expect(report.overflow).toBe(false);
    for (let x = 0n; x < 100n; x += 3n) for (let y = 0n; y < 100n; y += 3n) expect(layeredOwner(layers, [x, y])).toBe(firstOwner(boxes, [x, y]));
  });
});

const spanArb = fc.tuple(fc.integer({ min: 0, max: 12 }), fc.integer({ min: 0, max: 6 })).map(([a, w]) => [a, a + w] as [number, number]);
const boxesArb = (dims: number) =>
  fc.array(fc.tuple(fc.integer({ min: 0, max: 7 }), fc.array(spanArb, { minLength: dims, maxLength: dims })).map(([o, ds]) => b(o, ...ds)), { maxLength: 14 });

describe("layer: property", () => {
  for (const dims of [1, 2, 3]) {
    test(`${dims} dimension(s): every point is owned by its first owner, no layer overlaps, elements never exceed the boxes unless the top layer splits`, () => {
      fc.assert(
        fc.property(boxesArb(dims), fc.integer({ min: 1, max: 8 }), (boxes, maxLayers) => {
          const layers = layer(boxes, maxLayers);
          expect(layers.length).toBeLessThanOrEqual(maxLayers);
          const points: bigint[][] = [[]];
          for (let d = 0; d < dims; d++) points.splice(0, points.length, ...points.flatMap((p) => Array.from({ length: 20 }, (_, v) => [...p, BigInt(v)])));
          for (const p of points) expect(layeredOwner(layers, p)).toBe(firstOwner(boxes, p));
          // Below the bound nothing is split: no more elements than boxes.
          if (layers.length < maxLayers) expect(layers.flat().length).toBeLessThanOrEqual(boxes.length);
        }),
        { numRuns: 400 },
      );
    }, 30_000);
  }

  test("10,000 disjoint boxes stay in one layer", () => {
    const boxes = Array.from({ length: 10_000 }, (_, i) => b(i, [i * 2, i * 2], [443, 443]));
    const layers = layer(boxes, 8);
    expect(layers.map((l) => l.length)).toEqual([10_000]);
  });
});
