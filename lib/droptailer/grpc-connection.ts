/**
 * One mutual-TLS HTTP/2 connection (RFC 9113) carrying unary gRPC calls, written for the drop
 * log's rate: all frames a burst of calls makes go out in one TLS write, request headers are one
 * constant block built per connection, and each call costs a map entry, not an object graph. It
 * speaks only what a gRPC client needs — requests out, answers in, flow control both ways,
 * SETTINGS, PING answers, GOAWAY, RST_STREAM — and treats every byte from the server as hostile:
 * frame and header sizes are bounded, HPACK errors and protocol violations end the connection,
 * never the process. Calls resolve (never reject) to a discriminated outcome.
 *
 * @example
 * ```ts
 * import { GrpcConnection } from "./grpc-connection.ts";
 * const c = GrpcConnection.connect({ host: "10.244.0.7", port: 50051, servername: "droptailer",
 *   secureContext, authority: "droptailer", path: "/proto.Droptailer/Push", deadlineMs: 5_000 });
 * const r = await c.call(new Uint8Array([0x0a, 0x00])); // a protobuf message
 * if (!r.ok) console.log(r.kind, r.reason);
 * c.close();
 * ```
 * @module
 */
import * as tls from "node:tls";
import { escapeText } from "../escape.ts";
import { encodeLiteralHeaders, HpackDecoder } from "./hpack.ts";

/** Why a call failed (the shipper maps these onto its own kinds). */
export type CallFailureKind = "refused" | "unavailable" | "deadline" | "rejected" | "closed";

export type CallOutcome =
  | { readonly ok: true }
  | { readonly ok: false; readonly kind: CallFailureKind; readonly reason: string; readonly grpcCode?: number };

export interface GrpcConnectOptions {
  readonly host: string;
  readonly port: number;
  /** The name the server's certificate must carry (SNI and verification). */
  readonly servername: string;
  /** CA, client certificate and key, loaded once by the caller. */
  readonly secureContext: tls.SecureContext;
  /** Checks the server's certificate; returns an Error to refuse it. */
  readonly checkServerIdentity?: (host: string, cert: tls.PeerCertificate) => Error | undefined;
  /** `:authority` of every request. */
  readonly authority: string;
  /** `:path` of every request, e.g. `/proto.Droptailer/Push`. */
  readonly path: string;
  /** Deadline of one call from the moment it was made, ms; also sent as `grpc-timeout`. */
  readonly deadlineMs: number;
  /** Until the server's first SETTINGS (TLS and HTTP/2 handshake), ms (default 10,000). */
  readonly connectTimeoutMs?: number;
  /** A monotonic clock in ms (default `performance.now`: deadlines must not move with the wall clock). */
  readonly now?: () => number;
}

/** HTTP/2 error codes (RFC 9113 §7), for reasons. */
const ERROR_CODES = ["NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT", "STREAM_CLOSED",
  "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM",
  "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"];
const errorName = (code: number) => ERROR_CODES[code] ?? `error ${code}`;
/** gRPC status codes, for reasons. */
const GRPC_CODES = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
  "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
  "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"];

const enum Frame {
  DATA = 0, HEADERS = 1, PRIORITY = 2, RST_STREAM = 3, SETTINGS = 4, PUSH_PROMISE = 5, PING = 6, GOAWAY = 7,
  WINDOW_UPDATE = 8, CONTINUATION = 9,
}
const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY_FLAG = 0x20;

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
/** What we accept: the protocol's default frame size and a header block far above any answer's. */
const MAX_FRAME = 16_384;
const MAX_HEADER_BLOCK = 64 * 1024;
/** An answer's body (the empty `Void`, framed, is 5 bytes); more is not an answer we understand. */
const MAX_ANSWER_BODY = 16 * 1024;
/** Our receive window for the connection; replenished once half of it was used. */
const RECEIVE_WINDOW = 1 << 24;
const MAX_WINDOW = 2 ** 31 - 1;
const MAX_STREAM_ID = 2 ** 31 - 1;
/** Bytes waiting in the socket beyond which the server is taken for one that does not read (§10.5). */
const MAX_WRITE_BACKLOG = 16 * 1024 * 1024;

