/**
 * Watch streams: newline-delimited JSON `{"type", "object"}` events over a
 * chunked HTTP response, as `GET ...?watch=1` answers on a real apiserver.
 *
 * - no resourceVersion, or "0": ADDED for every current object first, then live;
 * - a resourceVersion: the changes after it from the store's history, then
 *   live; one older than the history answers 200 with a single ERROR event
 *   carrying a 410 `Expired` Status and ends (what client-go and client-node
 *   expect: they relist);
 * - `sendInitialEvents=true`: ADDED for every current object, then (with
 *   bookmarks allowed) a BOOKMARK annotated `k8s.io/initial-events-end`;
 * - label/field selectors apply to both the old and the new object, so an
 *   object leaving the selection is DELETED for the watcher and one entering
 *   it is ADDED, as on a cluster;
 * - `allowWatchBookmarks=true`: a BOOKMARK every `bookmarkIntervalMs` and on
 *   {@link WatchHub.bookmark};
 * - `timeoutSeconds`: the stream ends cleanly after that long;
 * - a resourceVersion newer than the store's (a client of a server that was
 *   restarted empty): accepted, and silent until the store's counter passes
 *   it: only changes with a larger resourceVersion are sent, and no BOOKMARK
 *   below it (the watch cache's cacheWatcher does the same), so the watch
 *   ends only by `timeoutSeconds` or the client;
 * - {@link WatchHub.freeze} (the server hangs): open streams send nothing
 *   (events, bookmarks, timeouts) until {@link WatchHub.destroyFrozen}.
 *
 * @example
 * ```ts
 * import { Rest } from "./rest.ts";
 * import { WatchHub } from "./watch.ts";
 * const hub = new WatchHub(new Rest(), { bookmarkIntervalMs: 60_000 });
 * console.log(hub.open); // 0 open streams
 * ```
 * @module
 */
import type { ServerResponse } from "node:http";
import type { Rest } from "./rest.ts";
import { parseFieldSelector, parseLabelSelector } from "./selectors.ts";
import { ApiError } from "./status.ts";
import type { StoreEvent, Subscription } from "./store.ts";
import { groupVersion, type JsonMap, type KubeObject, type ResourceType } from "./types.ts";

export interface WatchRequest {
  readonly type: ResourceType;
  readonly namespace?: string;
  readonly labelSelector?: string | null;
  readonly fieldSelector?: string | null;
  readonly resourceVersion?: string | null;
  readonly allowWatchBookmarks?: boolean;
  readonly sendInitialEvents?: boolean;
  readonly timeoutSeconds?: number;
  /** Shapes each event's object (a Table row for `kubectl get -w`); identity by default. */
  readonly render?: (o: KubeObject) => unknown;
}

interface Stream {
  readonly type: ResourceType;
  readonly res: ServerResponse;
  readonly end: () => void;
  readonly bookmark: () => void;
  frozen: boolean;
}

export class WatchHub {
  readonly #rest: Rest;
  readonly #bookmarkIntervalMs: number;
  readonly #streams = new Set<Stream>();

  constructor(rest: Rest, options: { bookmarkIntervalMs?: number } = {}) {
    this.#rest = rest;
    this.#bookmarkIntervalMs = options.bookmarkIntervalMs ?? 60_000;
  }

  /** Number of open watch streams. */
  get open(): number {
    return this.#streams.size;
  }

