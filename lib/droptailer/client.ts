/**
 * The droptailer shipper: one gRPC channel (grpc-js) to the cluster's droptailer server,
 * unary `proto.Droptailer/Push` over mutual TLS (SPEC §10). The target (address, CA, client
 * certificate and key) follows the cluster live through `setTarget`; the channel is rebuilt only
 * when one of them changed. `push` never throws: it resolves to a discriminated result with a
 * reason fit for a log line or a metric label.
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
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import { DropSchema, VoidSchema, type Drop } from "./gen/droptailer_pb.ts";
import { escapeText } from "../escape.ts";

/** The droptailer's port (SPEC §10). */
export const DROPTAILER_PORT = 50051;
/** The name the server's certificate is checked against, whatever the address. */
export const DROPTAILER_SERVER_NAME = "droptailer";
/** Deadline of one Push. */
export const DEFAULT_PUSH_DEADLINE_MS = 5_000;
const PUSH_PATH = "/proto.Droptailer/Push";

/** One kernel drop (or accept) event. */
export interface DropEvent {
  /** Microseconds since the Unix epoch (bigint), or a Date (millisecond precision). */
  readonly timestamp: bigint | Date;
  readonly fields: Readonly<Record<string, string>>;
}

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
 * - `bad_credentials`: the PEM buffers could not be loaded (channel not built);
 * - `refused`: the TLS handshake failed (unknown CA, name mismatch, client certificate refused);
 * - `unavailable`: no connection (refused, reset, unreachable, server going away);
 * - `deadline`: no answer within the deadline;
 * - `rejected`: the server answered with an error status;
 * - `closed`: the shipper was shut down.
 */
export type PushFailureKind = "no_target" | "bad_credentials" | "refused" | "unavailable" | "deadline" | "rejected" | "closed";

export type PushResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly kind: PushFailureKind; readonly reason: string; readonly grpcCode?: number };

/** Connection state for metrics: grpc-js connectivity plus our own. */
export type ConnectionState = "no_target" | "bad_credentials" | "idle" | "connecting" | "ready" | "transient_failure" | "closed";

export interface ShipperStatus {
  readonly state: ConnectionState;
  /** `address:port` of the current target, if any. */
  readonly target?: string;
  /** The reason of the last failed push or channel build, cleared by a success. */
  readonly lastError?: string;
  /** How often the channel was (re)built. */
  readonly channelBuilds: number;
}

export interface DropShipperOptions {
  /** Deadline of one push, ms (default 5,000). */
  readonly deadlineMs?: number;
  /** Aborting closes the channel; pushes in flight and later resolve `closed`. */
  readonly signal?: AbortSignal;
  /** grpc-js reconnect backoff (defaults 200 ms initial, 5 s max, not grpc's 1 s / 120 s). */
  readonly reconnectBackoffMs?: { readonly initial: number; readonly max: number };
}

const sameBytes = (a: Uint8Array | undefined, b: Uint8Array | undefined): boolean =>
  a === b || (a !== undefined && b !== undefined && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b));

const hostPort = (address: string, port: number): string =>
  address.includes(":") && !address.startsWith("[") ? `[${address}]:${port}` : `${address}:${port}`;

/** Converts an event into the protobuf message. */
export function toDropMessage(event: DropEvent): Drop {
  let seconds: bigint;
  let nanos: number;
  if (typeof event.timestamp === "bigint") {
    const us = event.timestamp;
    let rem = us % 1_000_000n;
    seconds = us / 1_000_000n;
    if (rem < 0n) {
      rem += 1_000_000n;
      seconds -= 1n;
    }
    nanos = Number(rem) * 1000;
  } else {
    const ms = event.timestamp.getTime();
    const s = Math.floor(ms / 1000);
    seconds = BigInt(s);
    nanos = (ms - s * 1000) * 1_000_000;
  }
  return create(DropSchema, { timestamp: create(TimestampSchema, { seconds, nanos }), fields: { ...event.fields } });
}

const serialize = (d: Drop): Buffer => Buffer.from(toBinary(DropSchema, d));
const deserialize = (b: Buffer) => fromBinary(VoidSchema, b);

