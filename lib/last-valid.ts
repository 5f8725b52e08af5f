/**
 * The last valid version of every object (SPEC §3.2): an invalid *update* of
 * an object that was valid keeps that version in force instead of revoking
 * what already worked. Held in memory only, by the controller that saw it;
 * a restarted controller does not know it (and says so in the status).
 *
 * Keyed by kind, namespace and name, and bound to the object's uid, so a
 * deleted and recreated object never inherits its predecessor's rules.
 *
 * @example
 * ```ts
 * import { LastValid } from "./last-valid.ts";
 * const memory = new LastValid<string>();
 * memory.remember("Service/shop/web", "uid-1", 3, "the parsed service");
 * memory.recall("Service/shop/web", "uid-1"); // { generation: 3, value: "the parsed service" }
 * memory.recall("Service/shop/web", "uid-2"); // undefined: another object of the same name
 * ```
 * @module
 */

export interface Remembered<T> {
  readonly generation: number | undefined;
  readonly value: T;
}

export class LastValid<T> {
  readonly #entries = new Map<string, { uid: string | undefined } & Remembered<T>>();

  remember(key: string, uid: string | undefined, generation: number | undefined, value: T): void {
    const e = this.#entries.get(key);
    if (e && e.uid === uid && e.generation === generation && e.value === value) return;
    this.#entries.set(key, { uid, generation, value });
  }

  /** The last valid version of this very object (same uid), if this process saw one. */
  recall(key: string, uid: string | undefined): Remembered<T> | undefined {
    const e = this.#entries.get(key);
    return e && e.uid === uid ? { generation: e.generation, value: e.value } : undefined;
  }

  /** Forgets one object (it no longer exists). */
  forget(key: string): void {
    this.#entries.delete(key);
  }

  /** Forgets objects that no longer exist: a deleted policy's last version must not linger. */
  retain(live: ReadonlySet<string>): void {
    for (const key of this.#entries.keys()) if (!live.has(key)) this.#entries.delete(key);
  }

  get size(): number {
    return this.#entries.size;
  }
}
