/**
 * A list+watch cache of one collection (client-go's reflector): list, then
 * watch from the list's resourceVersion; a stream that ends is resumed from
 * the last version seen; `410 Gone` relists; any other failure reconnects with
 * backoff. The cache is the truth the reconciler reads; `onChange` only says
 * "something relevant changed", never what (reconciles are level-based).
 *
 * @example
 * ```ts
 * import { Reflector } from "./reflector.ts";
 * // const r = new Reflector({ api, path: "/api/v1/services", onChange: () => trigger.notify(), signal });
 * // r.start(); ...; r.items()
 * ```
 * @module
 */
import type { ClusterApi, KubeObject } from "./api.ts";
import { statusMessage, WatchError } from "./api.ts";
import { backoffDelay, sleep } from "./backoff.ts";
import { sharedWith } from "./shared-with.ts";

export interface ReflectorOptions {
  readonly api: ClusterApi;
  /** Collection path, e.g. `/apis/metal-stack.io/v1/namespaces/firewall/firewalls`. */
  readonly path: string;
  /** Called after the cache changed in a way `relevant` sees. */
  readonly onChange: () => void;
  /**
   * What of an object matters; a change elsewhere (our own status writes,
   * resourceVersion, managedFields) does not call `onChange`. `null` means the
   * object does not matter at all: it coming, changing or going is no change.
   * Default: everything but `status` and bookkeeping metadata.
   */
  readonly relevant?: (o: KubeObject) => unknown;
  /** Reported on every failure (for logs and readiness). */
  readonly onError?: (e: Error) => void;
  readonly signal: AbortSignal;
}

/** Everything but status and the metadata the API server changes on every write. */
export function specOf(o: KubeObject): unknown {
  const { resourceVersion: _rv, managedFields: _mf, generation: _g, ...meta } = o.metadata;
  const { status: _s, ...rest } = o as KubeObject & { status?: unknown };
  return { ...rest, metadata: meta };
}

/** What `relevant` returning null serialises to: such an object's coming, change and going matter to nobody. */
const IRRELEVANT = "null";

const keyOf = (o: KubeObject) => `${o.metadata.namespace ?? ""}/${o.metadata.name}`;

export class Reflector {
  readonly #o: ReflectorOptions;
  /** `stable`: the object as of the last change `relevant` sees (see {@link stableItems}). */
  readonly #items = new Map<string, { object: KubeObject; relevant: string; stable: KubeObject }>();
  #writes = 0;
  /** The keys of the most recent writes: `#journal[i]` is write number `#journalStart + i + 1`. */
  #journal: string[] = [];
  #journalStart = 0;
  #resourceVersion = "";
  #synced = false;
  #fresh = false;
  #watching = false;
  #relistRequested = false;
  #stream: AbortController | undefined;
  #lastError: Error | undefined;

  constructor(options: ReflectorOptions) {
    this.#o = options;
  }

  /** The collection this cache follows. */
  get path(): string {
    return this.#o.path;
  }

  /** Has listed at least once: the cache reflects the cluster (maybe a little late). */
  get synced(): boolean {
    return this.#synced;
  }

  /**
   * Listed, and no failure since: the cache follows the cluster. False from a
   * watch failure until the next successful list — a cache in that state may
   * be missing whatever happened meanwhile and must not drive a reconcile.
   */
  get fresh(): boolean {
    return this.#fresh;
  }

  /** A watch is established right now. */
  get connected(): boolean {
    return this.#watching;
  }

  get lastError(): Error | undefined {
    return this.#lastError;
  }

  /**
   * How often an object was stored or removed (any change, status included): a caller that saw
   * the same count before saw the same {@link items} — work over all of them can be skipped.
   */
  get writes(): number {
    return this.#writes;
  }

