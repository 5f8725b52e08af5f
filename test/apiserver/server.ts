/**
 * A Kubernetes API server for tests, on `node:http`: enough of the real
 * protocol for `kubectl` and `@kubernetes/client-node` (discovery, CRDs,
 * list/watch with resourceVersions and 410, status subresource, patches,
 * Tables), with fault injection for robustness tests.
 *
 * Start it in-process (`await new TestApiServer().start()`), or standalone
 * with `bun test/apiserver/main.ts --kubeconfig-out PATH` and drive its faults
 * over HTTP: `POST /__test/down-for?ms=N`, `/__test/drop-watches`,
 * `/__test/latency?ms=N`, `/__test/compact`, `/__test/bookmark`, `/__test/hang`,
 * `/__test/unhang`, `/__test/hang-for?ms=N`, `/__test/restart-empty`;
 * `GET /__test/requests` lists the requests seen. `/__test/` answers even while hung.
 *
 * There is no authentication: any bearer token is accepted (the kubeconfig
 * carries one because clients expect a user).
 *
 * @example
 * ```ts
 * import { TestApiServer } from "./server.ts";
 * const server = await new TestApiServer().start();
 * await Bun.write("/tmp/kubeconfig", server.kubeconfig()); // kubectl --kubeconfig /tmp/kubeconfig get ns
 * await server.down(); // connections refused, state kept
 * await server.up();
 * await server.stop();
 * ```
 * @module
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { ApiHandler, readBody, sendError, sendJson } from "./handler.ts";
import { parseRequest } from "./request_info.ts";
import { Rest } from "./rest.ts";
import { Store } from "./store.ts";
import { WatchHub } from "./watch.ts";

export interface TestApiServerOptions {
  /** How many changes watches can resume from (older resourceVersions get 410). Default 10,000. */
  readonly historyLimit?: number;
  /** How often watches that allow bookmarks get one; 0 for never. Default 60 s (as a real apiserver, roughly). */
  readonly bookmarkIntervalMs?: number;
  /** Token written into the kubeconfig. Default `test-token`. */
  readonly token?: string;
  /**
   * Answer `/api` and `/apis` with aggregated discovery when asked (default
   * true, as kube-apiserver 1.30+). false makes clients use the legacy
   * per-group-version documents, as against an older server.
   */
  readonly aggregatedDiscovery?: boolean;
  /** Validate custom resources against their CRD's schema and CEL rules (default true, as a cluster). */
  readonly validateCustomResources?: boolean;
}

export interface StartOptions {
  /** 0 (default) picks a free port. */
  readonly port?: number;
  /** Default 127.0.0.1. */
  readonly host?: string;
}

/** One request the server answered (fault-injection requests under `/__test/` excluded). */
export interface RequestRecord {
  readonly method: string;
  /** Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection; the lower-case method for other paths. */
  readonly verb: string;
  readonly path: string;
  /** The query string without `?`. */
  readonly query: string;
  readonly contentType?: string;
}

/** A filter for {@link TestApiServer.countRequests}; a string path matches as a prefix. */
export interface RequestFilter {
  readonly verb?: string;
  readonly method?: string;
  readonly path?: string | RegExp;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class TestApiServer {
  /** The REST layer (store and registry) for tests that inspect or seed state directly. */
  readonly rest: Rest;
  readonly #watches: WatchHub;
  readonly #handler: ApiHandler;
  readonly #token: string;
  #server: Server | undefined;
  readonly #sockets = new Set<Socket>();
  #host = "127.0.0.1";
  #port = 0;
  #latencyMs = 0;
  #requests: RequestRecord[] = [];
  #upTimer: ReturnType<typeof setTimeout> | undefined;
  #hangTimer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  /** Requests that arrived while hung, never answered. */
  readonly #parked = new Set<ServerResponse>();
  #hung = false;

  constructor(options: TestApiServerOptions = {}) {
    this.rest = new Rest({ store: new Store(options.historyLimit !== undefined ? { historyLimit: options.historyLimit } : {}) });
    this.#watches = new WatchHub(this.rest, options.bookmarkIntervalMs !== undefined ? { bookmarkIntervalMs: options.bookmarkIntervalMs } : {});
    this.#handler = new ApiHandler(this.rest, this.#watches, () => `${this.#host}:${this.#port}`, {
      aggregatedDiscovery: options.aggregatedDiscovery ?? true,
    });
    this.#token = options.token ?? "test-token";
    this.rest.validateCustomResources = options.validateCustomResources ?? true;
    // A real apiserver tears down the watches of a deleted CRD's resources.
    this.rest.onCrdRemoved((name) => this.#watches.endForCrd(name));
  }

