import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { createSecureContext, createServer, type Server, type TLSSocket } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DropShipper } from "../../lib/droptailer/client.ts";
import { GrpcConnection, type CallOutcome } from "../../lib/droptailer/grpc-connection.ts";
import { encodeLiteralHeaders, HpackDecoder } from "../../lib/droptailer/hpack.ts";
import { waitUntil } from "../wait-until.ts";
import { makePki, type Pki } from "./server.ts";

/** A scripted HTTP/2 server: TLS with ALPN h2, frames parsed and handed to the scenario. */
interface Peer {
  send(type: number, flags: number, stream: number, payload?: Uint8Array): void;
  /** HEADERS with END_HEADERS (and END_STREAM when `end`). */
  headers(stream: number, headers: [string, string][], end: boolean): void;
  /** A trailers-only gRPC answer. */
  answer(stream: number, grpcStatus?: string, extra?: [string, string][]): void;
  readonly frames: { type: number; flags: number; stream: number; payload: Buffer }[];
  readonly socket: TLSSocket;
}
type Scenario = (peer: Peer, frame: { type: number; flags: number; stream: number; payload: Buffer }) => void;

let dir: string;
let pki: Pki;
let server: Server;
let port = 0;
let scenario: Scenario = () => undefined;
let onConnect: (peer: Peer) => void = () => undefined;
const peers: Peer[] = [];

const frameBytes = (type: number, flags: number, stream: number, payload: Uint8Array = new Uint8Array()) => {
  const b = Buffer.alloc(9 + payload.length);
  b.writeUIntBE(payload.length, 0, 3);
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(stream, 5);
  b.set(payload, 9);
  return b;
};
const u32 = (...v: number[]) => {
  const b = Buffer.alloc(4 * v.length);
  v.forEach((x, i) => b.writeUInt32BE(x, i * 4));
  return b;
};
const setting = (id: number, value: number) => {
  const b = Buffer.alloc(6);
  b.writeUInt16BE(id, 0);
  b.writeUInt32BE(value, 2);
  return b;
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "grpc-connection-test-"));
  pki = await makePki(join(dir, "pki"));
  server = createServer({ key: pki.serverKey, cert: pki.serverCert, ALPNProtocols: ["h2"] }, (socket) => {
    let buf = Buffer.alloc(0);
    let preface = false;
    const peer: Peer = {
      frames: [],
      socket,
      send: (type, flags, stream, payload) => void socket.write(frameBytes(type, flags, stream, payload)),
      headers: (stream, h, end) => peer.send(1, 0x4 | (end ? 1 : 0), stream, encodeLiteralHeaders(h)),
      answer: (stream, grpcStatus = "0", extra = []) =>
        peer.headers(stream, [[":status", "200"], ["content-type", "application/grpc"], ["grpc-status", grpcStatus], ...extra], true),
    };
    peers.push(peer);
    socket.on("error", () => undefined);
    socket.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!preface) {
        if (buf.length < 24) return;
        preface = true;
        buf = buf.subarray(24);
        onConnect(peer);
      }
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        const f = { type: buf[3]!, flags: buf[4]!, stream: buf.readUInt32BE(5) & 0x7fffffff, payload: Buffer.from(buf.subarray(9, 9 + len)) };
        buf = buf.subarray(9 + len);
        peer.frames.push(f);
        if (f.type === 4 && !(f.flags & 1)) peer.send(4, 1, 0); // ACK the client's SETTINGS
        scenario(peer, f);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  port = (server.address() as { port: number }).port;
});
afterAll(async () => {
  for (const p of peers) p.socket.destroy();
  await new Promise((r) => server.close(r));
  await rm(dir, { recursive: true, force: true });
});

const connect = (deadlineMs = 5_000, settings: Buffer[] = []) => {
  onConnect = (peer) => peer.send(4, 0, 0, Buffer.concat(settings));
  return GrpcConnection.connect({
    host: "127.0.0.1", port, servername: "droptailer", secureContext: createSecureContext({ ca: pki.ca }),
    authority: "droptailer", path: "/proto.Droptailer/Push", deadlineMs,
  });
};
const DATA = 0, HEADERS = 1, RST_STREAM = 3, GOAWAY = 7, WINDOW_UPDATE = 8, CONTINUATION = 9;