/** Maps a grpc-js failure onto our kinds, with a short, escaped reason. */
export function classifyError(err: grpc.ServiceError | Error & { code?: number; details?: string }): { kind: PushFailureKind; reason: string } {
  const details = ((err as { details?: string }).details ?? err.message ?? "")
    .replace(/^No connection established\. Last error: /, "")
    .replace(/ \(\d{4}-\d\d-\d\dT[\d:.]+Z\)\. Resolution note: ?.*$/s, "");
  const text = details.toLowerCase();
  const code = (err as { code?: number }).code;
  const say = (k: PushFailureKind, what: string) => ({ kind: k, reason: `${k}: ${what}` });
  if (code === grpc.status.DEADLINE_EXCEEDED) return say("deadline", "no answer within the deadline");
  if (code === grpc.status.CANCELLED && /shut ?down|channel closed|cancelled on client/.test(text)) return say("closed", "the shipper was shut down");
  if (/unable to verify|self[- ]signed|unable to get (local )?issuer|unknown ca|certificate signed by unknown|unable_to_get_issuer|cert_untrusted/.test(text)) {
    return say("refused", "certificate signed by unknown authority");
  }
  if (/hostname|altname|does not match|err_tls_cert_altname_invalid|subject/.test(text) && /cert|host/.test(text)) {
    return say("refused", `server certificate is not valid for ${DROPTAILER_SERVER_NAME}`);
  }
  if (/certificate_required|certificate required/.test(text)) return say("refused", "the server requires a client certificate");
  if (/peer did not return a certificate|handshake failure|bad certificate|alert/.test(text)) {
    return say("refused", `the server refused the TLS handshake (client certificate missing or not accepted): ${escapeText(details, { max: 200 })}`);
  }
  if (/certificate|ssl|tls|wrong version number/.test(text)) return say("refused", `TLS: ${escapeText(details, { max: 200 })}`);
  if (code === grpc.status.UNAVAILABLE || code === grpc.status.CANCELLED || code === undefined) {
    if (/econnrefused|connection refused/.test(text)) return say("unavailable", "connection refused");
    return say("unavailable", escapeText(details || "no connection", { max: 200 }));
  }
  return say("rejected", `${grpc.status[code] ?? code}: ${escapeText(details, { max: 200 })}`);
}

const stateName = (s: grpc.connectivityState): ConnectionState =>
  s === grpc.connectivityState.READY ? "ready"
  : s === grpc.connectivityState.CONNECTING ? "connecting"
  : s === grpc.connectivityState.TRANSIENT_FAILURE ? "transient_failure"
  : s === grpc.connectivityState.SHUTDOWN ? "closed"
  : "idle";

export class DropShipper {
  readonly #deadlineMs: number;
  readonly #backoff: { readonly initial: number; readonly max: number };
  #target: DropTarget | undefined;
  #client: grpc.Client | undefined;
  #buildError: string | undefined;
  #lastError: string | undefined;
  #closed = false;
  #builds = 0;
  readonly #inFlight = new Set<grpc.ClientUnaryCall>();

  constructor(options: DropShipperOptions = {}) {
    this.#deadlineMs = options.deadlineMs ?? DEFAULT_PUSH_DEADLINE_MS;
    this.#backoff = options.reconnectBackoffMs ?? { initial: 200, max: 5_000 };
    const signal = options.signal;
    if (signal?.aborted) this.close();
    else signal?.addEventListener("abort", () => this.close(), { once: true });
  }