  /** Starts listening; resolves once the port is bound. */
  async start(options: StartOptions = {}): Promise<this> {
    this.#host = options.host ?? "127.0.0.1";
    this.#port = options.port ?? 0;
    this.#stopped = false;
    await this.#listen();
    return this;
  }

  /** `http://host:port`. */
  get url(): string {
    return `http://${this.#host}:${this.#port}`;
  }

  get port(): number {
    return this.#port;
  }

  /** True while listening (between start/up and down/stop). */
  get isUp(): boolean {
    return this.#server !== undefined;
  }

  /**
   * A kubeconfig (YAML) with cluster, user and context `test`, current-context
   * `test`. The cluster has `insecure-skip-tls-verify: true` although the
   * server speaks plain http: client-node 2.x refuses http URLs without it.
   */
  kubeconfig(): string {
    return [
      "apiVersion: v1",
      "kind: Config",
      "clusters:",
      "  - name: test",
      "    cluster:",
      `      server: ${this.url}`,
      // client-node refuses plain http unless this is set; kubectl ignores it for http.
      "      insecure-skip-tls-verify: true",
      "users:",
      "  - name: test",
      "    user:",
      `      token: ${this.#token}`,
      "contexts:",
      "  - name: test",
      "    context:",
      "      cluster: test",
      "      user: test",
      "current-context: test",
      "",
    ].join("\n");
  }

