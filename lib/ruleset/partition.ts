/**
 * Splits overlapping boxes (products of inclusive integer ranges, one per
 * dimension) into disjoint pieces, each owned by the lowest-numbered owner
 * that covers it. nftables interval maps reject overlapping elements, and a
 * packet must be counted by exactly one policy, so every map the renderer
 * writes is built from this.
 *
 * Adjacent pieces with the same owner (and, in outer dimensions, the same
 * inner split) are merged, so the number of elements stays close to the
 * number of distinct regions.
 *
 * @example
 * ```ts
 * import { partition } from "./partition.ts";
 * partition([
 *   { dims: [[0n, 9n]], owner: 1 },
 *   { dims: [[5n, 20n]], owner: 0 },
 * ]);
 * // [{ dims: [[0n, 4n]], owner: 1 }, { dims: [[5n, 20n]], owner: 0 }]
 * ```
 * @module
 */

export type Span = readonly [bigint, bigint];

export interface Box {
  readonly dims: readonly Span[];
  /** Lower wins where boxes overlap. */
  readonly owner: number;
}

export interface Piece {
  readonly dims: Span[];
  readonly owner: number;
}

interface Event {
  readonly at: bigint;
  readonly box: Box;
  readonly add: boolean;
}

const cmp = (a: bigint, b: bigint): number => (a < b ? -1 : a > b ? 1 : 0);

function events(boxes: readonly Box[], dim: number): Event[] {
  const ev: Event[] = [];
  for (const box of boxes) {
    const span = box.dims[dim] as Span;
    if (span[0] > span[1]) continue;
    ev.push({ at: span[0], box, add: true }, { at: span[1] + 1n, box, add: false });
  }
  return ev.sort((a, b) => cmp(a.at, b.at));
}

/** Pieces produced so far by the running {@link partition}, against its `limit`. */
let work = 0;
let workLimit = Number.POSITIVE_INFINITY;

class OverLimit extends Error {}

/** One dimension: the lowest owner of each elementary segment, adjacent equal owners merged. */
function paint1(boxes: readonly Box[], dim: number): { span: Span; owner: number }[] {
  const ev = events(boxes, dim);
  const counts = new Map<number, number>();
  const heap: number[] = [];
  const out: { span: [bigint, bigint]; owner: number }[] = [];
  let i = 0;
  while (i < ev.length) {
    const at = (ev[i] as Event).at;
    for (; i < ev.length && (ev[i] as Event).at === at; i++) {
      const e = ev[i] as Event;
      const c = (counts.get(e.box.owner) ?? 0) + (e.add ? 1 : -1);
      counts.set(e.box.owner, c);
      if (e.add && c === 1) heapPush(heap, e.box.owner);
    }
    while (heap.length > 0 && (counts.get(heap[0] as number) ?? 0) === 0) heapPop(heap);
    const next = i < ev.length ? (ev[i] as Event).at : undefined;
    if (heap.length === 0 || next === undefined) continue;
    const owner = heap[0] as number;
    const last = out.at(-1);
    if (last && last.owner === owner && last.span[1] + 1n === at) last.span[1] = next - 1n;
    else out.push({ span: [at, next - 1n], owner });
  }
  work += out.length;
  if (work > workLimit) throw new OverLimit();
  return out;
}

function partitionFrom(boxes: readonly Box[], dim: number, ndims: number): Piece[] {
  if (dim === ndims - 1) return paint1(boxes, dim).map((p) => ({ dims: [p.span], owner: p.owner }));
  const ev = events(boxes, dim);
  const active = new Set<Box>();
  const runs: { first: bigint; last: bigint; inner: Piece[] }[] = [];
  let i = 0;
  while (i < ev.length) {
    const at = (ev[i] as Event).at;
    for (; i < ev.length && (ev[i] as Event).at === at; i++) {
      const e = ev[i] as Event;
      if (e.add) active.add(e.box);
      else active.delete(e.box);
    }
    const next = i < ev.length ? (ev[i] as Event).at : undefined;
    if (active.size === 0 || next === undefined) continue;
    // Only a change of the active set can change the inner split.
    const inner = partitionFrom([...active], dim + 1, ndims);
    const last = runs.at(-1);
    if (last && last.last + 1n === at && samePieces(last.inner, inner)) last.last = next - 1n;
    else runs.push({ first: at, last: next - 1n, inner });
  }
  return runs.flatMap((r) => r.inner.map((p) => ({ dims: [[r.first, r.last] as Span, ...p.dims], owner: p.owner })));
}

function samePieces(a: readonly Piece[], b: readonly Piece[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as Piece;
    const y = b[i] as Piece;
    if (x.owner !== y.owner) return false;
    for (let d = 0; d < x.dims.length; d++) {
      const sx = x.dims[d] as Span;
      const sy = y.dims[d] as Span;
      if (sx[0] !== sy[0] || sx[1] !== sy[1]) return false;
    }
  }
  return true;
}

/** Disjoint pieces covering the union of `boxes`; all boxes must have the same number of dimensions. */
export function partition(boxes: readonly Box[]): Piece[] {
  const first = boxes[0];
  if (first === undefined) return [];
  return partitionFrom(boxes, 0, first.dims.length);
}

/**
 * {@link partition}, or null as soon as it has produced more than `limit`
 * pieces along the way (inner splits included): a caller that only wants the
 * split when it is small never pays for a large one.
 *
 * @example
 * ```ts
 * import { partitionWithin } from "./partition.ts";
 * partitionWithin([{ dims: [[0n, 9n]], owner: 0 }, { dims: [[5n, 20n]], owner: 0 }], 1); // [{ dims: [[0n, 20n]], owner: 0 }]
 * ```
 */
export function partitionWithin(boxes: readonly Box[], limit: number): Piece[] | null {
  work = 0;
  // Inner splits are counted too, so the work allowed is a multiple of the pieces wanted.
  workLimit = limit * 8 + 16;
  try {
    const out = partition(boxes);
    return out.length <= limit ? out : null;
  } catch (e) {
    if (e instanceof OverLimit) return null;
    throw e;
  } finally {
    work = 0;
    workLimit = Number.POSITIVE_INFINITY;
  }
}

function heapPush(h: number[], x: number): void {
  h.push(x);
  let i = h.length - 1;
  while (i > 0) {
    const p = (i - 1) >> 1;
    if ((h[p] as number) <= x) break;
    h[i] = h[p] as number;
    i = p;
  }
  h[i] = x;
}

function heapPop(h: number[]): void {
  const last = h.pop() as number;
  if (h.length === 0) return;
  let i = 0;
  for (;;) {
    const l = 2 * i + 1;
    const r = l + 1;
    let m = i;
    let mv = last;
    if (l < h.length && (h[l] as number) < mv) { m = l; mv = h[l] as number; }
    if (r < h.length && (h[r] as number) < mv) { m = r; mv = h[r] as number; }
    if (m === i) break;
    h[i] = h[m] as number;
    i = m;
  }
  h[i] = last;
}
