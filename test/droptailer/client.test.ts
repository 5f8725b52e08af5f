import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DropShipper, type DropTarget } from "../../lib/droptailer/client.ts";
import { DropQueue } from "../../lib/droptailer/queue.ts";
import { runCommand } from "../../lib/exec.ts";
import { ROOT } from "../cli-binary.ts";
import { waitUntil } from "../wait-until.ts";
import { DroptailerTestServer, makePki, type Pki } from "./server.ts";

let dir: string;
let pki: Pki;
const servers: DroptailerTestServer[] = [];
const closers: (() => void)[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "droptailer-test-"));
  pki = await makePki(join(dir, "pki"));
});
afterAll(async () => {
  for (const c of closers) c();
  for (const s of servers) await s.stop();
  await rm(dir, { recursive: true, force: true });
});

const start = async (port = 0) => {
  const s = await DroptailerTestServer.start(pki, port);
  servers.push(s);
  return s;
};
const good = (port: number): DropTarget => ({ address: "127.0.0.1", port, ca: pki.ca, cert: pki.clientCert, key: pki.clientKey });
const shipper = () => {
  const ac = new AbortController();
  const s = new DropShipper({ signal: ac.signal, reconnectBackoffMs: { initial: 50, max: 200 } });
  closers.push(() => ac.abort());
  return s;
};
const queue = (s: DropShipper, onShipped?: (p: number) => void) => {
  const ac = new AbortController();
  const q = new DropQueue<number>({ capacity: 10_000, shipper: s, signal: ac.signal, backoff: { initialMs: 20, maxMs: 200 }, ...(onShipped ? { onShipped } : {}) });
  closers.push(() => ac.abort());
  void q.run();
  return q;
};
const ev = (n: number) => ({ timestamp: 1_700_000_000_000_000n + BigInt(n), fields: { ACTION: "drop", N: String(n), SYN: "" } });

