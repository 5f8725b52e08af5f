import { afterEach, describe, expect, test } from "bun:test";
import { createServer } from "node:net";
import { type HealthChecks, parseListenAddr, startHealthServer } from "../lib/health.ts";

const healthy: HealthChecks = { live: () => true, ready: () => ({ ok: true, reason: "" }) };
const stops: AbortController[] = [];
afterEach(() => {
  for (const ac of stops.splice(0)) ac.abort();
});

async function start(checks: HealthChecks, addr = "127.0.0.1:0") {
  const ac = new AbortController();
  stops.push(ac);
  const server = await startHealthServer(addr, checks, ac.signal);
  const get = async (path: string, init?: RequestInit, host = "127.0.0.1") => {
    const res = await fetch(`http://${host}:${server.port}${path}`, init);
    return { status: res.status, text: await res.text() };
  };
  return { server, get, ac };
}

const ipv6 = await new Promise<boolean>((resolve) => {
  const s = createServer();
  s.once("error", () => resolve(false));
  s.listen(0, "::1", () => s.close(() => resolve(true)));
});
// In CI a skipped test is a check that did not run: there, a missing ::1 fails the test instead.
const skipV6 = !ipv6 && process.env.CI !== "true";
if (skipV6) console.warn("SKIPPING: IPv6 loopback (::1) is not available");

describe("startHealthServer", () => {
  test("/healthz answers 200 ok while live and 503 when not", async () => {
    let live = true;
    const { get } = await start({ ...healthy, live: () => live });
    expect(await get("/healthz")).toEqual({ status: 200, text: "ok" });
    live = false;
    expect(await get("/healthz")).toEqual({ status: 503, text: "not live" });
  });

  test("/readyz answers 200 ok when ready and 503 with the reason when not", async () => {
    let ready = { ok: false, reason: "watch caches not synced: firewalls" };
    const { get } = await start({ ...healthy, ready: () => ready });
    expect(await get("/readyz")).toEqual({ status: 503, text: "watch caches not synced: firewalls" });
    ready = { ok: true, reason: "" };
    expect(await get("/readyz")).toEqual({ status: 200, text: "ok" });
    expect(await get("/readyz?verbose")).toEqual({ status: 200, text: "ok" });
  });

  test("other paths are 404 and other methods 405", async () => {
    const { get } = await start(healthy);
    expect((await get("/")).status).toBe(404);
    expect((await get("/metrics")).status).toBe(404);
    expect((await get("/healthz", { method: "POST", body: "x" })).status).toBe(405);
    expect(await get("/healthz", { method: "HEAD" })).toEqual({ status: 200, text: "" });
  });

  test("a throwing check is answered with 503 and the error, and the server keeps serving", async () => {
    const { get } = await start({
      live: () => true,
      ready: () => {
        throw new Error("state unavailable");
      },
    });
    expect(await get("/readyz")).toEqual({ status: 503, text: "check failed: state unavailable" });
    expect((await get("/healthz")).status).toBe(200);
  });

  test("port 0 binds a free port and returns it", async () => {
    const a = await start(healthy);
    const b = await start(healthy);
    expect(a.server.port).toBeGreaterThan(0);
    expect(b.server.port).not.toBe(a.server.port);
  });

  test("an empty host listens on every interface", async () => {
    const { get } = await start(healthy, ":0");
    expect((await get("/healthz")).status).toBe(200);
    if (!skipV6) expect((await get("/healthz", undefined, "[::1]")).status).toBe(200);
  });

  test.skipIf(skipV6)("a bracketed IPv6 host is bound", async () => {
    const { get } = await start(healthy, "[::1]:0");
    expect((await get("/healthz", undefined, "[::1]")).status).toBe(200);
  });

  test("aborting the signal closes the server, keep-alive connections included", async () => {
    const { get, ac, server } = await start(healthy);
    expect((await get("/healthz")).status).toBe(200);
    ac.abort();
    await server.close();
    await expect(fetch(`http://127.0.0.1:${server.port}/healthz`)).rejects.toThrow();
  });

  test("close() works without the signal and can be called twice", async () => {
    const { server } = await start(healthy);
    await server.close();
    await server.close();
    await expect(fetch(`http://127.0.0.1:${server.port}/healthz`)).rejects.toThrow();
  });

  test("an address in use is refused, naming it", async () => {
    const { server } = await start(healthy);
    const addr = `127.0.0.1:${server.port}`;
    await expect(startHealthServer(addr, healthy, new AbortController().signal)).rejects.toThrow(`cannot listen on ${addr}: `);
  });
});

describe("parseListenAddr", () => {
  test.each([
    ["127.0.0.1:8080", { host: "127.0.0.1", port: 8080 }],
    [":9630", { host: undefined, port: 9630 }],
    ["[::1]:0", { host: "::1", port: 0 }],
    ["[2001:db8::1]:65535", { host: "2001:db8::1", port: 65535 }],
    ["localhost:8080", { host: "localhost", port: 8080 }],
  ])("%s", (addr, want) => {
    expect(parseListenAddr(addr)).toEqual(want);
  });

  test.each(["8080", "::1:8080", "127.0.0.1:65536", "127.0.0.1:", "[::1]", "host:port", " :80"])("%s is refused", (addr) => {
    expect(() => parseListenAddr(addr)).toThrow(`${JSON.stringify(addr)} is not a listen address`);
  });
});
