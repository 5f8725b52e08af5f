/**
 * One request/answer connection over a unix stream socket where every message
 * is a JSON value ended by a newline (suricata's command protocol, SPEC §9).
 *
 * The peer is not trusted: an answer line longer than `maxLineBytes` fails the
 * exchange before it is buffered further (a runaway peer must not grow our
 * memory), every exchange has a deadline, and bytes nobody asked for (a second
 * line after an answer) fail the next exchange rather than being taken as its
 * answer, which would shift every later answer by one.
 *
 * Failures are {@link JsonLineError}s with a short, printable `message`; the
 * connection is unusable afterwards (the caller reconnects).
 *
 * @example
 * ```ts
 * import { JsonLineConnection } from "./json-lines.ts";
 * const c = await JsonLineConnection.open("/run/suricata-command.socket", { timeoutMs: 2000 });
 * try {
 *   console.log(await c.exchange({ version: "0.2" }, { timeoutMs: 2000, what: "handshake" }));
 * } finally {
 *   c.close();
 * }
 * ```
 * @module
 */
import { createConnection, type Socket } from "node:net";

/** Default bound on one answer line, newline excluded: far above any real suricata answer. */
export const DEFAULT_MAX_LINE_BYTES = 1024 * 1024;

/** Why an exchange failed: `code` for callers that branch, `message` for people. */
export class JsonLineError extends Error {
  override readonly name = "JsonLineError";
  constructor(
    /** `connect` (with `errno`), `timeout`, `closed`, `too-long`, `not-json`, `unsolicited`, `aborted`. */
    readonly code: "connect" | "timeout" | "closed" | "too-long" | "not-json" | "unsolicited" | "aborted",
    message: string,
    /** The system error code of a failed connect (`ENOENT`, `ECONNREFUSED`, ...). */
    readonly errno?: string,
  ) {
    super(message);
  }
}

export interface OpenOptions {
  /** Give up connecting after this long. */
  readonly timeoutMs: number;
  /** Aborting closes the connection and fails what is pending. */
  readonly signal?: AbortSignal;
  /** Bound on one answer line; default {@link DEFAULT_MAX_LINE_BYTES}. */
  readonly maxLineBytes?: number;
}

export interface ExchangeOptions {
  readonly timeoutMs: number;
  /** Names the exchange in error messages (`iface-list`, `handshake`). */
  readonly what: string;
}

type Waiter = { resolve: (line: string) => void; reject: (e: JsonLineError) => void };

/** A connected socket plus the line framing; build with {@link JsonLineConnection.open}. */
export class JsonLineConnection {
  readonly #socket: Socket;
  readonly #maxLineBytes: number;
  #chunks: Buffer[] = [];
  #buffered = 0;
  #waiter: Waiter | undefined;
  /** Set once the connection is unusable; later exchanges fail with it at once. */
  #failure: JsonLineError | undefined;
  #onAbort: (() => void) | undefined;
  #signal: AbortSignal | undefined;

