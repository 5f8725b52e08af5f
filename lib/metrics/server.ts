/**
 * Serves Prometheus metrics (`GET /metrics`) from prom-client registries on a
 * listen address (SPEC §7: :9630 nftables + controller, :9100 node). Scrapes
 * are cheap and never pile up: concurrent scrapes share one collection, and
 * a collection that fails answers 500 with the reason instead of hanging.
 *
 * @example
 * ```ts
 * import { Registry } from "prom-client";
 * import { startMetricsServer } from "./server.ts";
 * const ac = new AbortController();
 * const s = await startMetricsServer("127.0.0.1:0", [new Registry()], ac.signal);
 * console.log((await fetch(`http://127.0.0.1:${s.port}/metrics`)).status); // 200
 * ac.abort();
 * ```
 * @module
 */
import { createServer } from "node:http";
import type { Registry } from "prom-client";
import { escapeText } from "../escape.ts";
import { listenUntil, parseListenAddr } from "../listen.ts";

export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Bound on one collection: a scrape must answer even when nft or /proc stalls. */
const COLLECT_TIMEOUT_MS = 10_000;

export function startMetricsServer(addr: string, registries: readonly Registry[], signal: AbortSignal): Promise<MetricsServer> {
  parseListenAddr(addr); // throws on a bad address before anything is created
  // Each registry prints itself (not Registry.merge, which would drop a registry's own printing,
  // lib/metrics/nftables.ts); their families are distinct, so the texts concatenate.
  const contentType = (registries[0] as Registry).contentType;
  // A registry that prints itself as byte parts (lib/metrics/nftables.ts: 11 MB at 10,000
  // policies) is sent as those parts, one after the other, without copying them into one buffer.
  const encoder = new TextEncoder();
  const partsOf = async (r: Registry): Promise<Uint8Array[]> => {
    const own = (r as Registry & { expositionParts?: () => Promise<Uint8Array[]> }).expositionParts;
    const parts = own ? await own.call(r) : [encoder.encode(await r.metrics())];
    const last = parts.at(-1);
    if (last && last.length > 0 && last[last.length - 1] !== 10) parts.push(encoder.encode("\n"));
    return parts;
  };
  const all = async () => (await Promise.all(registries.map(partsOf))).flat();
  let inFlight: Promise<Uint8Array[]> | undefined;
  const collect = (): Promise<Uint8Array[]> => {
    inFlight ??= new Promise<Uint8Array[]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`collecting took longer than ${COLLECT_TIMEOUT_MS / 1000} s`)), COLLECT_TIMEOUT_MS);
      all().then(resolve, reject).finally(() => clearTimeout(timer));
    }).finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  };
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path !== "/metrics") {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found; metrics are at /metrics\n");
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" }).end("method not allowed\n");
      return;
    }
    collect().then(
      (parts) => {
        res.writeHead(200, { "content-type": contentType, "content-length": String(parts.reduce((n, p) => n + p.length, 0)) });
        if (req.method === "HEAD") {
          res.end();
          return;
        }
        for (const p of parts) if (p.length > 0) res.write(p);
        res.end();
      },
      (e: unknown) => {
        res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
        res.end(`${escapeText(`collecting metrics failed: ${e instanceof Error ? e.message : String(e)}`, { max: 4096 })}\n`);
      },
    );
  });
  return listenUntil(server, addr, signal);
}
