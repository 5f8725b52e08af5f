/**
 * The droptailer shipper: one HTTP/2 connection (lib/droptailer/grpc-connection.ts) to the
 * cluster's droptailer server, unary `proto.Droptailer/Push` over mutual TLS (SPEC §10). The
 * target (address, CA, client certificate and key) follows the cluster live through `setTarget`;
 * the connection is rebuilt only when one of them changed, and reopened (with backoff) when it
 * broke. `push` never throws: it resolves to a discriminated result with a reason fit for a log
 * line or a metric label.
 *
 * @example
 * ```ts
 * import { DropShipper } from "./client.ts";
 * const shipper = new DropShipper({ signal: AbortSignal.timeout(60_000) });
 * shipper.setTarget({ address: "10.244.0.7", ca, cert, key });
 * const r = await shipper.push({ timestamp: 1_700_000_000_000_000n, fields: { ACTION: "drop", SRC: "192.0.2.1" } });
 * if (!r.ok) console.log(r.kind, r.reason); // e.g. "refused", "refused: certificate signed by unknown authority"
 * ```
 * @module
 */
import { createSecureContext, type PeerCertificate, type SecureContext } from "node:tls";
import { escapeText } from "../escape.ts";
import { encodeDrop, type DropEvent } from "./drop-message.ts";
import { GrpcConnection } from "./grpc-connection.ts";

export type { DropEvent } from "./drop-message.ts";

/** The droptailer's port (SPEC §10). */
export const DROPTAILER_PORT = 50051;
/** The name the server's certificate is checked against, whatever the address. */
export const DROPTAILER_SERVER_NAME = "droptailer";
/** Deadline of one Push. */
export const DEFAULT_PUSH_DEADLINE_MS = 5_000;
const PUSH_PATH = "/proto.Droptailer/Push";

/** Where to ship: the server pod's IP and the PEM contents of Secret `firewall/droptailer-client`. */
export interface DropTarget {
  /** IPv4 or IPv6 address (or host name) of the droptailer pod. */
  readonly address: string;
  /** Default 50051. */
  readonly port?: number;
  readonly ca: Uint8Array;
  /** Client certificate chain (PEM). Without one the server refuses the connection. */
  readonly cert?: Uint8Array;
  /** Client key (PEM). */
  readonly key?: Uint8Array;
}

/**
 * Why a push did not succeed:
 * - `no_target`: no target set yet (or it was cleared);
 * - `bad_credentials`: the PEM buffers could not be loaded (no connection built);
 * - `refused`: the TLS handshake failed (unknown CA, name mismatch, client certificate refused);
 * - `unavailable`: no connection (refused, reset, unreachable, server going away);
 * - `deadline`: no answer within the deadline;
 * - `rejected`: the server answered with an error status, or not as gRPC does;
 * - `closed`: the shipper was shut down.
 */
export type PushFailureKind = "no_target" | "bad_credentials" | "refused" | "unavailable" | "deadline" | "rejected" | "closed";

export type PushResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly kind: PushFailureKind; readonly reason: string; readonly grpcCode?: number };

/**
 * Connection state for metrics: `idle` (none open yet), `connecting`, `ready`,
 * `transient_failure` (the last attempt failed; the next waits for its backoff), and our own.
 */
export type ConnectionState = "no_target" | "bad_credentials" | "idle" | "connecting" | "ready" | "transient_failure" | "closed";

export interface ShipperStatus {
  readonly state: ConnectionState;
  /** `address:port` of the current target, if any. */
  readonly target?: string;
  /** The reason of the last failed push or connection, cleared by a success. */
  readonly lastError?: string;
  /** How often the target's credentials were (re)loaded: once per changed target. */
  readonly channelBuilds: number;
}

export interface DropShipperOptions {
  /** Deadline of one push, ms (default 5,000). */
  readonly deadlineMs?: number;
  /** Aborting closes the connection; pushes in flight and later resolve `closed`. */
  readonly signal?: AbortSignal;
  /** Backoff between connection attempts after a failed one (default 200 ms doubling to 5 s). */
  readonly reconnectBackoffMs?: { readonly initial: number; readonly max: number };
  /** A monotonic clock in ms, for deadlines and backoff (default `performance.now`). */
  readonly now?: () => number;
}