describe("GrpcConnection against a scripted server", () => {
  test("requests carry gRPC's headers and the framed message; a trailers-only answer with grpc-status 0 is success", async () => {
    const decoder = new HpackDecoder();
    let request: [string, string][] = [];
    let body = Buffer.alloc(0);
    scenario = (peer, f) => {
      if (f.type === HEADERS) {
        const r = decoder.decode(f.payload);
        if (r.ok) request = r.headers;
      }
      if (f.type === DATA) {
        body = Buffer.concat([body, f.payload]);
        if (f.flags & 1) peer.answer(f.stream);
      }
    };
    const c = connect();
    expect(await c.call(Uint8Array.from([1, 2, 3]))).toEqual({ ok: true });
    expect(request.slice(0, -1)).toEqual([[":method", "POST"], [":scheme", "https"], [":path", "/proto.Droptailer/Push"], [":authority", "droptailer"],
      ["content-type", "application/grpc"], ["te", "trailers"], ["user-agent", "firewall-controller"]]);
    // The time the call has left when its stream opens.
    const [name, timeout] = request.at(-1)!;
    expect(name).toBe("grpc-timeout");
    expect(Number(timeout.match(/^(\d+)m$/)?.[1])).toBeGreaterThan(4000);
    expect(Number(timeout.match(/^(\d+)m$/)?.[1])).toBeLessThanOrEqual(5000);
    expect([...body]).toEqual([0, 0, 0, 0, 3, 1, 2, 3]);
    expect(c.state).toBe("ready");
    c.close();
    expect(c.state).toBe("closed");
  });

  test("flow control: never more than the server's windows, the rest once it grants more; frames within the frame size", async () => {
    const violations: string[] = [];
    let streamAllowed = 1000;
    let connAllowed = 65_535;
    let got = 0;
    const sizes: number[] = [];
    scenario = (peer, f) => {
      if (f.type !== DATA) return;
      got += f.payload.length;
      sizes.push(f.payload.length);
      if (got > streamAllowed || got > connAllowed) violations.push(`${got} bytes with windows ${streamAllowed}/${connAllowed}`);
      if (f.flags & 1) return peer.answer(f.stream);
      if (got === Math.min(streamAllowed, connAllowed)) {
        streamAllowed += 30_000;
        connAllowed += 30_000;
        peer.send(WINDOW_UPDATE, 0, f.stream, u32(30_000));
        peer.send(WINDOW_UPDATE, 0, 0, u32(30_000));
      }
    };
    const c = connect(5_000, [setting(4, 1000)]);
    const message = new Uint8Array(100_000).fill(7);
    expect(await c.call(message)).toEqual({ ok: true });
    expect(violations).toEqual([]);
    expect(got).toBe(100_005);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(16_384);
    expect(sizes[0]).toBe(1000);
    c.close();
  });

  test("MAX_CONCURRENT_STREAMS: never more streams open than the server allows; all calls end well", async () => {
    const open = new Set<number>();
    let maxOpen = 0;
    let opened = 0;
    scenario = (peer, f) => {
      if (f.type === HEADERS) {
        open.add(f.stream);
        opened++;
        maxOpen = Math.max(maxOpen, open.size);
      }
      if (f.type === DATA && (open.size === 2 || opened === 10)) {
        for (const s of open) peer.answer(s);
        open.clear();
      }
    };
    const c = connect(5_000, [setting(3, 2)]);
    const results = await Promise.all([...Array(10)].map(() => c.call(Uint8Array.from([9]))));
    expect(results).toEqual([...Array(10)].map(() => ({ ok: true })));
    expect(maxOpen).toBe(2);
    expect(opened).toBe(10);
    c.close();
  });

  test("a refused stream is `unavailable` (safe to retry); an error status says its code and its message, decoded and escaped", async () => {
    scenario = (peer, f) => {
      if (f.type !== DATA) return;
      if (f.stream === 1) peer.send(RST_STREAM, 0, 1, u32(7));
      else if (f.stream === 3) peer.answer(3, "14", [["grpc-message", "try%20later%1B[31m"]]);
      else if (f.stream === 5) peer.answer(5, "7", [["grpc-message", "no"]]);
      else peer.headers(f.stream, [[":status", "503"]], true);
    };
    const c = connect();
    expect(await c.call(Uint8Array.from([1]))).toEqual({ ok: false, kind: "unavailable", reason: "unavailable: the server reset the stream (REFUSED_STREAM)" });
    expect(await c.call(Uint8Array.from([1]))).toEqual({ ok: false, kind: "unavailable", reason: "unavailable: UNAVAILABLE: try later\\x1b[31m", grpcCode: 14 });
    expect(await c.call(Uint8Array.from([1]))).toEqual({ ok: false, kind: "rejected", reason: "rejected: PERMISSION_DENIED: no", grpcCode: 7 });
    expect(await c.call(Uint8Array.from([1]))).toEqual({ ok: false, kind: "rejected", reason: "rejected: HTTP status 503" });
    expect(c.state).toBe("ready");
    c.close();
  });

  test("an answer split over CONTINUATION frames, with padding, headers then data then trailers", async () => {
    scenario = (peer, f) => {
      if (f.type !== DATA) return;
      const block = encodeLiteralHeaders([[":status", "200"], ["content-type", "application/grpc"], ["x-filler", "f".repeat(100)]]);
      const padded = Buffer.concat([Buffer.from([3]), block.subarray(0, 10), Buffer.alloc(3)]);
      peer.send(HEADERS, 0x8, f.stream, padded);
      peer.send(CONTINUATION, 0x4, f.stream, block.subarray(10));
      peer.send(DATA, 0, f.stream, Buffer.alloc(5));
      peer.headers(f.stream, [["grpc-status", "0"]], true);
    };
    const c = connect();
    expect(await c.call(Uint8Array.from([1]))).toEqual({ ok: true });
    c.close();
  });

  test("GOAWAY: streams above its last id fail `unavailable`, those below still end; then the connection closes", async () => {
    scenario = (peer, f) => {
      if (f.type !== DATA || f.stream !== 3) return;
      peer.send(GOAWAY, 0, 0, u32(1, 0));
      peer.answer(1);
    };
    const c = connect();
    const [a, b] = await Promise.all([c.call(Uint8Array.from([1])), c.call(Uint8Array.from([2]))]);
    expect(a).toEqual({ ok: true });
    expect(b).toEqual({ ok: false, kind: "unavailable", reason: "unavailable: the server is going away (NO_ERROR)" });
    await waitUntil("closed", async () => c.state === "closed");
    expect(c.usable).toBe(false);
    expect((await c.call(Uint8Array.from([3]))).ok).toBe(false);
  });

  test("a server that says nothing: the call ends at its deadline, the connection is given up as dead", async () => {
    scenario = () => undefined;
    const c = connect(300);
    const r: CallOutcome = await c.call(Uint8Array.from([1]));
    expect(r).toEqual({ ok: false, kind: "deadline", reason: "deadline: no answer within the deadline" });
    // Its RST_STREAM(CANCEL) told the server.
    const peer = peers.at(-1)!;
    await waitUntil("the reset arrived", async () => peer.frames.some((f) => f.type === RST_STREAM && f.payload.readUInt32BE(0) === 8));
    c.call(Uint8Array.from([2]));
    await waitUntil("given up", async () => c.state === "closed");
    expect(c.error?.reason).toBe("unavailable: the server sent nothing for 300 ms while a call waited");
  });

  test("hostile frames end the connection with GOAWAY and a reason, never the process", async () => {
    const cases: [string, (peer: Peer, stream: number) => void, RegExp, number][] = [
      ["oversized frame", (peer) => peer.socket.write(Buffer.from([0, 0x4e, 0x20, 0, 0, 0, 0, 0, 1])), /a frame of 20000 bytes/, 6],
      ["undecodable header block", (peer, s) => peer.send(HEADERS, 0x5, s, Buffer.from([0xff, 0x80])), /malformed header block: no table entry/, 9],
      ["push promise", (peer, s) => peer.send(5, 0x4, s, u32(2)), /PUSH_PROMISE/, 1],
      ["window overflow", (peer) => peer.send(WINDOW_UPDATE, 0, 0, u32(0x7fffffff)), /connection WINDOW_UPDATE/, 3],
      ["interleaved header block", (peer, s) => { peer.send(HEADERS, 0, s, Buffer.from([0x88])); peer.send(DATA, 0, s, Buffer.alloc(1)); }, /a frame inside a header block/, 1],
      ["SETTINGS acknowledgement with a payload", (peer) => peer.send(4, 1, 0, setting(3, 1)), /SETTINGS acknowledgement with a payload/, 6],
      ["RST_STREAM on stream 0", (peer) => peer.send(RST_STREAM, 0, 0, u32(0)), /RST_STREAM on stream 0/, 1],
    ];
    for (const [name, act, reason, code] of cases) {
      scenario = (peer, f) => {
        if (f.type === DATA) act(peer, f.stream);
      };
      const c = connect();
      const r = await c.call(Uint8Array.from([1]));
      expect({ name, ok: r.ok, kind: r.ok ? undefined : r.kind }).toEqual({ name, ok: false, kind: "unavailable" });
      if (!r.ok) expect(r.reason).toMatch(reason);
      const peer = peers.at(-1)!;
      await waitUntil(`GOAWAY for ${name}`, async () => peer.frames.some((f) => f.type === GOAWAY));
      expect(peer.frames.find((f) => f.type === GOAWAY)!.payload.readUInt32BE(4)).toBe(code);
      expect(c.state).toBe("closed");
    }
  });

  test("a connection idle for longer than the deadline still works: silence counts only while a call waits", async () => {
    scenario = (peer, f) => {
      if (f.type === DATA) setTimeout(() => peer.answer(f.stream), 150);
    };
    const c = connect(300);
    expect(await c.call(Uint8Array.from([1]))).toEqual({ ok: true });
    await Bun.sleep(500); // the scenario: idle for more than a deadline
    expect(await c.call(Uint8Array.from([2]))).toEqual({ ok: true });
    expect(c.state).toBe("ready");
    c.close();
  });

  test("a call whose time ran out while it waited for a stream is never sent", async () => {
    scenario = (peer, f) => {
      // Answers nothing, but a PING now and then: the connection is alive, the server slow.
      if (f.type === DATA) peer.send(6, 0, 0, Buffer.alloc(8));
    };
    const c = connect(300, [setting(3, 1)]);
    const [a, b] = await Promise.all([c.call(Uint8Array.from([1])), c.call(Uint8Array.from([2]))]);
    expect(a).toEqual({ ok: false, kind: "deadline", reason: "deadline: no answer within the deadline" });
    expect(b).toEqual({ ok: false, kind: "deadline", reason: "deadline: no stream within the deadline (not sent)" });
    const peer = peers.at(-1)!;
    await waitUntil("the reset", async () => peer.frames.some((f) => f.type === RST_STREAM));
    expect(peer.frames.filter((f) => f.type === HEADERS).map((f) => f.stream)).toEqual([1]);
    c.close();
  });

  test("an answer before the whole request was sent: our half of the stream is closed with NO_ERROR", async () => {
    scenario = (peer, f) => {
      if (f.type === HEADERS) peer.answer(f.stream);
    };
    const c = connect(5_000, [setting(4, 10)]);
    expect(await c.call(new Uint8Array(1000))).toEqual({ ok: true });
    const peer = peers.at(-1)!;
    await waitUntil("the reset", async () => peer.frames.some((f) => f.type === RST_STREAM));
    const rst = peer.frames.find((f) => f.type === RST_STREAM)!;
    expect({ stream: rst.stream, code: rst.payload.readUInt32BE(0) }).toEqual({ stream: 1, code: 0 });
    c.close();
  });

  test("grpc-status counts from the trailers only; content-type must be gRPC's; a status that is not a number is named, not parsed", async () => {
    scenario = (peer, f) => {
      if (f.type !== DATA) return;
      if (f.stream === 1) {
        peer.headers(1, [[":status", "200"], ["content-type", "application/grpc"], ["grpc-status", "0"]], false);
        peer.send(DATA, 1, 1, Buffer.alloc(5));
      } else if (f.stream === 3) peer.headers(3, [[":status", "200"], ["content-type", "text/html"], ["grpc-status", "0"]], true);
      else peer.answer(f.stream, "");
    };
    const c = connect();
    expect(await c.call(Uint8Array.from([1]))).toEqual({ ok: false, kind: "rejected", reason: "rejected: the answer had no grpc-status in its trailers" });
    expect(await c.call(Uint8Array.from([1]))).toEqual({ ok: false, kind: "rejected", reason: "rejected: not a gRPC answer (content-type text/html)" });
    expect(await c.call(Uint8Array.from([1]))).toEqual({ ok: false, kind: "rejected", reason: "rejected: " });
    c.close();
  });

  test("a stream WINDOW_UPDATE of zero fails that call only", async () => {
    scenario = (peer, f) => {
      if (f.type === HEADERS && f.stream === 1) peer.send(WINDOW_UPDATE, 0, 1, u32(0));
      if (f.type === DATA && f.stream === 3) peer.answer(3);
    };
    const c = connect(5_000, [setting(4, 0)]);
    expect(await c.call(Uint8Array.from([1]))).toEqual({ ok: false, kind: "rejected", reason: "rejected: the server's WINDOW_UPDATE by 0 broke the stream's flow control" });
    scenario = (peer, f) => {
      if (f.type === HEADERS) peer.send(WINDOW_UPDATE, 0, f.stream, u32(100));
      if (f.type === DATA && f.flags & 1) peer.answer(f.stream);
    };
    expect(await c.call(Uint8Array.from([1]))).toEqual({ ok: true });
    expect(c.state).toBe("ready");
    c.close();
  });
});

