/**
 * Spreads possibly overlapping boxes over a few layers of disjoint elements,
 * so that overlaps never multiply into cross products (SPEC §3.2, §4.6).
 *
 * The forward chain looks the layers of one map up in order, and every
 * element jumps to a chain that accepts, so the first layer holding a match
 * decides. Boxes are placed in owner order (lower owner = earlier in the stable
 * ownership order); each box goes into the lowest layer above every layer that
 * holds an overlapping box of an earlier owner, and not into a layer holding an
 * overlapping box of its own owner (nft interval maps refuse overlaps). Where
 * two owners overlap, the earlier one is therefore looked up first and counts
 * the packet, exactly as if the overlap had been split.
 *
 * Before that, a box shrinks where it can without being split: a box inside an
 * earlier-or-same owner's box disappears (that box already decides there), and a
 * box that an earlier box cuts along one side only is cut to the rest. Within one
 * owner, its boxes are merged by {@link partitionWithin} when that gives no more.
 * So no owner ever gets more elements than it has boxes, and disjoint owners
 * stay in layer 0.
 *
 * Only when an overlap chain is deeper than `maxLayers` does a box go into the
 * top layer regardless; the top layer then splits the boxes that overlap there
 * (today's disjoint split, {@link partition}), which may multiply. That needs
 * more than `maxLayers` owners overlapping one another in a way that no cut
 * removes.
 *
 * @example
 * ```ts
 * import { layer } from "./layers.ts";
 * // owner 0: everything on port 443; owner 1: one host, every port. No element is split.
 * const layers = layer([
 *   { owner: 0, dims: [[0n, 255n], [443n, 443n]] },
 *   { owner: 1, dims: [[7n, 7n], [0n, 65535n]] },
 * ], 8);
 * layers.map((l) => l.length); // [1, 1]
 * ```
 * @module
 */
import { type Box, type Piece, partition, partitionWithin, type Span } from "./partition.ts";

interface Placed {
  dims: Span[];
  readonly owner: number;
  layer: number;
  dropped: boolean;
}

/** Whether two boxes meet in every dimension. */
export const overlaps = (a: readonly Span[], b: readonly Span[]): boolean => {
  for (let d = 0; d < a.length; d++) {
    const x = a[d] as Span;
    const y = b[d] as Span;
    if (x[1] < y[0] || y[1] < x[0]) return false;
  }
  return true;
};

/**
 * `a` minus `c` when that is one box (or nothing: null); `a` itself when `c`
 * would split it. `c` overlaps `a`.
 */
function clip(a: Span[], c: readonly Span[]): Span[] | null {
  let cut = -1;
  for (let d = 0; d < a.length; d++) {
    const x = a[d] as Span;
    const y = c[d] as Span;
    if (y[0] <= x[0] && x[1] <= y[1]) continue;
    if (cut >= 0) return a; // c is narrower in two dimensions: the rest is not one box
    cut = d;
  }
  if (cut < 0) return null;
  const x = a[cut] as Span;
  const y = c[cut] as Span;
  let next: Span;
  if (y[0] <= x[0]) next = [y[1] + 1n, x[1]];
  else if (x[1] <= y[1]) next = [x[0], y[0] - 1n];
  else return a; // c sits inside: the rest is two pieces
  const out = a.slice();
  out[cut] = next;
  return out;
}

/**
 * Overlap candidates by one dimension: intervals sorted by start, with a
 * segment tree of the largest end below each node, so a query visits only
 * intervals that meet it (plus a logarithmic overhead).
 */
class SpanIndex {
  private readonly ids: number[];
  private readonly starts: bigint[];
  private readonly ends: bigint[];
  private readonly tree: bigint[];
  private readonly size: number;

  constructor(items: readonly { id: number; span: Span }[]) {
    const sorted = items.toSorted((a, b) => (a.span[0] < b.span[0] ? -1 : a.span[0] > b.span[0] ? 1 : 0));
    this.ids = sorted.map((x) => x.id);
    this.starts = sorted.map((x) => x.span[0]);
    this.ends = sorted.map((x) => x.span[1]);
    let size = 1;
    while (size < sorted.length) size *= 2;
    this.size = size;
    this.tree = new Array<bigint>(2 * size).fill(-1n);
    for (let i = 0; i < sorted.length; i++) this.tree[size + i] = this.ends[i] as bigint;
    for (let i = size - 1; i >= 1; i--) {
      const l = this.tree[2 * i] as bigint;
      const r = this.tree[2 * i + 1] as bigint;
      this.tree[i] = l > r ? l : r;
    }
  }