interface Call {
  readonly id: number;
  readonly deadline: number;
  readonly resolve: (o: CallOutcome) => void;
  /** The framed message not yet sent (flow control), from `sent`. */
  data: Buffer;
  sent: number;
  sendWindow: number;
  /** `:status` once the answer's headers came. */
  status?: string;
  /** From the trailers, or from a trailers-only answer; never from the initial headers of a full one. */
  grpcStatus?: string;
  contentType?: string;
  grpcMessage?: string;
  bodyBytes: number;
}

/** Waiting for a stream (the server's MAX_CONCURRENT_STREAMS). */
interface Held {
  readonly message: Uint8Array;
  readonly deadline: number;
  readonly resolve: (o: CallOutcome) => void;
}

export type ConnectionState = "connecting" | "ready" | "draining" | "closed";

export class GrpcConnection {
  readonly #o: GrpcConnectOptions;
  readonly #now: () => number;
  readonly #socket: tls.TLSSocket;
  readonly #decoder = new HpackDecoder();
  readonly #requestHeaders: Uint8Array;
  readonly #timeoutBlocks = new Map<number, Uint8Array>();
  #state: ConnectionState = "connecting";
  /** The reason it closed or could not connect. */
  #error: { kind: CallFailureKind; reason: string } | undefined;
  #calls = new Map<number, Call>();
  #held: Held[] = [];
  #heldHead = 0;
  #blocked: Call[] = [];
  #nextId = 1;
  #out: Buffer[] = [];
  #flushScheduled = false;
  #inbuf: Buffer = Buffer.alloc(0);
  /** A header block being received over CONTINUATION frames. */
  #block: { stream: number; endStream: boolean; parts: Buffer[]; bytes: number } | undefined;
  // The server's settings.
  #maxStreams = Infinity;
  #initialWindow = 65_535;
  #maxFrame = MAX_FRAME;
  #connWindow = 65_535;
  #received = 0;
  #lastFrameAt: number;
  #succeeded = 0;
  /** Why the server said it is going away (GOAWAY), if it did. */
  #goaway: string | undefined;
  #sweep: ReturnType<typeof setInterval> | undefined;
  #connectTimer: ReturnType<typeof setTimeout> | undefined;
  /** Resolves when the connection has ended: why, and how many calls succeeded on it. */
  readonly closed: Promise<{ readonly kind: CallFailureKind; readonly reason: string; readonly succeeded: number }>;
  #closedResolve!: (o: { kind: CallFailureKind; reason: string; succeeded: number }) => void;

