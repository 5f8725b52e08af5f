import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { type Box, type Piece, partition, type Span } from "../../lib/ruleset/partition.ts";

const b = (owner: number, ...dims: [number, number][]): Box => ({ owner, dims: dims.map(([x, y]) => [BigInt(x), BigInt(y)] as Span) });
const plain = (pieces: readonly Piece[]) => pieces.map((p) => ({ owner: p.owner, dims: p.dims.map(([x, y]) => [Number(x), Number(y)]) }));
const sortPieces = <T extends { dims: number[][] }>(ps: T[]) => ps.toSorted((x, y) => JSON.stringify(x.dims).localeCompare(JSON.stringify(y.dims)));

describe("partition: small tables", () => {
  test("no boxes give no pieces", () => {
    expect(partition([])).toEqual([]);
  });

  test("the documented example: the lower owner takes the overlap", () => {
    expect(plain(partition([b(1, [0, 9]), b(0, [5, 20])]))).toEqual([
      { owner: 1, dims: [[0, 4]] },
      { owner: 0, dims: [[5, 20]] },
    ]);
  });

  test("a lower owner inside a higher one splits it in three", () => {
    expect(plain(partition([b(5, [0, 100]), b(2, [40, 60])]))).toEqual([
      { owner: 5, dims: [[0, 39]] },
      { owner: 2, dims: [[40, 60]] },
      { owner: 5, dims: [[61, 100]] },
    ]);
  });

  test("a higher owner inside a lower one disappears", () => {
    expect(plain(partition([b(0, [0, 100]), b(3, [40, 60])]))).toEqual([{ owner: 0, dims: [[0, 100]] }]);
  });

  test("adjacent and overlapping boxes of one owner are merged", () => {
    expect(plain(partition([b(1, [0, 9]), b(1, [10, 19]), b(1, [15, 30])]))).toEqual([{ owner: 1, dims: [[0, 30]] }]);
  });

  test("disjoint boxes with a gap stay apart", () => {
    expect(plain(partition([b(1, [0, 9]), b(1, [11, 19])]))).toEqual([
      { owner: 1, dims: [[0, 9]] },
      { owner: 1, dims: [[11, 19]] },
    ]);
  });

  test("identical boxes go to the lowest owner", () => {
    expect(plain(partition([b(3, [5, 5]), b(1, [5, 5]), b(2, [5, 5])]))).toEqual([{ owner: 1, dims: [[5, 5]] }]);
  });

  test("empty spans (first > last) are ignored", () => {
    expect(plain(partition([b(0, [9, 1]), b(1, [0, 3])]))).toEqual([{ owner: 1, dims: [[0, 3]] }]);
  });

  test("two dimensions: a cross of two owners", () => {
    const pieces = sortPieces(plain(partition([b(0, [0, 9], [4, 5]), b(1, [4, 5], [0, 9])])));
    expect(pieces).toEqual(
      sortPieces([
        { owner: 0, dims: [[0, 3], [4, 5]] },
        { owner: 1, dims: [[4, 5], [0, 3]] },
        { owner: 0, dims: [[4, 5], [4, 5]] },
        { owner: 1, dims: [[4, 5], [6, 9]] },
        { owner: 0, dims: [[6, 9], [4, 5]] },
      ]),
    );
  });

  test("two dimensions: same inner split in neighbouring outer ranges is merged", () => {
    expect(plain(partition([b(0, [0, 4], [0, 9]), b(0, [5, 9], [0, 9])]))).toEqual([{ owner: 0, dims: [[0, 9], [0, 9]] }]);
  });

  test("bigint spans beyond 2^64 (IPv6) work", () => {
    const hi = (1n << 128n) - 1n;
    const pieces = partition([
      { owner: 1, dims: [[0n, hi]] },
      { owner: 0, dims: [[1n << 100n, (1n << 101n) - 1n]] },
    ]);
    expect(pieces).toEqual([
      { owner: 1, dims: [[0n, (1n << 100n) - 1n]] },
      { owner: 0, dims: [[1n << 100n, (1n << 101n) - 1n]] },
      { owner: 1, dims: [[1n << 101n, hi]] },
    ]);
  });

  test("many owners: each point goes to the lowest", () => {
    const boxes = Array.from({ length: 50 }, (_, i) => b(50 - i, [i, i + 10]));
    const pieces = partition(boxes);
    for (const p of pieces) {
      for (let x = Number(p.dims[0]?.[0]); x <= Number(p.dims[0]?.[1]); x++) {
        const lowest = Math.min(...boxes.filter((bx) => BigInt(x) >= (bx.dims[0] as Span)[0] && BigInt(x) <= (bx.dims[0] as Span)[1]).map((bx) => bx.owner));
        expect(p.owner).toBe(lowest);
      }
    }
  });
});

/** Every grid point of a box, as a key. */
function* points(dims: readonly Span[]): Generator<string> {
  const [head, ...rest] = dims;
  if (head === undefined) {
    yield "";
    return;
  }
  for (let x = head[0]; x <= head[1]; x++) for (const tail of points(rest)) yield tail === "" ? `${x}` : `${x},${tail}`;
}

const span = fc
  .tuple(fc.integer({ min: 0, max: 20 }), fc.integer({ min: 0, max: 20 }))
  .map(([x, y]) => [BigInt(Math.min(x, y)), BigInt(Math.max(x, y))] as Span);
const boxesOf = (ndims: number, maxBoxes: number) =>
  fc.array(fc.record({ dims: fc.array(span, { minLength: ndims, maxLength: ndims }), owner: fc.integer({ min: 0, max: 6 }) }), {
    minLength: 1,
    maxLength: maxBoxes,
  });

describe("partition: properties", () => {
  test.each([
    [1, 12, 400],
    [2, 8, 250],
    [3, 6, 120],
  ])("%p dims: pieces are disjoint, cover exactly the union, and each point has the lowest covering owner", (ndims, maxBoxes, numRuns) => {
    fc.assert(
      fc.property(boxesOf(ndims, maxBoxes), (boxes) => {
        const expected = new Map<string, number>();
        for (const box of boxes) for (const p of points(box.dims)) expected.set(p, Math.min(expected.get(p) ?? Number.POSITIVE_INFINITY, box.owner));
        const got = new Map<string, number>();
        for (const piece of partition(boxes)) {
          expect(piece.dims).toHaveLength(ndims);
          for (const s of piece.dims) expect(s[0] <= s[1]).toBe(true);
          for (const p of points(piece.dims)) {
            if (got.has(p)) throw new Error(`point ${p} is in two pieces`);
            got.set(p, piece.owner);
          }
        }
        expect(got.size).toBe(expected.size);
        for (const [p, owner] of expected) expect(got.get(p)).toBe(owner);
      }),
      { numRuns },
    );
  });

  test("the output does not depend on the order of the input boxes", () => {
    fc.assert(
      fc.property(
        boxesOf(2, 8).chain((boxes) => fc.tuple(fc.constant(boxes), fc.shuffledSubarray(boxes, { minLength: boxes.length, maxLength: boxes.length }))),
        ([boxes, shuffled]) => {
          expect(partition(shuffled)).toEqual(partition(boxes));
        },
      ),
      { numRuns: 200 },
    );
  });
});