  /**
   * Answers the request with a watch stream. Throws an `ApiError` (before
   * anything is written) for bad selectors; a too-old resourceVersion is
   * answered in-stream.
   */
  serve(req: WatchRequest, res: ServerResponse): void {
    const rest = this.#rest;
    const { type } = req;
    const labels = parseLabelSelector(req.labelSelector);
    const fields = parseFieldSelector(req.fieldSelector);
    const ns = type.namespaced ? req.namespace : undefined;
    const render = req.render ?? ((o: KubeObject) => o);
    const matches = (o: KubeObject | undefined): o is KubeObject =>
      o !== undefined && (ns === undefined || o.metadata.namespace === ns) && labels(o) && fields(o);

    res.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-cache, private", "Transfer-Encoding": "chunked" });
    // Clients wait for the response head before they consider the watch open; send it now, not with the first event.
    res.flushHeaders();
    let stream: Stream | undefined;
    const write = (ev: JsonMap) => {
      if (stream?.frozen) return;
      if (!res.writableEnded && !res.destroyed) res.write(`${JSON.stringify(ev)}\n`);
    };
    const send = (type: string, o: KubeObject) => write({ type, object: render(o) });
    const bookmarkObject = (annotations?: Record<string, string>): JsonMap => ({
      kind: type.kind,
      apiVersion: groupVersion(type),
      metadata: { resourceVersion: rest.store.resourceVersion, ...(annotations ? { annotations } : {}) },
    });

    const rv = req.resourceVersion ?? "";
    const fromCurrent = rv === "" || rv === "0";
    // Changes at or below the requested resourceVersion are never sent (matters when it is in the future).
    const floor = fromCurrent || req.sendInitialEvents ? 0 : Number(rv);
    const onEvent = (e: StoreEvent) => {
      if (e.rv <= floor) return;
      const now = matches(rest.view(type, e.object)) ? rest.view(type, e.object) : undefined;
      const before = e.previous && matches(rest.view(type, e.previous)) ? rest.view(type, e.previous) : undefined;
      if (e.type === "DELETED") {
        if (before) send("DELETED", rest.view(type, e.object));
      } else if (now && before) send("MODIFIED", now);
      else if (now) send("ADDED", now);
      else if (before) send("DELETED", rest.view(type, e.object)); // left the selection
    };

    let sub: Subscription;
    try {
      // With sendInitialEvents the current state is sent, so any given resourceVersion is "not older than" it.
      const from = fromCurrent || req.sendInitialEvents ? Number(rest.store.resourceVersion) : Number(rv);
      if (!Number.isInteger(from) || from < 0) throw ApiError.badRequest(`invalid resource version: ${rv}`);
      if (!Number.isInteger(floor)) throw ApiError.badRequest(`invalid resource version: ${rv}`);
      sub = rest.store.subscribe(type.bucket, from, onEvent);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      write({ type: "ERROR", object: e.status() });
      res.end();
      return;
    }

    const timers: ReturnType<typeof setTimeout>[] = [];
    const self: Stream = {
      type,
      res,
      frozen: false,
      end: () => {
        if (self.frozen) return; // a hung server does not even end streams
        if (!res.writableEnded) res.end();
        cleanup();
      },
      bookmark: () => {
        // No bookmark below the requested resourceVersion: it would move the client backwards.
        if (req.allowWatchBookmarks && Number(rest.store.resourceVersion) >= floor) write({ type: "BOOKMARK", object: bookmarkObject() });
      },
    };
    stream = self;
    const cleanup = () => {
      sub.unsubscribe();
      for (const t of timers) clearInterval(t);
      this.#streams.delete(self);
    };
    this.#streams.add(self);
    res.on("close", cleanup);

    if (fromCurrent || req.sendInitialEvents) {
      for (const o of rest.list(type, ns).items) if (matches(o)) send("ADDED", o);
    }
    if (req.sendInitialEvents && req.allowWatchBookmarks) {
      write({ type: "BOOKMARK", object: bookmarkObject({ "k8s.io/initial-events-end": "true" }) });
    }
    if (!fromCurrent && !req.sendInitialEvents) for (const e of sub.replay) onEvent(e);

    if (req.allowWatchBookmarks && this.#bookmarkIntervalMs > 0) {
      const t = setInterval(self.bookmark, this.#bookmarkIntervalMs);
      t.unref?.();
      timers.push(t);
    }
    if (req.timeoutSeconds !== undefined && req.timeoutSeconds > 0) {
      const t = setTimeout(self.end, req.timeoutSeconds * 1000);
      t.unref?.();
      timers.push(t);
    }
  }

  /** Ends every open stream cleanly (the client sees the response end). */
  endAll(): void {
    for (const s of [...this.#streams]) s.end();
  }

  /** Ends the streams of types served from the given CRD (it was deleted). */
  endForCrd(crdName: string): void {
    for (const s of [...this.#streams]) if (s.type.crdName === crdName) s.end();
  }

  /** The server hangs: every open stream goes silent (no events, bookmarks or ends). */
  freeze(): void {
    for (const s of this.#streams) s.frozen = true;
  }

  /**
   * The server answers again: the streams that were frozen are cut (connection destroyed), since
   * they missed events; clients watch again from their last resourceVersion and get them from the history.
   */
  destroyFrozen(): void {
    for (const s of [...this.#streams]) {
      if (!s.frozen) continue;
      s.res.destroy();
      this.#streams.delete(s);
    }
  }

  /** Sends a BOOKMARK now on every stream that allows them. */
  bookmark(): void {
    for (const s of this.#streams) s.bookmark();
  }
}