  /** Stops listening and closes every connection for good. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#upTimer);
    clearTimeout(this.#hangTimer);
    this.#hung = false;
    this.#parked.clear();
    await this.down();
  }

  /**
   * Hang: connections are still accepted and requests read, but nothing is answered: new requests
   * wait, open watch streams send nothing (no events, no BOOKMARKs, no timeout ends). `/__test/`
   * admin requests are still answered. State changes made meanwhile (through {@link rest}) are kept.
   */
  hang(): void {
    if (this.#hung) return;
    this.#hung = true;
    this.#watches.freeze();
  }

  /**
   * Ends a {@link hang}. Requests that hung are not answered late: their connections are closed
   * (clients see a reset and retry). Watch streams that were open while hung are cut the same way,
   * because they missed events; clients watch again from their last resourceVersion and get the
   * missed changes from the history. Later requests are answered as usual.
   */
  unhang(): void {
    clearTimeout(this.#hangTimer);
    if (!this.#hung) return;
    this.#hung = false;
    for (const res of this.#parked) res.socket?.destroy();
    this.#parked.clear();
    this.#watches.destroyFrozen();
  }

  /** True between {@link hang} and {@link unhang}. */
  get isHung(): boolean {
    return this.#hung;
  }

  /**
   * As a cluster whose etcd was restored from nothing, or rebuilt on the same address: goes
   * {@link down} (clients' watches end, connections are refused), drops all state — every object,
   * CRDs (their types are no longer served) and namespaces included, the watch history — and
   * restarts the resourceVersion counter (the system namespaces `default`, `kube-system`,
   * `kube-public`, `kube-node-lease` are recreated, so it stands at 4), then listens again on the
   * same port.
   *
   * Clients that come back with their old, higher resourceVersions get what a real apiserver gives:
   * a list with `resourceVersion=""` (or "0") answers the new state; a list "not older than" an old
   * version waits 3 s and answers 504 `Timeout` "Too large resource version: N, current: M"; a watch
   * from an old version is accepted and stays silent (no events, no bookmarks) until the new counter
   * passes that version, so a client that never relists sees nothing new (the known hazard of an
   * etcd restore). Unanswered hung requests are dropped.
   */
  async restartEmpty(): Promise<void> {
    this.unhang();
    await this.down();
    this.rest.reset();
    await this.up();
  }

  /** Turns validation of custom resources on or off (off: store objects that predate the schema). */
  setValidation(enabled: boolean): void {
    this.rest.validateCustomResources = enabled;
  }

  /**
   * Outage: closes every connection (watches break mid-stream) and stops
   * listening, so new connections are refused. State is kept for {@link up}.
   */
  async down(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
    server.closeAllConnections?.();
    await closed;
  }

  /** Listens again on the same port after {@link down}. */
  async up(): Promise<void> {
    clearTimeout(this.#upTimer);
    if (this.#server || this.#stopped) return;
    await this.#listen();
  }

  /** Ends every open watch stream (cleanly: the client sees its response end). */
  dropWatches(): void {
    this.#watches.endAll();
  }

  /** Delays every answer (and the start of every watch) by `ms`. */
  setLatency(ms: number): void {
    this.#latencyMs = Math.max(0, ms);
  }

  /** Forgets the watch history: a watch from any resourceVersion older than the current one gets 410. */
  compact(): void {
    this.rest.store.compact();
  }

  /** Sends a BOOKMARK now on every watch that allows them. */
  bookmark(): void {
    this.#watches.bookmark();
  }

  /** Number of open watch streams. */
  get openWatches(): number {
    return this.#watches.open;
  }

  /** Requests answered so far, oldest first. */
  get requests(): readonly RequestRecord[] {
    return this.#requests;
  }

  /** How many requests match the filter. */
  countRequests(filter: RequestFilter = {}): number {
    return this.#requests.filter(
      (r) =>
        (filter.verb === undefined || r.verb === filter.verb) &&
        (filter.method === undefined || r.method === filter.method.toUpperCase()) &&
        (filter.path === undefined || (typeof filter.path === "string" ? r.path.startsWith(filter.path) : filter.path.test(r.path))),
    ).length;
  }

  resetRequests(): void {
    this.#requests = [];
  }

  async #listen(): Promise<void> {
    const server = createServer((req, res) => void this.#onRequest(req, res));
    server.on("connection", (s: Socket) => {
      this.#sockets.add(s);
      s.on("close", () => this.#sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.#port, this.#host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const address = server.address();
    if (address && typeof address === "object") this.#port = address.port;
    this.#server = server;
  }

  async #onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? "/", "http://localhost");
      const body = await readBody(req);
      if (url.pathname.startsWith("/__test/")) return this.#admin(req, res, url);
      const info = parseRequest(req.method ?? "GET", url);
      const contentType = req.headers["content-type"];
      this.#requests.push({
        method: (req.method ?? "GET").toUpperCase(),
        verb: info.verb,
        path: url.pathname,
        query: url.search.replace(/^\?/, ""),
        ...(contentType ? { contentType } : {}),
      });
      if (this.#latencyMs > 0) await sleep(this.#latencyMs);
      if (this.#hung) {
        // Keep the connection, answer nothing; unhang() closes it.
        this.#parked.add(res);
        res.on("close", () => this.#parked.delete(res));
        return;
      }
      this.#handler.handle(req, res, info, url, body);
    } catch (e) {
      sendError(res, e);
    }
  }

  #admin(req: IncomingMessage, res: ServerResponse, url: URL): void {
    const ms = Number(url.searchParams.get("ms") ?? "0");
    const action = url.pathname.slice("/__test/".length);
    if (action === "requests" && req.method === "GET") return sendJson(res, 200, this.#requests);
    if (req.method !== "POST") return sendJson(res, 405, { error: "POST only" });
    switch (action) {
      case "down-for":
        // Answer first, then go down, so the caller learns that it worked.
        res.on("finish", () => {
          void this.down().then(() => {
            this.#upTimer = setTimeout(() => void this.up(), ms);
          });
        });
        return sendJson(res, 200, { down: true, ms });
      case "drop-watches":
        this.dropWatches();
        return sendJson(res, 200, { dropped: true });
      case "latency":
        this.setLatency(ms);
        return sendJson(res, 200, { latencyMs: this.#latencyMs });
      case "compact":
        this.compact();
        return sendJson(res, 200, { compacted: this.rest.store.resourceVersion });
      case "bookmark":
        this.bookmark();
        return sendJson(res, 200, { bookmarks: true });
      case "hang":
        this.hang();
        return sendJson(res, 200, { hung: true });
      case "hang-for":
        this.hang();
        clearTimeout(this.#hangTimer);
        this.#hangTimer = setTimeout(() => this.unhang(), ms);
        return sendJson(res, 200, { hung: true, ms });
      case "unhang":
        this.unhang();
        return sendJson(res, 200, { hung: false });
      case "restart-empty":
        // Answer first: the restart closes every connection, this one included.
        res.on("finish", () => void this.restartEmpty());
        return sendJson(res, 200, { restarting: true });
      default:
        return sendJson(res, 404, { error: `unknown fault action ${action}` });
    }
  }
}
