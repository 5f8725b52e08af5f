/**
 * The comments a map's elements carry, each with a slot, found by the bytes the kernel holds:
 * a dump of 40,000 element counters (10,000 policies) then adds each into its owner's slot of a
 * typed array, without a string, a hash map entry or an object per element.
 *
 * The bytes are the comment's UTF-8 (the kernel's copy may end in NUL, which is not part of it;
 * nor can a comment hold one, being a C string to nft).
 * Lookups hash with FNV-1a and probe an open-addressing table; a hit is compared byte by byte,
 * so a collision never sends an element to the wrong slot.
 *
 * @example
 * ```ts
 * import { commentIndex, slotOf, slotOfBytes } from "./comment-index.ts";
 * const index = commentIndex(["accept traffic for np a tcp", "accept traffic for np b tcp"]);
 * const bytes = new TextEncoder().encode("accept traffic for np b tcp\0");
 * console.log(slotOfBytes(index, bytes, 0, bytes.length)); // 1
 * console.log(slotOf(index, "accept traffic for np a tcp")); // 0
 * ```
 * @module
 */

export interface CommentIndex {
  /** The comments, by slot. */
  readonly comments: readonly string[];
  /** All comments' bytes one after the other; slot `s` is [starts[s], starts[s + 1]). */
  readonly bytes: Uint8Array;
  readonly starts: Int32Array;
  readonly hashes: Int32Array;
  /** Open addressing: slot + 1 at each place, 0 for none; its length is a power of two. */
  readonly table: Int32Array;
}

const encoder = new TextEncoder();

/** FNV-1a over [start, end) of `b`. */
function fnv(b: Uint8Array, start: number, end: number): number {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) h = Math.imul(h ^ (b[i] as number), 0x01000193);
  return h | 0; // as Int32Array keeps it
}

/**
 * An index of distinct `comments` (a repeated one keeps its first slot and is not given another).
 */
export function commentIndex(comments: readonly string[]): CommentIndex {
  // Distinct: a set only while building (the index itself is typed arrays and the comments).
  const distinct = [...new Set(comments)];
  const encoded = distinct.map((c) => encoder.encode(c));
  let size = 0;
  for (const e of encoded) size += e.length;
  const bytes = new Uint8Array(size);
  const starts = new Int32Array(distinct.length + 1);
  const hashes = new Int32Array(distinct.length);
  let capacity = 16;
  while (capacity < distinct.length * 2) capacity *= 2;
  const table = new Int32Array(capacity);
  const mask = capacity - 1;
  let off = 0;
  for (let s = 0; s < encoded.length; s++) {
    const e = encoded[s] as Uint8Array;
    bytes.set(e, off);
    starts[s] = off;
    off += e.length;
    const h = fnv(e, 0, e.length);
    hashes[s] = h;
    let i = h & mask;
    while (table[i] !== 0) i = (i + 1) & mask;
    table[i] = s + 1;
  }
  starts[encoded.length] = off;
  return { comments: distinct, bytes, starts, hashes, table };
}

/** The slot of `comment`, or -1. */
export function slotOf(index: CommentIndex, comment: string): number {
  const b = encoder.encode(comment);
  return slotOfBytes(index, b, 0, b.length);
}

/** The slot of the comment whose bytes are [start, end) of `b` (a trailing NUL ignored), or -1. */
export function slotOfBytes(index: CommentIndex, b: Uint8Array, start: number, end: number): number {
  let e = end;
  while (e > start && b[e - 1] === 0) e--;
  const h = fnv(b, start, e);
  const { table, hashes, starts, bytes } = index;
  const mask = table.length - 1;
  const len = e - start;
  for (let i = h & mask; ; i = (i + 1) & mask) {
    const s = (table[i] as number) - 1;
    if (s < 0) return -1;
    if (hashes[s] !== h) continue;
    const from = starts[s] as number;
    if ((starts[s + 1] as number) - from !== len) continue;
    let same = true;
    for (let k = 0; k < len; k++) {
      if (bytes[from + k] !== b[start + k]) {
        same = false;
        break;
      }
    }
    if (same) return s;
  }
}
