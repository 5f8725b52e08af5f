/**
 * Structural sharing between two versions of a JSON object from the API: `next`, with every part
 * equal to the part of `prev` at the same path (same keys in the same order, same values) replaced
 * by `prev`'s. A status write gives a policy a new object whose spec is the old one's; sharing it
 * keeps one copy of the spec in memory for the newest and the last relevant version alike (~4 MB
 * at 10,000 policies). `next` is changed in place (the caller owns it: freshly parsed); `prev` is
 * never changed. When the whole of `next` equals `prev`, `prev` itself is returned.
 *
 * @example
 * ```ts
 * import { sharedWith } from "./shared-with.ts";
 * const prev = { spec: { ports: [443] }, status: { state: "Ready" } };
 * const next = sharedWith({ spec: { ports: [443] }, status: { state: "Invalid" } }, prev);
 * next.spec === prev.spec; // true
 * ```
 * @module
 */

/** Deeper than this (hostile input; nothing from the API nests so deep) nothing more is shared. */
const MAX_DEPTH = 64;

export function sharedWith<T>(next: T, prev: unknown): T {
  return share(next, prev, 0) as T;
}

function share(next: unknown, prev: unknown, depth: number): unknown {
  if (next === prev || typeof next !== "object" || next === null || typeof prev !== "object" || prev === null || depth > MAX_DEPTH) return next;
  if (Array.isArray(next)) {
    if (!Array.isArray(prev)) return next;
    let same = next.length === prev.length;
    for (let i = 0; i < next.length; i++) {
      const v = share(next[i], prev[i], depth + 1);
      if (v !== next[i]) next[i] = v;
      if (v !== prev[i]) same = false;
    }
    return same ? prev : next;
  }
  if (Array.isArray(prev)) return next;
  const n = next as Record<string, unknown>;
  const p = prev as Record<string, unknown>;
  const keys = Object.keys(n);
  const before = Object.keys(p);
  // Equal only with the same keys in the same order: what reads it sees the very same object.
  let same = keys.length === before.length;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as string;
    // An own "__proto__" (JSON.parse makes one) is left alone: assigning it would set the prototype.
    if (k === "__proto__") {
      same = false;
      continue;
    }
    const had = Object.hasOwn(p, k);
    const v = had ? share(n[k], p[k], depth + 1) : n[k];
    if (v !== n[k]) n[k] = v;
    if (!had || v !== p[k] || before[i] !== k) same = false;
  }
  return same ? prev : next;
}