  /**
   * Sets where to ship. Rebuilds the channel only when the address, port, CA, certificate or key
   * changed (compared by content); `undefined` clears the target. Returns whether it rebuilt.
   * Never throws: PEM that cannot be loaded leaves state `bad_credentials` with the reason.
   */
  setTarget(target: DropTarget | undefined): boolean {
    if (this.#closed) return false;
    const old = this.#target;
    if (old && target && old.address === target.address && (old.port ?? DROPTAILER_PORT) === (target.port ?? DROPTAILER_PORT)
      && sameBytes(old.ca, target.ca) && sameBytes(old.cert, target.cert) && sameBytes(old.key, target.key)) return false;
    if (!old && !target) return false;
    this.#dropClient();
    this.#target = target && { ...target };
    this.#buildError = undefined;
    if (!target) return true;
    try {
      const creds = grpc.credentials.createSsl(
        Buffer.from(target.ca),
        target.key ? Buffer.from(target.key) : null,
        target.cert ? Buffer.from(target.cert) : null,
        { checkServerIdentity: (_host, cert) => checkName(cert) },
      );
      this.#client = new grpc.Client(hostPort(target.address, target.port ?? DROPTAILER_PORT), creds, {
        "grpc.ssl_target_name_override": DROPTAILER_SERVER_NAME,
        "grpc.default_authority": DROPTAILER_SERVER_NAME,
        "grpc.initial_reconnect_backoff_ms": this.#backoff.initial,
        "grpc.max_reconnect_backoff_ms": this.#backoff.max,
        "grpc.keepalive_time_ms": 30_000,
        "grpc.keepalive_timeout_ms": 10_000,
      });
      this.#builds++;
    } catch (e) {
      this.#client = undefined;
      this.#buildError = `bad_credentials: ${escapeText(e instanceof Error ? e.message : String(e), { max: 200 })}`;
      this.#lastError = this.#buildError;
    }
    return true;
  }

  /** Pushes one event; resolves (never rejects) within the deadline. */
  push(event: DropEvent): Promise<PushResult> {
    if (this.#closed) return Promise.resolve(this.#fail("closed", "closed: the shipper was shut down"));
    if (!this.#target) return Promise.resolve(this.#fail("no_target", "no_target: no droptailer server known yet"));
    const client = this.#client;
    if (!client) return Promise.resolve(this.#fail("bad_credentials", this.#buildError ?? "bad_credentials"));
    let message: Drop;
    try {
      message = toDropMessage(event);
    } catch (e) {
      return Promise.resolve(this.#fail("rejected", `rejected: the event cannot be encoded: ${escapeText(String(e), { max: 200 })}`));
    }
    return new Promise<PushResult>((resolve) => {
      let call: grpc.ClientUnaryCall | undefined;
      try {
        call = client.makeUnaryRequest(PUSH_PATH, serialize, deserialize, message, new grpc.Metadata(),
          { deadline: Date.now() + this.#deadlineMs }, (err) => {
            if (call) this.#inFlight.delete(call);
            if (!err) {
              this.#lastError = undefined;
              resolve({ ok: true });
              return;
            }
            const { kind, reason } = this.#closed ? { kind: "closed" as const, reason: "closed: the shipper was shut down" } : classifyError(err);
            resolve(this.#fail(kind, reason, err.code));
          });
        this.#inFlight.add(call);
      } catch (e) {
        const { kind, reason } = classifyError(e instanceof Error ? e : new Error(String(e)));
        resolve(this.#fail(kind, reason));
      }
    });
  }

  /** For metrics and readiness. */
  get status(): ShipperStatus {
    const t = this.#target;
    const target = t ? hostPort(t.address, t.port ?? DROPTAILER_PORT) : undefined;
    let state: ConnectionState;
    if (this.#closed) state = "closed";
    else if (!t) state = "no_target";
    else if (!this.#client) state = "bad_credentials";
    else {
      try {
        state = stateName(this.#client.getChannel().getConnectivityState(false));
      } catch {
        state = "closed";
      }
    }
    return { state, ...(target ? { target } : {}), ...(this.#lastError ? { lastError: this.#lastError } : {}), channelBuilds: this.#builds };
  }

  /** Closes the channel and cancels pushes in flight; later pushes resolve `closed`. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const c of this.#inFlight) c.cancel();
    this.#inFlight.clear();
    this.#dropClient();
  }

  #dropClient(): void {
    const c = this.#client;
    this.#client = undefined;
    try {
      c?.close();
    } catch {
      // closing an already broken channel is of no interest
    }
  }

  #fail(kind: PushFailureKind, reason: string, grpcCode?: number): PushResult {
    this.#lastError = reason;
    return grpcCode === undefined ? { ok: false, kind, reason } : { ok: false, kind, reason, grpcCode };
  }
}

/** The server must present a certificate for `droptailer` (DNS SAN, or CN without SANs). */
function checkName(cert: { subject?: { CN?: string | string[] }; subjectaltname?: string }): Error | undefined {
  const sans = (cert.subjectaltname ?? "").split(",").map((s) => s.trim()).filter((s) => s.startsWith("DNS:")).map((s) => s.slice(4));
  const cn = cert.subject?.CN;
  const names = sans.length > 0 ? sans : Array.isArray(cn) ? cn : cn ? [cn] : [];
  if (names.includes(DROPTAILER_SERVER_NAME)) return undefined;
  return new Error(`server certificate is not valid for ${DROPTAILER_SERVER_NAME} (names: ${escapeText(names.join(", "), { max: 120 })})`);
}
