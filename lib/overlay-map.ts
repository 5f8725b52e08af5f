/**
 * A read-only map that is another map with a few changes, made without copying it: the next
 * version of a 20,000-entry map after one event costs the changes, not 20,000 insertions, and the
 * version before stays readable as it was (a patch still reads the previous ruleset's comments).
 * It reads, iterates and counts exactly as a `Map` copied and changed the same way would,
 * insertion order included. Its changes are folded into a fresh base once they outgrow about
 * twice the square root of its size, so reads stay one or two lookups and a version costs
 * O(√n) at most.
 *
 * @example
 * ```ts
 * import { OverlayMap } from "./overlay-map.ts";
 * const a = OverlayMap.of(new Map([["x", 1], ["y", 2]]));
 * const b = a.next(["x"], [["z", 3]]);
 * [...a]; // [["x", 1], ["y", 2]]
 * [...b]; // [["y", 2], ["z", 3]]
 * ```
 * @module
 */
export class OverlayMap<K, V> implements ReadonlyMap<K, V> {
  /** Never changed once a version holds it. */
  readonly #base: ReadonlyMap<K, V>;
  /** Keys of the base that are gone (some may be back, at the end: in {@link #appended}). */
  readonly #deleted: ReadonlySet<K>;
  /** Keys of the base with a new value, in their place. */
  readonly #replaced: ReadonlyMap<K, V>;
  /** Keys not in the base (or gone from it and set again), in the order they were set. */
  readonly #appended: ReadonlyMap<K, V>;

  private constructor(base: ReadonlyMap<K, V>, deleted: ReadonlySet<K>, replaced: ReadonlyMap<K, V>, appended: ReadonlyMap<K, V>) {
    this.#base = base;
    this.#deleted = deleted;
    this.#replaced = replaced;
    this.#appended = appended;
  }

  /** A version of `entries` as they are now (the map is copied: the caller may go on changing it). */
  static of<K, V>(entries: Iterable<readonly [K, V]>): OverlayMap<K, V> {
    return new OverlayMap(new Map(entries), new Set(), new Map(), new Map());
  }

  /** This map with `deleted` removed, then `set` set (in that order), as a new version; this one stays as it is. */
  next(deleted: Iterable<K>, set: Iterable<readonly [K, V]>): OverlayMap<K, V> {
    const base = this.#base;
    const gone = new Set(this.#deleted);
    const replaced = new Map(this.#replaced);
    const appended = new Map(this.#appended);
    for (const k of deleted) {
      if (appended.delete(k)) continue;
      if (base.has(k) && !gone.has(k)) {
        gone.add(k);
        replaced.delete(k);
      }
    }
    for (const [k, v] of set) {
      if (appended.has(k)) appended.set(k, v);
      else if (base.has(k) && !gone.has(k)) replaced.set(k, v);
      else appended.set(k, v);
    }
    const version = new OverlayMap(base, gone, replaced, appended);
    const changes = gone.size + replaced.size + appended.size;
    return changes > Math.max(64, 2 * Math.sqrt(base.size)) ? OverlayMap.of(version) : version;
  }

  get size(): number {
    return this.#base.size - this.#deleted.size + this.#appended.size;
  }

  get(key: K): V | undefined {
    if (this.#appended.has(key)) return this.#appended.get(key);
    if (this.#deleted.has(key)) return undefined;
    return this.#replaced.has(key) ? this.#replaced.get(key) : this.#base.get(key);
  }

  has(key: K): boolean {
    return this.#appended.has(key) || (!this.#deleted.has(key) && this.#base.has(key));
  }

  *entries(): MapIterator<[K, V]> {
    const deleted = this.#deleted;
    const replaced = this.#replaced;
    const plain = deleted.size === 0 && replaced.size === 0;
    for (const [k, v] of this.#base) {
      if (plain) yield [k, v];
      else if (!deleted.has(k)) yield [k, replaced.has(k) ? (replaced.get(k) as V) : v];
    }
    yield* this.#appended;
  }

  *keys(): MapIterator<K> {
    for (const [k] of this.entries()) yield k;
  }

  *values(): MapIterator<V> {
    for (const [, v] of this.entries()) yield v;
  }

  [Symbol.iterator](): MapIterator<[K, V]> {
    return this.entries();
  }

  forEach(visit: (value: V, key: K, map: ReadonlyMap<K, V>) => void, thisArg?: unknown): void {
    for (const [k, v] of this.entries()) visit.call(thisArg, v, k, this);
  }

  get [Symbol.toStringTag](): string {
    return "OverlayMap";
  }
}
