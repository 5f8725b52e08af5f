/**
 * Serving an HTTP server on a listen address until a signal aborts: the part
 * the health and metrics endpoints share. Resolves once listening, rejects
 * when the address cannot be bound; `close()` is idempotent and also ends
 * keep-alive connections, which would otherwise hold it open.
 *
 * @example
 * ```ts
 * import { createServer } from "node:http";
 * import { listenUntil } from "./listen.ts";
 * const ac = new AbortController();
 * const s = await listenUntil(createServer((_req, res) => res.end("ok")), "127.0.0.1:0", ac.signal);
 * console.log(s.port > 0); // true
 * ac.abort();
 * ```
 * @module
 */
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * Splits a listen address: `host:port`, `:port` (every interface) or
 * `[v6]:port`. Throws on anything else, naming the address.
 *
 * @example
 * ```ts
 * import { parseListenAddr } from "./listen.ts";
 * parseListenAddr("[::1]:8080"); // { host: "::1", port: 8080 }
 * parseListenAddr(":9630"); // { host: undefined, port: 9630 }
 * ```
 */
export function parseListenAddr(addr: string): { host: string | undefined; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]*)):(\d{1,5})$/.exec(addr);
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw new Error(`${JSON.stringify(addr)} is not a listen address (host:port, :port or [v6]:port)`);
  const host = m[1] ?? m[2];
  return { host: host === "" ? undefined : host, port };
}

export interface Listening {
  /** The bound port (the chosen one when asked for port 0). */
  readonly port: number;
  /** Stops listening and ends open connections; resolves when closed. Safe to call twice. */
  close(): Promise<void>;
}

export function listenUntil(server: Server, addr: string, signal: AbortSignal): Promise<Listening> {
  const { host, port } = parseListenAddr(addr);
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= new Promise<void>((resolve) => {
      signal.removeEventListener("abort", onAbort);
      server.close(() => resolve());
      server.closeAllConnections();
    });
    return closing;
  };
  const onAbort = () => void close();
  return new Promise((resolve, reject) => {
    server.once("error", (e) => reject(new Error(`cannot listen on ${addr}: ${e.message}`, { cause: e })));
    server.listen({ port, host }, () => {
      signal.addEventListener("abort", onAbort, { once: true });
      if (signal.aborted) void close();
      resolve({ port: (server.address() as AddressInfo).port, close });
    });
  });
}