  /** Calls `visit` with the id of every interval that meets [first, last]. */
  query(first: bigint, last: bigint, visit: (id: number) => void): void {
    // Only intervals starting at or before `last` can meet it.
    let lo = 0;
    let hi = this.starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.starts[mid] as bigint) <= last) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0) this.walk(1, 0, this.size, lo, first, visit);
  }

  private walk(node: number, from: number, to: number, limit: number, first: bigint, visit: (id: number) => void): void {
    if (from >= limit || (this.tree[node] as bigint) < first) return;
    if (to - from === 1) {
      visit(this.ids[from] as number);
      return;
    }
    const mid = (from + to) >> 1;
    this.walk(2 * node, from, mid, limit, first, visit);
    this.walk(2 * node + 1, mid, to, limit, first, visit);
  }
}

/** One owner's boxes, with their hull and whether they are known to be disjoint. */
interface Group {
  readonly owner: number;
  readonly boxes: readonly Box[];
  readonly disjoint: boolean;
  readonly hull: Span[];
  /** Indexes into the placed list, in box order; filled while placing. */
  readonly placed: Placed[];
}

/** The smallest box holding all of `boxes` (their dims; at least one). */
export function hullOfDims(boxes: readonly (readonly Span[])[]): Span[] {
  const first = boxes[0] as readonly Span[];
  return first.map((_, d) => {
    let lo = (first[d] as Span)[0];
    let hi = (first[d] as Span)[1];
    for (const b of boxes) {
      const s = b[d] as Span;
      if (s[0] < lo) lo = s[0];
      if (s[1] > hi) hi = s[1];
    }
    return [lo, hi] as Span;
  });
}

const hullOf = (boxes: readonly Box[]): Span[] => hullOfDims(boxes.map((b) => b.dims));

/** Each owner's boxes, merged into fewer disjoint ones when the split is smaller; in owner order. */
function groupByOwner(boxes: readonly Box[]): Group[] {
  const out: Group[] = [];
  let i = 0;
  while (i < boxes.length) {
    let j = i + 1;
    while (j < boxes.length && (boxes[j] as Box).owner === (boxes[i] as Box).owner) j++;
    const own = boxes.slice(i, j);
    // Not more pieces than boxes: then the pieces are used (disjoint, so they need no checks among themselves).
    const merged = own.length > 1 ? partitionWithin(own, own.length) : null;
    const list = merged ?? own;
    out.push({ owner: (own[0] as Box).owner, boxes: list, disjoint: merged !== null || own.length === 1, hull: hullOf(list), placed: [] });
    i = j;
  }
  return out;
}

/**
 * Overlap candidates of boxes: grouped by their exact first-dimension span
 * (boxes of one address range, or "any address", share one group), the groups
 * indexed by that span, and each group's boxes by their last dimension. A query
 * visits only groups that meet it on the first dimension and, inside them, only
 * boxes that meet it on the last.
 */
class BoxIndex {
  private readonly outer: SpanIndex;
  private readonly inner: SpanIndex[] = [];

  constructor(items: readonly { id: number; dims: readonly Span[] }[]) {
    const groups = new Map<string, { span: Span; items: { id: number; span: Span }[] }>();
    for (const x of items) {
      const d0 = x.dims[0] as Span;
      const key = `${d0[0]}-${d0[1]}`;
      let g = groups.get(key);
      if (g === undefined) groups.set(key, (g = { span: d0, items: [] }));
      g.items.push({ id: x.id, span: x.dims[x.dims.length - 1] as Span });
    }
    const list = [...groups.values()];
    this.outer = new SpanIndex(list.map((g, id) => ({ id, span: g.span })));
    this.inner = list.map((g) => new SpanIndex(g.items));
  }