const sameBytes = (a: Uint8Array | undefined, b: Uint8Array | undefined): boolean =>
  a === b || (a !== undefined && b !== undefined && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b));

const hostPort = (address: string, port: number): string =>
  address.includes(":") && !address.startsWith("[") ? `[${address}]:${port}` : `${address}:${port}`;

export class DropShipper {
  readonly #deadlineMs: number;
  readonly #backoff: { readonly initial: number; readonly max: number };
  readonly #now: () => number;
  #target: DropTarget | undefined;
  #context: SecureContext | undefined;
  /** The one new pushes go to. */
  #connection: GrpcConnection | undefined;
  /** Every connection not yet ended (one going away may still have calls in flight). */
  readonly #live = new Set<GrpcConnection>();
  #buildError: string | undefined;
  #lastError: string | undefined;
  /** After a failed connection attempt: why, and when the next may start. */
  #connectFailure: { kind: PushFailureKind; reason: string; retryAt: number; attempts: number } | undefined;
  #closed = false;
  #builds = 0;

  constructor(options: DropShipperOptions = {}) {
    this.#deadlineMs = options.deadlineMs ?? DEFAULT_PUSH_DEADLINE_MS;
    this.#backoff = options.reconnectBackoffMs ?? { initial: 200, max: 5_000 };
    this.#now = options.now ?? (() => performance.now());
    const signal = options.signal;
    if (signal?.aborted) this.close();
    else signal?.addEventListener("abort", () => this.close(), { once: true });
  }

