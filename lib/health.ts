/**
 * `/healthz` and `/readyz` over plain HTTP (SPEC §5 `--health-addr`), for
 * systemd watchdogs, monitoring and operators with `curl`: liveness says the
 * process still works (restart it otherwise), readiness says it is doing its
 * job (the cache is synced, the last apply went through) and, when not, why.
 *
 * @example
 * ```ts
 * import { startHealthServer } from "./health.ts";
 * const ac = new AbortController();
 * const server = await startHealthServer("127.0.0.1:0", { live: () => true, ready: () => ({ ok: true, reason: "" }) }, ac.signal);
 * console.log(await (await fetch(`http://127.0.0.1:${server.port}/healthz`)).text()); // "ok"
 * ac.abort();
 * ```
 * @module
 */
import { createServer, type ServerResponse } from "node:http";
import { escapeText } from "./escape.ts";
import { listenUntil, parseListenAddr } from "./listen.ts";

/**
 * The two questions the server asks the program on every request.
 *
 * @example
 * ```ts
 * import type { HealthChecks } from "./health.ts";
 * let synced = false;
 * const checks: HealthChecks = { live: () => true, ready: () => (synced ? { ok: true, reason: "" } : { ok: false, reason: "cache not synced" }) };
 * ```
 */
export interface HealthChecks {
  readonly live: () => boolean;
  readonly ready: () => { ok: boolean; reason: string };
}

/**
 * A running health server.
 *
 * @example
 * ```ts
 * import { startHealthServer, type HealthServer } from "./health.ts";
 * const s: HealthServer = await startHealthServer(":0", { live: () => true, ready: () => ({ ok: true, reason: "" }) }, new AbortController().signal);
 * await s.close();
 * ```
 */
export interface HealthServer {
  /** The bound port (the chosen one when asked for port 0). */
  readonly port: number;
  /** Stops listening and ends open connections; resolves when closed. Safe to call twice. */
  close(): Promise<void>;
}

export { parseListenAddr } from "./listen.ts";


/**
 * Serves `GET /healthz` (200 `ok`, or 503) and `GET /readyz` (200 `ok`, or
 * 503 with the reason) on `addr` until `signal` aborts. Resolves once
 * listening; rejects when the address cannot be bound.
 *
 * @example
 * ```ts
 * import { startHealthServer } from "./health.ts";
 * // await startHealthServer(flags.healthAddr, { live: () => true, ready: () => controller.readiness() }, signal);
 * ```
 */
export function startHealthServer(addr: string, checks: HealthChecks, signal: AbortSignal): Promise<HealthServer> {
  parseListenAddr(addr); // throws on a bad address before anything is created
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path !== "/healthz" && path !== "/readyz") return reply(res, 404, "not found");
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("allow", "GET, HEAD");
      return reply(res, 405, "method not allowed", req.method);
    }
    // A throwing check is an unhealthy program, not a crashed server.
    try {
      if (path === "/healthz") return checks.live() ? reply(res, 200, "ok", req.method) : reply(res, 503, "not live", req.method);
      const r = checks.ready();
      // The reason may quote the API server or a path: it passes the output gate like any other text.
      return r.ok ? reply(res, 200, "ok", req.method) : reply(res, 503, escapeText(r.reason || "not ready", { max: 4096 }), req.method);
    } catch (e) {
      return reply(res, 503, escapeText(`check failed: ${e instanceof Error ? e.message : String(e)}`, { max: 4096 }), req.method);
    }
  });
  return listenUntil(server, addr, signal);
}

function reply(res: ServerResponse, status: number, text: string, method?: string): void {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
  res.end(method === "HEAD" ? undefined : text);
}