  query(dims: readonly Span[], visit: (id: number) => void): void {
    const d0 = dims[0] as Span;
    const dl = dims[dims.length - 1] as Span;
    this.outer.query(d0[0], d0[1], (g) => (this.inner[g] as SpanIndex).query(dl[0], dl[1], visit));
  }
}

/**
 * The boxes, spread over at most `maxLayers` layers of disjoint pieces (layer 0
 * first). `boxes` must all have the same number of dimensions; their order
 * among equal owners is kept.
 *
 * The top layer's split of overlap chains deeper than `maxLayers` is the one
 * place pieces can multiply; it stops once it passes `splitLimit` pieces and
 * then reports `overflow` instead of spending time and memory on a split that
 * would not be applied anyway.
 */
export function layer(boxes: readonly Box[], maxLayers: number, splitLimit = Number.POSITIVE_INFINITY, report?: { overflow: boolean }): Piece[][] {
  const groups = groupByOwner(boxes.filter((b) => b.dims.every((s) => s[0] <= s[1])).toSorted((a, b) => a.owner - b.owner));
  if (groups.length === 0) return [];
  const all: { box: Box; group: Group }[] = groups.flatMap((group) => group.boxes.map((box) => ({ box, group })));
  const index = new BoxIndex(all.map((x, id) => ({ id, dims: x.box.dims })));
  const placed: Placed[] = [];
  const top = maxLayers - 1;
  // Boxes of the top layer that overlap one another: union-find.
  const parent = new Map<Placed, Placed>();
  const root = (x: Placed): Placed => {
    let r = x;
    while (parent.get(r) !== r) r = parent.get(r) as Placed;
    parent.set(x, r);
    return r;
  };
  const join = (a: Placed, b: Placed) => {
    if (!parent.has(a)) parent.set(a, a);
    if (!parent.has(b)) parent.set(b, b);
    parent.set(root(a), root(b));
  };

  for (let i = 0; i < all.length; i++) {
    const { box, group } = all[i] as { box: Box; group: Group };
    let dims = box.dims.slice();
    let dropped = false;
    let met: Placed[] = [];
    for (let changed = true; changed && !dropped; ) {
      changed = false;
      met = [];
      index.query(dims, (id) => {
        if (id >= i) return;
        const p = placed[id] as Placed;
        // An owner's merged pieces are disjoint: no need to look at one another.
        if (p.dropped || (group.disjoint && p.owner === box.owner) || !overlaps(p.dims, dims)) return;
        met.push(p);
      });
      for (const p of met) {
        const rest = clip(dims, p.dims);
        if (rest === null) {
          dropped = true;
          break;
        }
        if (rest !== dims) {
          dims = rest;
          changed = true;
          break;
        }
      }
    }
    let floor = 0;
    const own = new Set<number>();
    for (const p of met) {
      if (p.owner < box.owner) floor = Math.max(floor, p.layer + 1);
      else own.add(p.layer);
    }
    let at = floor;
    while (own.has(at)) at++;
    const p: Placed = { dims, owner: box.owner, layer: Math.min(at, top), dropped };
    if (!dropped && at >= top) for (const q of met) if (q.layer === top) join(p, q);
    placed.push(p);
    group.placed.push(p);
  }

  const layers: Piece[][] = Array.from({ length: maxLayers }, () => []);
  const split = new Map<Placed, Box[]>();
  for (const g of groups) {
    for (const p of g.placed) {
      if (p.dropped) continue;
      if (parent.has(p)) {
        const r = root(p);
        const list = split.get(r) ?? [];
        list.push({ dims: p.dims, owner: p.owner });
        split.set(r, list);
      } else (layers[p.layer] as Piece[]).push({ dims: p.dims, owner: p.owner });
    }
  }
  let room = splitLimit;
  for (const list of split.values()) {
    const pieces = Number.isFinite(room) ? partitionWithin(list, room) : partition(list);
    if (pieces === null) {
      if (report) report.overflow = true;
      break;
    }
    room -= pieces.length;
    (layers[top] as Piece[]).push(...pieces);
  }
  while (layers.length > 0 && (layers.at(-1) as Piece[]).length === 0) layers.pop();
  return layers;
}