  /**
   * Sets where to ship. Reloads the credentials and reconnects only when the address, port, CA,
   * certificate or key changed (compared by content); `undefined` clears the target. Returns
   * whether it changed. Never throws: PEM that cannot be loaded leaves state `bad_credentials`.
   */
  setTarget(target: DropTarget | undefined): boolean {
    if (this.#closed) return false;
    const old = this.#target;
    if (old && target && old.address === target.address && (old.port ?? DROPTAILER_PORT) === (target.port ?? DROPTAILER_PORT)
      && sameBytes(old.ca, target.ca) && sameBytes(old.cert, target.cert) && sameBytes(old.key, target.key)) return false;
    if (!old && !target) return false;
    // Calls in flight were for the old server: they fail, and the queue retries them at the new one.
    this.#dropConnection("unavailable", "unavailable: the droptailer target changed");
    this.#target = target && { ...target };
    this.#context = undefined;
    this.#buildError = undefined;
    this.#connectFailure = undefined;
    if (!target) return true;
    try {
      this.#context = createSecureContext({
        ca: Buffer.from(target.ca),
        ...(target.cert ? { cert: Buffer.from(target.cert) } : {}),
        ...(target.key ? { key: Buffer.from(target.key) } : {}),
      });
      this.#builds++;
    } catch (e) {
      this.#buildError = `bad_credentials: ${escapeText(e instanceof Error ? e.message : String(e), { max: 200 })}`;
      this.#lastError = this.#buildError;
    }
    return true;
  }

  /** Pushes one event; resolves (never rejects) within the deadline. */
  push(event: DropEvent): Promise<PushResult> {
    if (this.#closed) return Promise.resolve(this.#fail("closed", "closed: the shipper was shut down"));
    const target = this.#target;
    if (!target) return Promise.resolve(this.#fail("no_target", "no_target: no droptailer server known yet"));
    if (!this.#context) return Promise.resolve(this.#fail("bad_credentials", this.#buildError ?? "bad_credentials"));
    let message: Uint8Array;
    try {
      message = encodeDrop(event);
    } catch (e) {
      return Promise.resolve(this.#fail("rejected", `rejected: the event cannot be encoded: ${escapeText(String(e), { max: 200 })}`));
    }
    let c = this.#connection;
    if (!c?.usable) {
      const f = this.#connectFailure;
      if (f && this.#now() < f.retryAt) return Promise.resolve(this.#fail(f.kind, f.reason));
      c = this.#open(target, this.#context);
    }
    return c.call(message).then((r) => {
      if (r.ok) {
        this.#lastError = undefined;
        return r;
      }
      return this.#fail(this.#closed ? "closed" : r.kind, this.#closed ? "closed: the shipper was shut down" : r.reason, r.grpcCode);
    });
  }

  /** For metrics and readiness. */
  get status(): ShipperStatus {
    const t = this.#target;
    const target = t ? hostPort(t.address, t.port ?? DROPTAILER_PORT) : undefined;
    let state: ConnectionState;
    const c = this.#connection;
    if (this.#closed) state = "closed";
    else if (!t) state = "no_target";
    else if (!this.#context) state = "bad_credentials";
    else if (c?.state === "ready") state = "ready";
    else if (c?.state === "connecting") state = "connecting";
    else if (this.#connectFailure || c) state = "transient_failure";
    else state = "idle";
    return { state, ...(target ? { target } : {}), ...(this.#lastError ? { lastError: this.#lastError } : {}), channelBuilds: this.#builds };
  }

  /** Closes the connection and ends pushes in flight; later pushes resolve `closed`. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#dropConnection("closed", "closed: the shipper was shut down");
  }

  #open(target: DropTarget, secureContext: SecureContext): GrpcConnection {
    const c = GrpcConnection.connect({
      host: target.address.replace(/^\[(.*)\]$/, "$1"), port: target.port ?? DROPTAILER_PORT, servername: DROPTAILER_SERVER_NAME,
      secureContext, checkServerIdentity: (_host, cert) => checkName(cert), authority: DROPTAILER_SERVER_NAME,
      path: PUSH_PATH, deadlineMs: this.#deadlineMs, now: this.#now,
    });
    this.#connection = c;
    this.#live.add(c);
    // A connection that ended before any call succeeded on it (refused, a handshake that failed,
    // a server that goes away at once) counts as a failed attempt: the next one backs off. One
    // that worked resets the backoff.
    void c.closed.then((end) => {
      this.#live.delete(c);
      if (this.#connection !== c) return;
      if (end.succeeded > 0) {
        this.#connectFailure = undefined;
        return;
      }
      const attempts = (this.#connectFailure?.attempts ?? 0) + 1;
      const delay = Math.min(this.#backoff.max, this.#backoff.initial * 2 ** (attempts - 1));
      this.#connectFailure = { kind: end.kind, reason: end.reason, retryAt: this.#now() + delay, attempts };
      if (end.kind !== "closed") this.#lastError = end.reason;
    });
    return c;
  }

  /** Closes every connection, the one going away included: their calls end now with this reason. */
  #dropConnection(kind: "closed" | "unavailable", reason: string): void {
    this.#connection = undefined;
    for (const c of [...this.#live]) c.close(kind, reason);
    this.#live.clear();
  }

  #fail(kind: PushFailureKind, reason: string, grpcCode?: number): PushResult {
    this.#lastError = reason;
    return grpcCode === undefined ? { ok: false, kind, reason } : { ok: false, kind, reason, grpcCode };
  }
}

/** The server must present a certificate for `droptailer` (DNS SAN, or CN without SANs). */
function checkName(cert: PeerCertificate): Error | undefined {
  const sans = (cert.subjectaltname ?? "").split(",").map((s) => s.trim()).filter((s) => s.startsWith("DNS:")).map((s) => s.slice(4));
  const cn = cert.subject?.CN as string | string[] | undefined;
  const names = sans.length > 0 ? sans : Array.isArray(cn) ? cn : cn ? [cn] : [];
  if (names.includes(DROPTAILER_SERVER_NAME)) return undefined;
  return new Error(`server certificate is not valid for ${DROPTAILER_SERVER_NAME} (names: ${escapeText(names.join(", "), { max: 120 })})`);
}
