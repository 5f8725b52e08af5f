/**
 * The cluster's API as the controller needs it: plain REST calls by path and
 * watch streams. A tiny interface, so every caller can be tested against the
 * test API server or a fake; the real one rides on `@kubernetes/client-node`
 * for configuration and authentication (kubeconfig, in-cluster, exec plugins,
 * client certificates) and on its HTTP stack (undici) for transport.
 *
 * @example
 * ```ts
 * import { KubeConfig } from "@kubernetes/client-node";
 * import { clusterApi } from "./api.ts";
 * const kc = new KubeConfig();
 * kc.loadFromDefault();
 * const api = clusterApi(kc);
 * const r = await api.request("GET", "/api/v1/namespaces/firewall/services");
 * console.log(r.status);
 * ```
 * @module
 */
import { HttpMethod, type KubeConfig, RequestContext, Watch } from "@kubernetes/client-node";
import { fetch } from "undici";

/** Any Kubernetes object, as JSON. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

export interface ApiResponse {
  /** HTTP status; 0 when the server could not be reached. */
  readonly status: number;
  readonly body: unknown;
}

export type WatchEventType = "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";

export interface WatchEvent {
  readonly type: WatchEventType;
  readonly object: KubeObject;
}

/** A watch that ended with an HTTP error (410 Gone: the resourceVersion is too old). */
export class WatchError extends Error {
  override readonly name = "WatchError";
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

export interface ClusterApi {
  /** One REST call; never throws for HTTP errors (see `status`), status 0 when unreachable. */
  request(method: Method, path: string, options?: { body?: unknown; contentType?: string; query?: Record<string, string> }): Promise<ApiResponse>;
  /**
   * Streams watch events of a collection until the stream ends (resolves) or
   * fails (rejects; a {@link WatchError} carries the HTTP status, 410 for Gone).
   */
  watch(path: string, query: Record<string, string>, onEvent: (e: WatchEvent) => void, signal: AbortSignal): Promise<void>;
}

const METHODS: Record<Method, HttpMethod> = {
  GET: HttpMethod.GET,
  POST: HttpMethod.POST,
  PUT: HttpMethod.PUT,
  PATCH: HttpMethod.PATCH,
  DELETE: HttpMethod.DELETE,
};

/** The real API, configured by a loaded KubeConfig. */
export function clusterApi(kc: KubeConfig, options: { timeoutMs?: number } = {}): ClusterApi {
  const server = () => {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error("the kubeconfig has no current cluster");
    return cluster.server.replace(/\/+$/, "");
  };
  const timeoutMs = options.timeoutMs ?? 30_000;
  return {
    async request(method, path, opts = {}) {
      const url = new URL(server() + path);
      for (const [k, v] of Object.entries(opts.query ?? {})) url.searchParams.set(k, v);
      const ctx = new RequestContext(url.toString(), METHODS[method]);
      // An exec credential plugin runs here, before the request's own timeout starts: bound it too.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const authenticated = await Promise.race([
        kc.applySecurityAuthentication(ctx).then(() => true, (e: unknown) => e),
        new Promise<false>((resolve) => {
          timer = setTimeout(() => resolve(false), timeoutMs);
        }),
      ]);
      clearTimeout(timer);
      if (authenticated === false) return { status: 0, body: { message: `no credentials: the kubeconfig's authentication did not finish within ${timeoutMs / 1000} s` } };
      if (authenticated !== true) return { status: 0, body: { message: `no credentials: ${authenticated instanceof Error ? authenticated.message : String(authenticated)}` } };
      const headers: Record<string, string> = { ...ctx.getHeaders(), accept: "application/json" };
      if (opts.body !== undefined) headers["content-type"] = opts.contentType ?? "application/json";
      try {
        const res = await fetch(url, {
          method,
          headers,
          dispatcher: ctx.getDispatcher(),
          body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
          signal: AbortSignal.timeout(timeoutMs),
        });
        const text = await res.text();
        let body: unknown = text;
        try {
          body = text === "" ? null : JSON.parse(text);
        } catch {
          // not JSON (a proxy's error page, say): keep the text for the message
        }
        return { status: res.status, body };
      } catch (e) {
        return { status: 0, body: { message: transportError(e, timeoutMs) } };
      }
    },
    watch(path, query, onEvent, signal) {
      return new Promise<void>((resolve, reject) => {
        let controller: AbortController | undefined;
        const onAbort = () => controller?.abort();
        signal.addEventListener("abort", onAbort, { once: true });
        const finish = (err: unknown) => {
          signal.removeEventListener("abort", onAbort);
          // The client ends a watch that saw nothing for 30 s; a quiet cluster is no failure: resume.
          if (!err || signal.aborted || (err as { name?: string }).name === "TimeoutError") return resolve();
          const status = (err as { statusCode?: number }).statusCode;
          const text = withoutRuntimeHints(err instanceof Error ? err.message : String(err)) || "the watch ended with an error";
          reject(new WatchError(status ?? 0, status === undefined ? `API server unreachable: ${text}` : text));
        };
        new Watch(kc)
          .watch(path, query, (type: string, object: KubeObject) => onEvent({ type: type as WatchEventType, object }), finish)
          .then((c) => {
            controller = c;
            if (signal.aborted) c.abort();
          }, finish);
      });
    },
  };
}

/**
 * Why a request got no answer, in our words: the runtime's own error texts
 * carry hints meant for programmers (Bun's "pass `verbose: true` …"), not for
 * an operator reading a log or a status.
 */
function transportError(e: unknown, timeoutMs: number): string {
  const err = e as { name?: string; code?: string; cause?: { code?: string; message?: string } } | undefined;
  if (err?.name === "TimeoutError" || err?.name === "AbortError") return `no answer within ${timeoutMs / 1000} s`;
  const code = err?.cause?.code ?? err?.code;
  if (typeof code === "string" && /^[A-Z_]{3,40}$/.test(code)) return code;
  const text = err?.cause?.message ?? (e instanceof Error ? e.message : String(e));
  return withoutRuntimeHints(text) || "transport error";
}

/** Bun's and undici's error texts end in hints for programmers ("For more information, pass `verbose: true` …"). */
const withoutRuntimeHints = (text: string): string => (text.split(/\.? ?(?:For more information|pass `verbose)/)[0] ?? "").trim();

/**
 * The message of a Kubernetes Status body, or a short rendering of whatever
 * came back; `API server unreachable: …` when nothing did.
 */
export function statusMessage(r: ApiResponse): string {
  const b = r.body as { message?: unknown } | null;
  const message = b && typeof b === "object" && typeof b.message === "string" ? b.message : undefined;
  if (r.status === 0) return `API server unreachable${message ? `: ${message}` : ""}`;
  return message ?? `HTTP ${r.status}`;
}