  private constructor(socket: Socket, maxLineBytes: number, signal: AbortSignal | undefined) {
    this.#socket = socket;
    this.#maxLineBytes = maxLineBytes;
    this.#signal = signal;
    socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    socket.on("error", (e: NodeJS.ErrnoException) => this.#fail(new JsonLineError("closed", `connection failed: ${e.code ?? e.message}`)));
    socket.on("close", () => {
      const partial = this.#buffered > 0 ? ` in the middle of an answer (${this.#buffered} bytes of it received)` : "";
      this.#fail(new JsonLineError("closed", `connection closed by suricata${partial}`));
    });
    if (signal) {
      this.#onAbort = () => this.#fail(new JsonLineError("aborted", "client shut down"));
      signal.addEventListener("abort", this.#onAbort, { once: true });
    }
  }

  /** Connects to the unix socket at `path`; rejects with a {@link JsonLineError} (`connect`, `timeout`, `aborted`). */
  static open(path: string, options: OpenOptions): Promise<JsonLineConnection> {
    return new Promise((resolve, reject) => {
      if (options.signal?.aborted) {
        reject(new JsonLineError("aborted", "client shut down"));
        return;
      }
      const socket = createConnection({ path });
      const done = (e?: JsonLineError) => {
        clearTimeout(timer);
        socket.off("error", onError);
        options.signal?.removeEventListener("abort", onAbort);
        if (e) {
          socket.destroy();
          reject(e);
        } else {
          resolve(new JsonLineConnection(socket, options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES, options.signal));
        }
      };
      const onError = (e: NodeJS.ErrnoException) => done(new JsonLineError("connect", e.code ?? e.message, e.code ?? "EUNKNOWN"));
      const onAbort = () => done(new JsonLineError("aborted", "client shut down"));
      const timer = setTimeout(() => done(new JsonLineError("timeout", `no connection within ${options.timeoutMs} ms`)), options.timeoutMs);
      socket.once("error", onError);
      socket.once("connect", () => done());
      options.signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** False once anything failed or {@link close} ran. */
  get usable(): boolean {
    return this.#failure === undefined;
  }

  /**
   * Sends `message` as one JSON line and resolves with the parsed answer line.
   * Only one exchange at a time: the protocol has no request ids, so answers
   * are matched to requests by order alone.
   */
  exchange(message: unknown, options: ExchangeOptions): Promise<unknown> {
    if (this.#failure) return Promise.reject(new JsonLineError(this.#failure.code, `${options.what}: ${this.#failure.message}`, this.#failure.errno));
    if (this.#waiter) return Promise.reject(new JsonLineError("unsolicited", `${options.what}: another exchange is still waiting`));
    if (this.#buffered > 0) {
      const e = new JsonLineError("unsolicited", `${options.what}: suricata sent ${this.#buffered} bytes nobody asked for`);
      this.#fail(e);
      return Promise.reject(e);
    }
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#fail(new JsonLineError("timeout", `no answer to ${options.what} within ${options.timeoutMs} ms`));
      }, options.timeoutMs);
      this.#waiter = {
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
        reject: (e) => {
          clearTimeout(timer);
          // Say which exchange the connection died in, unless the message already does.
          reject(e.message.startsWith(`${options.what}`) || e.code === "timeout" ? e : new JsonLineError(e.code, `${options.what}: ${e.message}`, e.errno));
        },
      };
      // One write per message: suricata reads the handshake with a single recv() and
      // blocks its whole command thread until the first bytes of it arrive.
      this.#socket.write(`${JSON.stringify(message)}\n`);
    }).then((line) => {
      try {
        return JSON.parse(line) as unknown;
      } catch {
        const e = new JsonLineError("not-json", `${options.what}: answer is not JSON (${line.length} characters)`);
        this.#fail(e);
        throw e;
      }
    });
  }

  /**
   * Closes the socket; pending and later exchanges fail with `reason` (default:
   * closed by the client). Safe to call more than once: the first reason stays.
   */
  close(reason: JsonLineError = new JsonLineError("closed", "connection closed by the client")): void {
    this.#fail(reason);
  }

  #onData(chunk: Buffer): void {
    if (this.#failure) return;
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      const line = Buffer.concat([...this.#chunks, chunk.subarray(start, nl)]);
      this.#chunks = [];
      this.#buffered = 0;
      start = nl + 1;
      if (line.length > this.#maxLineBytes) return this.#tooLong(line.length);
      const waiter = this.#waiter;
      if (!waiter) {
        this.#fail(new JsonLineError("unsolicited", "suricata sent a line nobody asked for"));
        return;
      }
      this.#waiter = undefined;
      waiter.resolve(line.toString("utf8"));
    }
    if (start < chunk.length) {
      this.#chunks.push(chunk.subarray(start));
      this.#buffered += chunk.length - start;
      if (this.#buffered > this.#maxLineBytes) this.#tooLong(this.#buffered);
    }
  }

  #tooLong(bytes: number): void {
    this.#fail(new JsonLineError("too-long", `answer line exceeds ${this.#maxLineBytes} bytes (got at least ${bytes})`));
  }

  #fail(e: JsonLineError): void {
    if (this.#failure) return;
    this.#failure = e;
    this.#chunks = [];
    this.#buffered = 0;
    if (this.#onAbort) this.#signal?.removeEventListener("abort", this.#onAbort);
    this.#socket.destroy();
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.reject(e);
  }
}
