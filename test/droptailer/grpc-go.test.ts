import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DropShipper } from "../../lib/droptailer/client.ts";
import { DropQueue } from "../../lib/droptailer/queue.ts";
import { waitUntil } from "../wait-until.ts";
import { goAvailable, GoDroptailer } from "./go-server.ts";
import { makePki, type Pki } from "./server.ts";

const missing = !goAvailable();
if (missing && process.env.CI === "true") throw new Error("go or grpc-go missing: .ci/run installs golang-go and golang-google-grpc-dev");
if (missing) console.warn("SKIPPED (loudly): test/droptailer/grpc-go.test.ts needs Debian's golang-go and golang-google-grpc-dev");

let dir: string;
let pki: Pki;
let server: GoDroptailer;
beforeAll(async () => {
  if (missing) return;
  dir = await mkdtemp(join(tmpdir(), "droptailer-go-test-"));
  pki = await makePki(join(dir, "pki"));
  server = await GoDroptailer.start(pki.dir, dir);
}, 60_000);
afterAll(async () => {
  if (missing) return;
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

describe.skipIf(missing)("the shipper against grpc-go, the real droptailer's gRPC (HPACK with Huffman and a dynamic table, its flow control)", () => {
  test("5,000 events with a window of 256 arrive exactly, fields and timestamps; odd bytes in fields survive", async () => {
    const ac = new AbortController();
    const s = new DropShipper({ signal: ac.signal });
    s.setTarget({ address: "127.0.0.1", port: server.port, ca: pki.ca, cert: pki.clientCert, key: pki.clientKey });
    const positions: number[] = [];
    const q = new DropQueue<number>({ capacity: 10_000, shipper: s, signal: ac.signal, concurrency: 256, onShipped: (p) => positions.push(p) });
    void q.run();
    const N = 5_000;
    const ev = (i: number) => ({
      timestamp: 1_700_000_000_000_000n + BigInt(i) * 1_000_001n,
      // A big one now and then: it spans DATA frames and the server's windows.
      fields: { ACTION: "drop", ID: String(i), SPT: "1", SRC: "198.51.100.7", ODD: i % 97 === 0 ? "\u202e\x1b[31m=" + "x".repeat(40_000) : "ü" },
    });
    for (let i = 0; i < N; i++) q.offer(ev(i), i);
    await waitUntil("all accepted", async () => positions.length === N, 30_000);
    expect(positions).toEqual([...Array(N).keys()]);
    expect(await server.count()).toEqual({ received: N, distinct: N, malformed: 0 });
    const first = await server.dump();
    expect(first.length).toBe(1000);
    // At most 256 in flight, so arrival order is near the offered order: compare by ID.
    const byId = new Map(first.map((d) => [Number(d.fields.ID), d]));
    for (const [i, d] of byId) {
      const e = ev(i);
      expect(d.fields).toEqual(e.fields);
      expect(BigInt(d.seconds) * 1_000_000n + BigInt(d.nanos / 1000)).toBe(e.timestamp);
    }
    expect(q.counters).toMatchObject({ shipped: N, dropped: 0, retried: 0 });
    expect(s.status.state).toBe("ready");
    ac.abort();
  }, 60_000);
});