describe("DropShipper against the test droptailer (mutual TLS, loopback)", () => {
  test("an event arrives with its fields and its timestamp to the microsecond", async () => {
    const server = await start();
    const s = shipper();
    s.setTarget(good(server.port));
    const fields = { ACTION: "drop", SRC: "192.0.2.1", DST: "10.0.0.5", PROTO: "TCP", DPT: "22", SYN: "", "ODD=KEY": "a=b=c", "ü": "\u202e" };
    const r = await s.push({ timestamp: 1_700_000_000_123_456n, fields });
    expect(r).toEqual({ ok: true });
    expect(server.received).toEqual([{ timestampUs: 1_700_000_000_123_456n, fields }]);
    expect(s.status.state).toBe("ready");
    expect(s.status.target).toBe(`127.0.0.1:${server.port}`);
    expect(s.status.lastError).toBeUndefined();
    // a Date timestamp works too (millisecond precision)
    expect(await s.push({ timestamp: new Date(1_700_000_000_123), fields: { A: "1" } })).toEqual({ ok: true });
    expect(server.received[1]?.timestampUs).toBe(1_700_000_000_123_000n);
  });

  test("a server certificate from another CA is refused and reported, no throw", async () => {
    const server = await start();
    const s = shipper();
    s.setTarget({ ...good(server.port), ca: pki.wrongCa });
    const r = await s.push(ev(1));
    expect(r).toMatchObject({ ok: false, kind: "refused", reason: "refused: certificate signed by unknown authority" });
    expect(s.status.lastError).toBe("refused: certificate signed by unknown authority");
    expect(server.received).toEqual([]);
  });

  test("without a client certificate the server refuses; reported, no throw", async () => {
    const server = await start();
    const s = shipper();
    s.setTarget({ address: "127.0.0.1", port: server.port, ca: pki.ca });
    const r = await s.push(ev(1));
    expect(r).toMatchObject({ ok: false, kind: "refused", reason: "refused: the server requires a client certificate" });
    expect(s.status.lastError).toBe("refused: the server requires a client certificate");
    expect(server.received).toEqual([]);
  });

  test("a client certificate from another CA is not accepted", async () => {
    const server = await start();
    const s = shipper();
    s.setTarget({ ...good(server.port), cert: pki.wrongClientCert, key: pki.wrongClientKey });
    const r = await s.push(ev(1));
    expect(r.ok).toBe(false);
    expect(server.received).toEqual([]);
  });

  test("no target and unreadable PEM are results, not exceptions", async () => {
    const s = shipper();
    expect(await s.push(ev(1))).toMatchObject({ ok: false, kind: "no_target" });
    expect(s.status.state).toBe("no_target");
    expect(() => s.setTarget({ address: "127.0.0.1", port: 1, ca: Buffer.from("not a pem"), cert: Buffer.from("x"), key: Buffer.from("y") })).not.toThrow();
    const r = await s.push(ev(1));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(["bad_credentials", "refused", "unavailable"]).toContain(r.kind);
  });

  test("wrong credentials, then the right ones via setTarget: the queued events arrive, in order", async () => {
    const server = await start();
    const s = shipper();
    s.setTarget({ ...good(server.port), ca: pki.wrongCa });
    const positions: number[] = [];
    const q = queue(s, (p) => positions.push(p));
    for (let i = 0; i < 20; i++) q.offer(ev(i), i);
    await waitUntil("a refused attempt", async () => q.counters.retried > 0);
    expect(server.received).toEqual([]);
    expect(positions).toEqual([]);
    expect(s.setTarget(good(server.port))).toBe(true);
    q.kick();
    await waitUntil("20 arrived", async () => server.received.length === 20);
    expect(server.received.map((d) => d.fields.N)).toEqual([...Array(20).keys()].map(String));
    await waitUntil("20 positions", async () => positions.length === 20);
    expect(positions).toEqual([...Array(20).keys()]);
  });

  test("setTarget with the same content does not rebuild the channel", async () => {
    const server = await start();
    const s = shipper();
    expect(s.setTarget(good(server.port))).toBe(true);
    expect(await s.push(ev(1))).toEqual({ ok: true });
    const builds = s.status.channelBuilds;
    expect(s.setTarget({ ...good(server.port), ca: Buffer.from(pki.ca), cert: Buffer.from(pki.clientCert) })).toBe(false);
    expect(s.status.channelBuilds).toBe(builds);
    expect(s.status.state).toBe("ready");
    expect(s.setTarget({ ...good(server.port), key: Buffer.from(pki.clientKey.toString() + "\n") })).toBe(true);
    expect(s.status.channelBuilds).toBe(builds + 1);
  });

  test("server down for a while, then back on its port: nothing lost, order kept", async () => {
    const server = await start();
    const s = shipper();
    s.setTarget(good(server.port));
    const q = queue(s);
    for (let i = 0; i < 10; i++) q.offer(ev(i), i);
    await waitUntil("first 10", async () => server.received.length === 10);
    await server.stop();
    for (let i = 10; i < 200; i++) q.offer(ev(i), i);
    await waitUntil("a failed attempt while down", async () => q.counters.retried > 0);
    await waitUntil("state not ready", async () => s.status.state !== "ready");
    expect(s.status.lastError).toMatch(/^unavailable/);
    await server.restart();
    await waitUntil("200 arrived", async () => server.received.length >= 200, 20_000);
    expect(server.received.map((d) => Number(d.fields.N))).toEqual([...Array(200).keys()]);
    // The server has the last one before our side has read its answer: wait for that, not a guess.
    await waitUntil("200 answered", async () => q.counters.shipped === 200, 10_000);
    expect(q.counters).toMatchObject({ shipped: 200, dropped: 0 });
    expect(q.length).toBe(0);
  });

  test("the server moves to another port: setTarget follows, shipping goes on", async () => {
    const a = await start();
    const s = shipper();
    s.setTarget(good(a.port));
    const q = queue(s);
    q.offer(ev(0), 0);
    await waitUntil("at the first", async () => a.received.length === 1);
    await a.stop();
    const b = await start();
    for (let i = 1; i < 50; i++) q.offer(ev(i), i);
    await waitUntil("a failed attempt", async () => q.counters.retried > 0);
    s.setTarget(good(b.port));
    q.kick();
    await waitUntil("49 at the second", async () => b.received.length === 49);
    expect(b.received.map((d) => Number(d.fields.N))).toEqual([...Array(49).keys()].map((i) => i + 1));
    expect(s.status.target).toBe(`127.0.0.1:${b.port}`);
  });

  test("close() (AbortSignal) ends pushes with `closed`", async () => {
    const server = await start();
    const ac = new AbortController();
    const s = new DropShipper({ signal: ac.signal });
    s.setTarget(good(server.port));
    expect(await s.push(ev(1))).toEqual({ ok: true });
    ac.abort();
    expect(await s.push(ev(2))).toMatchObject({ ok: false, kind: "closed" });
    expect(s.status.state).toBe("closed");
    expect(s.setTarget(good(server.port))).toBe(false);
  });

  test("the shipper works inside a `bun build --compile` binary: it pushes to the server", async () => {
    const server = await start();
    const script = join(dir, "ship.ts");
    await writeFile(script, `
      import { DropShipper } from ${JSON.stringify(join(ROOT, "lib/droptailer/client.ts"))};
      import { readFileSync } from "node:fs";
      const [port, d] = process.argv.slice(2);
      const r = (n) => readFileSync(d + "/" + n);
      const s = new DropShipper();
      s.setTarget({ address: "127.0.0.1", port: Number(port), ca: r("ca.crt"), cert: r("client.crt"), key: r("client.key") });
      const res = await s.push({ timestamp: 42n, fields: { FROM: "binary" } });
      console.log(JSON.stringify(res));
      s.close();
      process.exit(res.ok ? 0 : 1);
    `);
    const out = join(dir, "ship");
    const build = await runCommand([process.execPath, "build", "--compile", script, "--outfile", out]);
    expect(build.stderr).not.toContain("error");
    expect(build.code).toBe(0);
    const run = await runCommand([out, String(server.port), pki.dir]);
    expect(run.stdout.trim()).toBe('{"ok":true}');
    expect(run.code).toBe(0);
    expect(server.received).toEqual([{ timestampUs: 42n, fields: { FROM: "binary" } }]);
  }, 60_000);
});