  private constructor(o: GrpcConnectOptions) {
    this.#o = o;
    this.#now = o.now ?? (() => performance.now());
    this.#lastFrameAt = this.#now();
    this.closed = new Promise((r) => (this.#closedResolve = r));
    // Constant but for grpc-timeout (the time the call has left), which goes last.
    this.#requestHeaders = encodeLiteralHeaders([
      [":method", "POST"], [":scheme", "https"], [":path", o.path], [":authority", o.authority],
      ["content-type", "application/grpc"], ["te", "trailers"], ["user-agent", "firewall-controller"],
    ]);
    this.#socket = tls.connect({
      host: o.host, port: o.port, servername: o.servername, secureContext: o.secureContext, ALPNProtocols: ["h2"],
      ...(o.checkServerIdentity ? { checkServerIdentity: o.checkServerIdentity } : {}),
    });
    this.#socket.setNoDelay(true);
    this.#connectTimer = setTimeout(() => this.#fail("unavailable", `unavailable: no connection within ${o.connectTimeoutMs ?? 10_000} ms`), o.connectTimeoutMs ?? 10_000);
    this.#socket.on("secureConnect", () => {
      if (this.#socket.alpnProtocol !== "h2") {
        this.#fail("refused", `refused: the server does not speak HTTP/2 (ALPN ${escapeText(String(this.#socket.alpnProtocol), { max: 40 })})`);
        return;
      }
      const settings = Buffer.alloc(12);
      settings.writeUInt16BE(2, 0); // ENABLE_PUSH = 0
      settings.writeUInt32BE(0, 2);
      settings.writeUInt16BE(4, 6); // INITIAL_WINDOW_SIZE
      settings.writeUInt32BE(65_535, 8);
      const update = Buffer.alloc(4);
      update.writeUInt32BE(RECEIVE_WINDOW - 65_535, 0);
      this.#socket.write(Buffer.concat([PREFACE, frame(Frame.SETTINGS, 0, 0, settings), frame(Frame.WINDOW_UPDATE, 0, 0, update)]));
    });
    this.#socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    this.#socket.on("error", (e: Error & { code?: string }) => this.#fail(...classifySocketError(e, this.#state === "connecting")));
    this.#socket.on("close", () => this.#fail("unavailable", this.#state === "connecting" ? "unavailable: the connection closed during the handshake" : "unavailable: the connection closed"));
    this.#sweep = setInterval(() => this.#expire(), 100);
    this.#sweep.unref?.();
  }

  /** Starts connecting; calls made before it is ready wait for it. */
  static connect(options: GrpcConnectOptions): GrpcConnection {
    return new GrpcConnection(options);
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** Why it closed (or failed to connect), if it did. */
  get error(): { readonly kind: CallFailureKind; readonly reason: string } | undefined {
    return this.#error;
  }

  /** Whether new calls can go on this connection (not closed, not going away, stream ids left). */
  get usable(): boolean {
    return this.#state === "connecting" || this.#state === "ready";
  }

  /** Makes one unary call with an encoded protobuf message; resolves (never rejects) with its outcome. */
  call(message: Uint8Array): Promise<CallOutcome> {
    if (!this.usable) return Promise.resolve(this.#error ? { ok: false, ...this.#error } : { ok: false, kind: "unavailable", reason: "unavailable: the connection is going away" });
    return new Promise((resolve) => {
      this.#held.push({ message, deadline: this.#now() + this.#o.deadlineMs, resolve });
      if (this.#state === "ready") this.#startHeld();
    });
  }

  /** Closes the connection; calls in flight and waiting resolve with this reason (default `closed`). */
  close(kind: CallFailureKind = "closed", reason = "closed: the shipper was shut down"): void {
    this.#fail(kind, reason);
  }

  /** The request's header block with `grpc-timeout` of `ms`: a few distinct values, cached. */
  #headersFor(ms: number): Uint8Array {
    let h = this.#timeoutBlocks.get(ms);
    if (h === undefined) {
      if (this.#timeoutBlocks.size >= 256) this.#timeoutBlocks.clear();
      h = Buffer.concat([this.#requestHeaders, encodeLiteralHeaders([["grpc-timeout", `${ms}m`]])]);
      this.#timeoutBlocks.set(ms, h);
    }
    return h;
  }

  /** Opens streams for waiting calls while the server allows more. */
  #startHeld(): void {
    while (this.#heldHead < this.#held.length && this.#calls.size < this.#maxStreams && this.#state === "ready") {
      const h = this.#held[this.#heldHead]!;
      this.#held[this.#heldHead++] = undefined as unknown as Held;
      if (this.#nextId > MAX_STREAM_ID) {
        // Out of stream ids: this connection takes no more; the shipper opens another.
        this.#state = "draining";
        const out: CallOutcome = { ok: false, kind: "unavailable", reason: "unavailable: the connection ran out of stream ids" };
        h.resolve(out);
        this.#failHeld(out);
        if (this.#calls.size === 0) this.#fail(out.kind, out.reason);
        break;
      }
      const left = h.deadline - this.#now();
      if (left <= 0) {
        // Its time ran out while it waited for a stream: never sent, so nothing at the server.
        h.resolve({ ok: false, kind: "deadline", reason: "deadline: no stream within the deadline (not sent)" });
        continue;
      }
      const id = this.#nextId;
      this.#nextId += 2;
      const data = Buffer.allocUnsafe(5 + h.message.length);
      data[0] = 0; // not compressed
      data.writeUInt32BE(h.message.length, 1);
      data.set(h.message, 5);
      const call: Call = { id, deadline: h.deadline, resolve: h.resolve, data, sent: 0, sendWindow: this.#initialWindow, bodyBytes: 0 };
      this.#calls.set(id, call);
      this.#queue(frame(Frame.HEADERS, END_HEADERS, id, this.#headersFor(Math.ceil(left))));
      this.#blocked.push(call);
    }
    if (this.#heldHead > 1024 && this.#heldHead * 2 > this.#held.length) {
      this.#held = this.#held.slice(this.#heldHead);
      this.#heldHead = 0;
    }
    this.#pump();
  }

  /** Sends what flow control allows of the calls' messages, oldest first. */
  #pump(): void {
    let keep = 0;
    for (let i = 0; i < this.#blocked.length; i++) {
      const c = this.#blocked[i]!;
      if (!this.#calls.has(c.id)) continue; // ended meanwhile
      while (c.sent < c.data.length) {
        const n = Math.min(c.data.length - c.sent, this.#connWindow, c.sendWindow, this.#maxFrame);
        if (n <= 0) break;
        const last = c.sent + n === c.data.length;
        this.#queue(frame(Frame.DATA, last ? END_STREAM : 0, c.id, c.data.subarray(c.sent, c.sent + n)));
        c.sent += n;
        c.sendWindow -= n;
        this.#connWindow -= n;
      }
      if (c.sent < c.data.length) this.#blocked[keep++] = c;
      else c.data = EMPTY;
    }
    this.#blocked.length = keep;
  }

  #queue(b: Buffer): void {
    this.#out.push(b);
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    queueMicrotask(() => {
      this.#flushScheduled = false;
      const out = this.#out;
      this.#out = [];
      if (out.length === 0 || this.#state === "closed") return;
      if (this.#socket.writableLength > MAX_WRITE_BACKLOG) {
        this.#fail("unavailable", `unavailable: the server does not read (more than ${MAX_WRITE_BACKLOG} bytes waiting for it)`);
        return;
      }
      this.#socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
    });
  }

  #onData(chunk: Buffer): void {
    const buf = this.#inbuf.length === 0 ? chunk : Buffer.concat([this.#inbuf, chunk]);
    let p = 0;
    this.#lastFrameAt = this.#now();
    while (buf.length - p >= 9 && this.#state !== "closed") {
      const length = (buf[p]! << 16) | (buf[p + 1]! << 8) | buf[p + 2]!;
      if (length > MAX_FRAME) return this.#protocolError(`a frame of ${length} bytes (at most ${MAX_FRAME})`, 6);
      if (buf.length - p < 9 + length) break;
      const type = buf[p + 3]!;
      const flags = buf[p + 4]!;
      const stream = buf.readUInt32BE(p + 5) & 0x7fffffff;
      const payload = buf.subarray(p + 9, p + 9 + length);
      p += 9 + length;
      this.#onFrame(type, flags, stream, payload);
    }
    // Keep the partial frame (copied: the chunk's memory is not ours to hold).
    this.#inbuf = p >= buf.length ? EMPTY : Buffer.from(buf.subarray(p));
  }

  #onFrame(type: number, flags: number, stream: number, payload: Buffer): void {
    if (this.#block && type !== Frame.CONTINUATION) return this.#protocolError("a frame inside a header block", 1);
    switch (type) {
      case Frame.DATA: {
        this.#received += payload.length;
        if (this.#received >= RECEIVE_WINDOW / 2) {
          const u = Buffer.alloc(4);
          u.writeUInt32BE(this.#received, 0);
          this.#received = 0;
          this.#queue(frame(Frame.WINDOW_UPDATE, 0, 0, u));
        }
        if (stream === 0) return this.#protocolError("DATA on stream 0", 1);
        const body = unpad(payload, flags);
        if (!body) return this.#protocolError("DATA with bad padding", 1);
        const c = this.#calls.get(stream);
        if (!c) return;
        c.bodyBytes += payload.length; // padding included: it is bytes the server made us take
        if (c.status === undefined) return this.#endCall(c, { ok: false, kind: "rejected", reason: "rejected: the server sent data before headers" }, true);
        if (c.bodyBytes > MAX_ANSWER_BODY) return this.#endCall(c, { ok: false, kind: "rejected", reason: `rejected: an answer larger than ${MAX_ANSWER_BODY} bytes` }, true);
        if (flags & END_STREAM) this.#finish(c);
        return;
      }
      case Frame.HEADERS: {
        if (stream === 0) return this.#protocolError("HEADERS on stream 0", 1);
        let block = unpad(payload, flags);
        if (!block) return this.#protocolError("HEADERS with bad padding", 1);
        if (flags & PRIORITY_FLAG) {
          if (block.length < 5) return this.#protocolError("HEADERS too short for its priority", 6);
          block = block.subarray(5);
        }
        this.#block = { stream, endStream: (flags & END_STREAM) !== 0, parts: [Buffer.from(block)], bytes: block.length };
        if (flags & END_HEADERS) this.#endBlock();
        return;
      }
      case Frame.CONTINUATION: {
        const b = this.#block;
        if (!b || b.stream !== stream) return this.#protocolError("CONTINUATION without its HEADERS", 1);
        b.bytes += payload.length;
        if (b.bytes > MAX_HEADER_BLOCK) return this.#protocolError(`a header block larger than ${MAX_HEADER_BLOCK} bytes`, 11);
        b.parts.push(Buffer.from(payload));
        if (flags & END_HEADERS) this.#endBlock();
        return;
      }
      case Frame.RST_STREAM: {
        if (stream === 0) return this.#protocolError("RST_STREAM on stream 0", 1);
        if (payload.length !== 4) return this.#protocolError("RST_STREAM of a wrong size", 6);
        const c = this.#calls.get(stream);
        if (!c) return;
        const code = payload.readUInt32BE(0);
        // REFUSED_STREAM: the server did not process it (RFC 9113 §8.7), a retry is safe.
        this.#endCall(c, { ok: false, kind: code === 7 ? "unavailable" : "rejected", reason: `${code === 7 ? "unavailable" : "rejected"}: the server reset the stream (${errorName(code)})` }, false);
        return;
      }
      case Frame.SETTINGS: {
        if (stream !== 0) return this.#protocolError("SETTINGS on a stream", 1);
        if (flags & ACK) return payload.length === 0 ? undefined : this.#protocolError("a SETTINGS acknowledgement with a payload", 6);
        if (payload.length % 6 !== 0) return this.#protocolError("SETTINGS of a wrong size", 6);
        for (let i = 0; i < payload.length; i += 6) {
          const id = payload.readUInt16BE(i);
          const v = payload.readUInt32BE(i + 2);
          if (id === 3) this.#maxStreams = v;
          else if (id === 4) {
            if (v > MAX_WINDOW) return this.#protocolError(`INITIAL_WINDOW_SIZE ${v}`, 3);
            const delta = v - this.#initialWindow;
            this.#initialWindow = v;
            for (const c of this.#calls.values()) {
              c.sendWindow += delta;
              if (c.sendWindow > MAX_WINDOW) return this.#protocolError(`INITIAL_WINDOW_SIZE ${v} overflows a stream's window`, 3);
            }
          } else if (id === 5) {
            if (v < 16_384 || v > 16_777_215) return this.#protocolError(`MAX_FRAME_SIZE ${v}`, 1);
            this.#maxFrame = v;
          }
        }
        this.#queue(frame(Frame.SETTINGS, ACK, 0, EMPTY));
        if (this.#state === "connecting") {
          this.#state = "ready";
          clearTimeout(this.#connectTimer);
        }
        this.#startHeld();
        return;
      }
      case Frame.PING: {
        if (stream !== 0 || payload.length !== 8) return this.#protocolError("a malformed PING", 6);
        if (!(flags & ACK)) this.#queue(frame(Frame.PING, ACK, 0, Buffer.from(payload)));
        return;
      }
      case Frame.GOAWAY: {
        if (stream !== 0 || payload.length < 8) return this.#protocolError("a malformed GOAWAY", 6);
        const last = payload.readUInt32BE(0) & 0x7fffffff;
        const code = payload.readUInt32BE(4);
        // Streams above `last` were not processed: safe to retry elsewhere.
        const reason = `unavailable: the server is going away (${errorName(code)})`;
        // Before its SETTINGS: the connection never worked (the shipper backs off).
        if (this.#state === "connecting") return this.#fail("unavailable", reason);
        if (this.#state === "ready") this.#state = "draining";
        this.#goaway = reason;
        for (const c of [...this.#calls.values()]) if (c.id > last) this.#endCall(c, { ok: false, kind: "unavailable", reason }, false);
        this.#failHeld({ ok: false, kind: "unavailable", reason });
        if (this.#calls.size === 0) this.#fail("unavailable", reason);
        return;
      }
      case Frame.WINDOW_UPDATE: {
        if (payload.length !== 4) return this.#protocolError("WINDOW_UPDATE of a wrong size", 6);
        const inc = payload.readUInt32BE(0) & 0x7fffffff;
        if (stream === 0) {
          if (inc === 0 || this.#connWindow + inc > MAX_WINDOW) return this.#protocolError(`connection WINDOW_UPDATE by ${inc}`, 3);
          this.#connWindow += inc;
        } else {
          const c = this.#calls.get(stream);
          if (c) {
            // A stream error (RFC 9113 §6.9): that call fails, the connection goes on.
            if (inc === 0 || c.sendWindow + inc > MAX_WINDOW) {
              this.#endCall(c, { ok: false, kind: "rejected", reason: `rejected: the server's WINDOW_UPDATE by ${inc} broke the stream's flow control` }, true);
              return;
            }
            c.sendWindow += inc;
          }
        }
        this.#pump();
        return;
      }
      case Frame.PUSH_PROMISE:
        return this.#protocolError("PUSH_PROMISE (push is disabled)", 1);
      default:
        return; // PRIORITY and unknown frame types are ignored (RFC 9113 §4.1)
    }
  }

  #endBlock(): void {
    const b = this.#block!;
    this.#block = undefined;
    // Every block goes through the decoder, in order, or its table goes out of step.
    const r = this.#decoder.decode(b.parts.length === 1 ? b.parts[0]! : Buffer.concat(b.parts));
    if (!r.ok) return this.#protocolError(r.reason, 9);
    const c = this.#calls.get(b.stream);
    if (!c) return;
    const first = c.status === undefined;
    // The status of a call is in its trailers, or in the one block of a trailers-only answer.
    const carriesStatus = !first || b.endStream;
    for (const [name, value] of r.headers) {
      if (first && name === ":status") c.status = value;
      else if (first && name === "content-type") c.contentType = value;
      else if (carriesStatus && name === "grpc-status") c.grpcStatus = value;
      else if (carriesStatus && name === "grpc-message") c.grpcMessage = value;
    }
    if (first && c.status === undefined) return this.#endCall(c, { ok: false, kind: "rejected", reason: "rejected: an answer without :status" }, true);
    if (b.endStream) this.#finish(c);
    else if (!first) return this.#endCall(c, { ok: false, kind: "rejected", reason: "rejected: trailers without END_STREAM" }, true);
  }

  /** The answer is complete: judge it by HTTP status and grpc-status. */
  #finish(c: Call): void {
    if (c.status !== "200") return this.#endCall(c, { ok: false, kind: "rejected", reason: `rejected: HTTP status ${escapeText(String(c.status), { max: 20 })}` }, false);
    if (!/^application\/grpc(?:$|[+;])/.test(c.contentType ?? "")) {
      return this.#endCall(c, { ok: false, kind: "rejected", reason: `rejected: not a gRPC answer (content-type ${escapeText(c.contentType ?? "missing", { max: 60 })})` }, false);
    }
    if (c.grpcStatus === "0") {
      this.#succeeded++;
      return this.#endCall(c, { ok: true }, false);
    }
    if (c.grpcStatus === undefined) return this.#endCall(c, { ok: false, kind: "rejected", reason: "rejected: the answer had no grpc-status in its trailers" }, false);
    const code = /^\d{1,3}$/.test(c.grpcStatus) ? Number(c.grpcStatus) : undefined;
    const name = code === undefined ? escapeText(c.grpcStatus, { max: 20 }) : GRPC_CODES[code] ?? String(code);
    const message = c.grpcMessage === undefined ? "" : `: ${escapeText(percentDecode(c.grpcMessage), { max: 200 })}`;
    // UNAVAILABLE is the server saying "not now": retryable like a lost connection.
    const kind: CallFailureKind = code === 14 ? "unavailable" : code === 4 ? "deadline" : "rejected";
    this.#endCall(c, { ok: false, kind, reason: `${kind}: ${name}${message}`, ...(code === undefined ? {} : { grpcCode: code }) }, false);
  }

  /** Ends a call; `reset` tells the server we gave up on the stream. */
  #endCall(c: Call, outcome: CallOutcome, reset: boolean): void {
    if (!this.#calls.delete(c.id)) return;
    // An answer before all of the request was sent leaves our half of the stream open: close it
    // with NO_ERROR (RFC 9113 §8.1), or it holds one of the server's concurrent streams.
    const early = !reset && c.sent < c.data.length;
    if ((reset || early) && this.#state !== "closed") {
      const code = Buffer.alloc(4);
      code.writeUInt32BE(reset ? 8 : 0, 0); // CANCEL, NO_ERROR
      this.#queue(frame(Frame.RST_STREAM, 0, c.id, code));
    }
    c.resolve(outcome);
    if (this.#state === "draining" && this.#calls.size === 0) this.#fail("unavailable", this.#goaway ?? "unavailable: the connection is going away");
    else if (this.#heldHead < this.#held.length) this.#startHeld();
  }

  /** Deadlines; a server silent for a whole deadline while calls wait is taken for dead. */
  #expire(): void {
    const now = this.#now();
    // Waiting calls first: ending a sent one opens a stream for the next waiting one.
    while (this.#heldHead < this.#held.length && this.#held[this.#heldHead]!.deadline <= now) {
      const h = this.#held[this.#heldHead]!;
      this.#held[this.#heldHead++] = undefined as unknown as Held;
      h.resolve({ ok: false, kind: "deadline", reason: "deadline: no stream within the deadline (not sent)" });
    }
    for (const c of this.#calls.values()) {
      if (c.deadline > now) break; // in order of their start, so of their deadline
      // Not a frame since this call was made, a whole deadline ago: the connection is dead (a
      // server that is merely slow answers other calls, PINGs or SETTINGS meanwhile).
      if (this.#lastFrameAt < c.deadline - this.#o.deadlineMs) {
        return this.#fail("unavailable", `unavailable: the server sent nothing for ${Math.round(this.#o.deadlineMs)} ms while a call waited`);
      }
      this.#endCall(c, { ok: false, kind: "deadline", reason: "deadline: no answer within the deadline" }, true);
    }
  }

  #protocolError(what: string, code: number): void {
    if (this.#state === "closed") return;
    const p = Buffer.alloc(8);
    p.writeUInt32BE(0, 0); // the last stream the server started: none (push is off)
    p.writeUInt32BE(code, 4);
    try {
      this.#socket.write(Buffer.concat([...this.#out, frame(Frame.GOAWAY, 0, 0, p)]));
      this.#out = [];
    } catch {
      // the socket may already be gone
    }
    this.#fail("unavailable", `unavailable: the server broke the protocol: ${escapeText(what, { max: 200 })}`);
  }

  #failHeld(outcome: CallOutcome): void {
    const held = this.#held;
    const from = this.#heldHead;
    this.#held = [];
    this.#heldHead = 0;
    for (let i = from; i < held.length; i++) held[i]!.resolve(outcome);
  }

  /** Ends the connection: every call left resolves with this reason. */
  #fail(kind: CallFailureKind, reason: string): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    this.#error = { kind, reason };
    clearTimeout(this.#connectTimer);
    clearInterval(this.#sweep);
    this.#socket.destroy();
    const outcome: CallOutcome = { ok: false, kind, reason };
    const calls = [...this.#calls.values()];
    this.#calls.clear();
    this.#blocked = [];
    for (const c of calls) c.resolve(outcome);
    this.#failHeld(outcome);
    this.#closedResolve({ kind, reason, succeeded: this.#succeeded });
  }
}

const EMPTY = Buffer.alloc(0);

function frame(type: Frame, flags: number, stream: number, payload: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(9 + payload.length);
  b[0] = (payload.length >> 16) & 0xff;
  b[1] = (payload.length >> 8) & 0xff;
  b[2] = payload.length & 0xff;
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(stream, 5);
  b.set(payload, 9);
  return b;
}

/** The payload without its padding (PADDED flag), or undefined when the padding does not fit. */
function unpad(payload: Buffer, flags: number): Buffer | undefined {
  if (!(flags & PADDED)) return payload;
  if (payload.length < 1) return undefined;
  const pad = payload[0]!;
  if (pad >= payload.length) return undefined;
  return payload.subarray(1, payload.length - pad);
}

/** grpc-message is percent-encoded (gRPC over HTTP/2); a bad escape stays as it was. */
function percentDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** A socket error as a failure kind and reason; TLS trouble is `refused`. */
function classifySocketError(e: Error & { code?: string }, connecting: boolean): [CallFailureKind, string] {
  const code = e.code ?? "";
  const text = `${code} ${e.message}`.toLowerCase();
  const say = (k: CallFailureKind, what: string): [CallFailureKind, string] => [k, `${k}: ${what}`];
  if (/unable_to_verify|unable to verify|self[-_ ]signed|unable_to_get_issuer|unable to get (local )?issuer|unknown ca|cert_untrusted|certificate signed by unknown/.test(text)) {
    return say("refused", "certificate signed by unknown authority");
  }
  if (/altname|hostname|not valid for/.test(text)) return say("refused", escapeText(e.message, { max: 200 }));
  if (/certificate_required|certificate required/.test(text)) return say("refused", "the server requires a client certificate");
  if (/bad certificate|bad_certificate|handshake failure|handshake_failure|alert|peer did not return a certificate/.test(text)) {
    return say("refused", `the server refused the TLS handshake (client certificate missing or not accepted): ${escapeText(e.message, { max: 200 })}`);
  }
  if (/certificate|ssl|tls|wrong version number/.test(text)) return say("refused", `TLS: ${escapeText(e.message, { max: 200 })}`);
  if (/econnrefused|connection refused/.test(text)) return say("unavailable", "connection refused");
  return say("unavailable", escapeText(`${connecting ? "connecting: " : ""}${e.message || code || "connection failed"}`, { max: 200 }));
}
