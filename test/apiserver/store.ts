/**
 * The object store: one global, monotonically increasing resourceVersion (as
 * etcd's revision is for the real apiserver), objects in buckets by type, and a
 * bounded history of changes from which watches resume.
 *
 * The store knows nothing about Kubernetes semantics (names, generation,
 * status); {@link ./rest.ts} does. It only stamps `metadata.resourceVersion`
 * and records every write as a watch event.
 *
 * @example
 * ```ts
 * import { Store } from "./store.ts";
 * const store = new Store();
 * const o = store.put("core/namespaces", { metadata: { name: "firewall" } });
 * console.log(o.metadata.resourceVersion === store.resourceVersion); // true
 * ```
 * @module
 */
import { ApiError } from "./status.ts";
import { clone, type KubeObject } from "./types.ts";

export type EventType = "ADDED" | "MODIFIED" | "DELETED";

/** One change, as kept in the history and handed to subscribers. Objects are frozen copies. */
export interface StoreEvent {
  readonly type: EventType;
  /** The resourceVersion of this change. */
  readonly rv: number;
  readonly bucket: string;
  /** The object after the change (for DELETED: the last state, stamped with the deletion's resourceVersion). */
  readonly object: KubeObject;
  /** The object before the change (MODIFIED and DELETED); watches use it to turn selector exits into DELETED. */
  readonly previous?: KubeObject;
}

export type StoreListener = (event: StoreEvent) => void;

export interface StoreOptions {
  /** How many changes the history keeps; watches from before the oldest kept change get 410. Default 10,000. */
  readonly historyLimit?: number;
}

/** A subscription: the history replayed for it, and how to end it. */
export interface Subscription {
  readonly replay: readonly StoreEvent[];
  readonly unsubscribe: () => void;
}

function key(namespace: string | undefined, name: string): string {
  return `${namespace ?? ""}/${name}`;
}

function deepFreeze<T>(v: T): T {
  if (typeof v === "object" && v !== null) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

export class Store {
  readonly #historyLimit: number;
  #rv = 0;
  /** Every change with a resourceVersion above this is in the history. */
  #floor = 0;
  readonly #buckets = new Map<string, Map<string, KubeObject>>();
  #history: StoreEvent[] = [];
  readonly #listeners = new Set<StoreListener>();

  constructor(options: StoreOptions = {}) {
    this.#historyLimit = options.historyLimit ?? 10_000;
  }

  /** The resourceVersion of the latest change (what a list reports). */
  get resourceVersion(): string {
    return String(this.#rv);
  }

  /** The oldest resourceVersion a watch can still start from. */
  get oldestResourceVersion(): number {
    return this.#floor;
  }

  /** A copy of the object, or undefined. */
  get(bucket: string, namespace: string | undefined, name: string): KubeObject | undefined {
    const o = this.#buckets.get(bucket)?.get(key(namespace, name));
    return o === undefined ? undefined : clone(o);
  }

  /** Copies of the bucket's objects (of one namespace when given), ordered by namespace then name, like etcd keys. */
  list(bucket: string, namespace?: string): KubeObject[] {
    const all = [...(this.#buckets.get(bucket)?.entries() ?? [])]
      .filter(([, o]) => namespace === undefined || o.metadata.namespace === namespace)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return all.map(([, o]) => clone(o));
  }

  /** Stores the object (ADDED if new, else MODIFIED) with a new resourceVersion; returns a copy as stored. */
  put(bucket: string, object: KubeObject): KubeObject {
    const name = object.metadata.name;
    if (name === undefined) throw new Error("store: object without metadata.name");
    let objects = this.#buckets.get(bucket);
    if (!objects) {
      objects = new Map();
      this.#buckets.set(bucket, objects);
    }
    const k = key(object.metadata.namespace, name);
    const previous = objects.get(k);
    const rv = ++this.#rv;
    const stored = deepFreeze(clone({ ...object, metadata: { ...object.metadata, resourceVersion: String(rv) } }));
    objects.set(k, stored);
    this.#record({ type: previous ? "MODIFIED" : "ADDED", rv, bucket, object: stored, ...(previous ? { previous } : {}) });
    return clone(stored);
  }

  /** Removes the object; returns its last state stamped with the deletion's resourceVersion, or undefined. */
  remove(bucket: string, namespace: string | undefined, name: string): KubeObject | undefined {
    const objects = this.#buckets.get(bucket);
    const k = key(namespace, name);
    const previous = objects?.get(k);
    if (!objects || !previous) return undefined;
    objects.delete(k);
    const rv = ++this.#rv;
    const last = deepFreeze(clone({ ...previous, metadata: { ...previous.metadata, resourceVersion: String(rv) } }));
    this.#record({ type: "DELETED", rv, bucket, object: last, previous });
    return clone(last);
  }

  /**
   * Subscribes to changes of one bucket after `fromRv`. The history after it is
   * returned as `replay` in the same tick as the subscription starts, so nothing
   * falls between replay and live events. Throws a 410 `ApiError` when changes
   * after `fromRv` have been forgotten.
   */
  subscribe(bucket: string, fromRv: number, listener: StoreListener): Subscription {
    if (fromRv < this.#floor) {
      // The real message names the requested and the oldest available version.
      throw ApiError.expired(`too old resource version: ${fromRv} (${this.#floor + 1})`);
    }
    const replay = this.#history.filter((e) => e.rv > fromRv && e.bucket === bucket);
    const wrapped: StoreListener = (e) => {
      if (e.bucket === bucket) listener(e);
    };
    this.#listeners.add(wrapped);
    return { replay, unsubscribe: () => this.#listeners.delete(wrapped) };
  }

  /**
   * Drops every object and all history and restarts the resourceVersion counter at 0, as an etcd
   * restored from nothing. Subscribers stay subscribed (the server ends their watches) but see no events for the removals.
   */
  reset(): void {
    this.#buckets.clear();
    this.#history = [];
    this.#rv = 0;
    this.#floor = 0;
  }

  /** Forgets all history: any watch from a resourceVersion older than the current one gets 410. */
  compact(): void {
    this.#history = [];
    this.#floor = this.#rv;
  }

  #record(event: StoreEvent): void {
    this.#history.push(event);
    if (this.#history.length > this.#historyLimit) {
      const dropped = this.#history.splice(0, this.#history.length - this.#historyLimit);
      const last = dropped[dropped.length - 1];
      if (last) this.#floor = last.rv;
    }
    for (const l of [...this.#listeners]) l(event);
  }
}