describe("DropShipper's connections against a scripted server", () => {
  const target = () => ({ address: "127.0.0.1", port, ca: pki.ca });
  test("a server that goes away right after its SETTINGS: connections back off, not one per push", async () => {
    const before = peers.length;
    onConnect = (peer) => {
      peer.send(4, 0, 0);
      peer.send(GOAWAY, 0, 0, u32(0, 0));
    };
    scenario = () => undefined;
    const ac = new AbortController();
    const s = new DropShipper({ signal: ac.signal, reconnectBackoffMs: { initial: 200, max: 1000 } });
    s.setTarget(target());
    const until = performance.now() + 500;
    let pushes = 0;
    while (performance.now() < until) {
      expect((await s.push({ timestamp: 1n, fields: {} })).ok).toBe(false);
      pushes++;
    }
    // 0 ms, then after 200 ms, then 400 ms later: at most three connections in half a second.
    expect(pushes).toBeGreaterThan(10);
    expect(peers.length - before).toBeLessThanOrEqual(3);
    expect(s.status.state).toBe("transient_failure");
    expect(s.status.lastError).toBe("unavailable: the server is going away (NO_ERROR)");
    ac.abort();
  });

  test("close() ends the calls of a connection that is going away, too", async () => {
    onConnect = (peer) => peer.send(4, 0, 0);
    scenario = (peer, f) => {
      // Stream 1 is kept (below GOAWAY's last id) and never answered.
      if (f.type === DATA && f.stream === 1) peer.send(GOAWAY, 0, 0, u32(1, 0));
    };
    const s = new DropShipper({ reconnectBackoffMs: { initial: 50, max: 50 } });
    s.setTarget(target());
    const before = peers.length;
    const first = s.push({ timestamp: 1n, fields: { N: "1" } });
    await waitUntil("its connection", async () => peers.length === before + 1);
    const peer = peers.at(-1)!;
    await waitUntil("its request (answered by GOAWAY)", async () => peer.frames.some((f) => f.type === DATA));
    await waitUntil("the shipper knows the connection is going away", async () => s.status.state !== "ready");
    void s.push({ timestamp: 2n, fields: { N: "2" } });
    await waitUntil("a new connection for new pushes", async () => peers.length === before + 2);
    s.close();
    expect(await first).toEqual({ ok: false, kind: "closed", reason: "closed: the shipper was shut down" });
  });
});