  /**
   * The keys (`namespace/name`) stored or removed after the first `writes` writes, once each; undefined
   * when the count is not one this cache had or the journal no longer reaches back that far (then
   * look at all {@link items}). A relist writes every key.
   *
   * @example
   * ```ts
   * // const since = reflector.writes; ...; reflector.changedSince(since) // ["firewall/p-1"]
   * ```
   */
  changedSince(writes: number): ReadonlySet<string> | undefined {
    if (writes < this.#journalStart || writes > this.#writes) return undefined;
    return new Set(this.#journal.slice(writes - this.#journalStart));
  }

  items(): KubeObject[] {
    return [...this.#items.values()].map((x) => x.object);
  }

  /**
   * The objects as each was at its last change that `relevant` sees, in the order of
   * {@link items}: while only its status or bookkeeping changes (every status write), an object
   * keeps its identity here, so work cached by identity (parsing, classifying, rendering) is not
   * done again. For what reads the status, {@link items}.
   */
  stableItems(): KubeObject[] {
    return [...this.#items.values()].map((x) => x.stable);
  }

  get(namespace: string, name: string): KubeObject | undefined {
    return this.#items.get(`${namespace}/${name}`)?.object;
  }

  /** One object as of its last change that `relevant` sees (see {@link stableItems}). */
  getStable(namespace: string, name: string): KubeObject | undefined {
    return this.#items.get(`${namespace}/${name}`)?.stable;
  }

  /** Runs until the signal aborts; never throws. */
  async start(): Promise<void> {
    const { signal } = this.#o;
    let attempt = 0;
    while (!signal.aborted) {
      try {
        await this.#list();
        attempt = 0;
        while (!this.#relistRequested) {
          // An ERROR event ends this one stream (the client swallows exceptions thrown from its callback).
          const stream = new AbortController();
          this.#stream = stream;
          const stop = () => stream.abort();
          signal.addEventListener("abort", stop, { once: true });
          let failed: WatchError | undefined;
          this.#watching = true;
          try {
            await this.#o.api.watch(this.#o.path, { resourceVersion: this.#resourceVersion, allowWatchBookmarks: "true" }, (e) => {
              if (failed) return;
              failed = this.#event(e.type, e.object);
              if (failed) stream.abort();
            }, stream.signal);
          } finally {
            this.#watching = false;
            signal.removeEventListener("abort", stop);
          }
          if (signal.aborted) return;
          if (failed) throw failed;
          // The stream ended (server timeout, proxy): resume from the last version seen.
        }
        this.#relistRequested = false;
        this.#fresh = false;
      } catch (e) {
        this.#watching = false;
        this.#fresh = false;
        if (signal.aborted) return;
        const err = e instanceof Error ? e : new Error(String(e));
        this.#lastError = err;
        this.#o.onError?.(err);
        // Gone: our version is too old to resume from; relist at once, no backoff needed.
        if (err instanceof WatchError && err.status === 410) continue;
        await sleep(backoffDelay(attempt++), signal);
      }
    }
  }

  /**
   * Ends the watch and lists again. For an API server that lost its state
   * (restored from nothing): a watch from a resourceVersion the server has not
   * reached yet stays silent, so only a new list shows what is there now.
   */
  relist(): void {
    this.#relistRequested = true;
    this.#fresh = false;
    this.#stream?.abort();
  }

  /** One list, no watch (`--once`); throws when the list fails. */
  listOnce(): Promise<void> {
    return this.#list();
  }

  async #list(): Promise<void> {
    const r = await this.#o.api.request("GET", this.#o.path);
    if (r.status !== 200) {
      throw new WatchError(r.status, `listing ${this.#o.path} failed: ${statusMessage(r)}`);
    }
    const list = r.body as { apiVersion?: string; kind?: string; items?: KubeObject[]; metadata?: { resourceVersion?: string } };
    // A real API server leaves kind and apiVersion off the items of a list of built-in types
    // (kubernetes/kubernetes#3030); watch events carry them. Without this, every listed Service
    // would look like an unknown kind and open nothing until its next watch event.
    const itemKind = typeof list.kind === "string" && list.kind.endsWith("List") ? list.kind.slice(0, -"List".length) : undefined;
    const seen = new Set<string>();
    // A resync after a failure always reconciles: whatever was missed is in this list.
    let changed = !this.#fresh;
    for (const item of list.items ?? []) {
      const o = item.kind === undefined || item.apiVersion === undefined
        ? { ...item, ...(item.apiVersion === undefined && list.apiVersion ? { apiVersion: list.apiVersion } : {}), ...(item.kind === undefined && itemKind ? { kind: itemKind } : {}) }
        : item;
      const key = keyOf(o);
      seen.add(key);
      changed = this.#put(key, o) || changed;
    }
    for (const [key, entry] of [...this.#items]) {
      if (!seen.has(key)) {
        this.#items.delete(key);
        this.#wrote(key);
        changed ||= entry.relevant !== IRRELEVANT;
      }
    }
    this.#resourceVersion = list.metadata?.resourceVersion ?? "";
    this.#synced = true;
    this.#fresh = true;
    this.#lastError = undefined;
    if (changed) this.#o.onChange();
  }

  /** Whether the change matters: an object whose `relevant` is null before and after (or comes or goes as null) does not. */
  #put(key: string, fresh: KubeObject): boolean {
    const relevant = JSON.stringify((this.#o.relevant ?? specOf)(fresh));
    const had = this.#items.get(key);
    const before = had?.relevant ?? IRRELEVANT;
    // What did not change is the previous version's (one copy of a spec for both versions kept).
    const object = had ? sharedWith(fresh, had.object) : fresh;
    // The generation too: what reads the stable object may report it (observedGeneration).
    const same = had !== undefined && before === relevant && had.stable.metadata.generation === object.metadata.generation && had.stable.metadata.uid === object.metadata.uid;
    this.#items.set(key, { object, relevant: same ? had.relevant : relevant, stable: same ? had.stable : object });
    this.#wrote(key);
    return before !== relevant;
  }

  /** Counts a write of `key`; the journal keeps the last 4,096 to 8,192 of them. */
  #wrote(key: string): void {
    this.#writes++;
    this.#journal.push(key);
    if (this.#journal.length > 8192) {
      this.#journal = this.#journal.slice(4096);
      this.#journalStart += 4096;
    }
  }

  /** Applies one watch event; an ERROR event is returned, to end the stream. */
  #event(type: string, object: KubeObject): WatchError | undefined {
    if (type === "ERROR") {
      const status = object as unknown as { code?: number; message?: string };
      return new WatchError(status.code ?? 0, status.message ?? "watch error");
    }
    const rv = object.metadata?.resourceVersion;
    if (rv) this.#resourceVersion = rv;
    if (type === "BOOKMARK") return undefined;
    const key = keyOf(object);
    if (type === "DELETED") {
      const before = this.#items.get(key);
      if (before && this.#items.delete(key)) {
        this.#wrote(key);
        if (before.relevant !== IRRELEVANT) this.#o.onChange();
      }
    } else if (this.#put(key, object)) this.#o.onChange();
    return undefined;
  }
}
