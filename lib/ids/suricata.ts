/**
 * IDS statistics from suricata 7's unix command socket (SPEC §9): the
 * `idsstats` part of the Firewall status, `{ <iface>: {packets, drop, invalidchecksums} }`.
 *
 * One {@link SuricataClient} keeps one connection open across collections.
 * Why not open one per scrape: suricata's command thread accepts a client by
 * reading its handshake with a blocking `recv()`, so every connect briefly
 * holds up every other client (suricatasc, a second scraper); a kept
 * connection costs one file descriptor in its `select()` set and nothing more.
 * After any failure the connection is dropped and the next {@link SuricataClient.collect}
 * connects afresh, so a restarted suricata is picked up without a restart of ours.
 *
 * {@link SuricataClient.collect} never throws: suricata down, absent, slow or
 * talking nonsense gives `{ ok: false, reason }`, so the rest of the status is
 * reported anyway. Interface names are kept as sent (they are map keys);
 * only reasons, which are for people, pass escapeText.
 *
 * @example
 * ```ts
 * import { SuricataClient } from "./suricata.ts";
 * const shutdown = new AbortController();
 * const ids = new SuricataClient({ socketPath: "/run/suricata-command.socket", signal: shutdown.signal });
 * const r = await ids.collect();
 * if (r.ok) console.log(r.stats); // { eth0: { packets: 12, drop: 0, invalidchecksums: 0 } }
 * else console.log(r.reason);     // suricata socket /run/suricata-command.socket: ENOENT (is suricata running with unix-command enabled?)
 * shutdown.abort();
 * ```
 * @module
 */
import * as v from "valibot";
import { escapeText } from "../escape.ts";
import { DEFAULT_MAX_LINE_BYTES, JsonLineConnection, JsonLineError } from "./json-lines.ts";
import { DEFAULT_MAX_IFACES, handshakeAnswer, ifaceListAnswer, ifaceStatAnswer, nokAnswer } from "./suricata-schema.ts";

/** `--suricata-socket` default (README, SPEC §9). */
export const DEFAULT_SURICATA_SOCKET = "/run/suricata-command.socket";
/** Bound on one request/answer (connect and handshake count as one each). */
export const DEFAULT_EXCHANGE_TIMEOUT_MS = 2_000;
/** Bound on a whole collection, however many interfaces. */
export const DEFAULT_TOTAL_TIMEOUT_MS = 5_000;
/** The protocol version suricata 7 speaks with newline-ended messages ("0.1" has no framing). */
export const PROTOCOL_VERSION = "0.2";

/** One interface's counters, as in `status.idsstats.<iface>`. */
export interface IdsIfaceStats {
  readonly packets: number;
  readonly drop: number;
  readonly invalidchecksums: number;
}

/** What a collection gives: the stats, or why there are none. */
export type IdsStatsResult =
  | { readonly ok: true; readonly stats: Readonly<Record<string, IdsIfaceStats>> }
  | { readonly ok: false; readonly reason: string };

export interface SuricataClientOptions {
  /** Default {@link DEFAULT_SURICATA_SOCKET}. */
  readonly socketPath?: string;
  /** Default {@link DEFAULT_EXCHANGE_TIMEOUT_MS}. */
  readonly exchangeTimeoutMs?: number;
  /** Default {@link DEFAULT_TOTAL_TIMEOUT_MS}. */
  readonly totalTimeoutMs?: number;
  /** Default {@link DEFAULT_MAX_LINE_BYTES} (1 MiB). */
  readonly maxLineBytes?: number;
  /** Default {@link DEFAULT_MAX_IFACES} (64). */
  readonly maxIfaces?: number;
  /** Shutdown: aborting closes the connection; later collections say so. */
  readonly signal?: AbortSignal;
}

/** Thrown inside a collection only, turned into `{ ok: false }` at its edge. */
class CollectError extends Error {}

/** A long-lived client of one suricata command socket. */
export class SuricataClient {
  readonly #path: string;
  readonly #exchangeTimeoutMs: number;
  readonly #totalTimeoutMs: number;
  readonly #maxLineBytes: number;
  readonly #listSchema: ReturnType<typeof ifaceListAnswer>;
  readonly #signal: AbortSignal | undefined;
  #conn: JsonLineConnection | undefined;
  /** The collection in flight: concurrent callers share it (answers have no ids, so one exchange at a time). */
  #inFlight: Promise<IdsStatsResult> | undefined;

  constructor(options: SuricataClientOptions = {}) {
    this.#path = options.socketPath ?? DEFAULT_SURICATA_SOCKET;
    this.#exchangeTimeoutMs = options.exchangeTimeoutMs ?? DEFAULT_EXCHANGE_TIMEOUT_MS;
    this.#totalTimeoutMs = options.totalTimeoutMs ?? DEFAULT_TOTAL_TIMEOUT_MS;
    this.#maxLineBytes = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    this.#listSchema = ifaceListAnswer(options.maxIfaces ?? DEFAULT_MAX_IFACES);
    this.#signal = options.signal;
    this.#signal?.addEventListener("abort", () => this.close(new JsonLineError("aborted", "client shut down")), { once: true });
  }

  /** The socket this client talks to. */
  get socketPath(): string {
    return this.#path;
  }

  /** True while a connection is open and usable (for tests and diagnostics). */
  get connected(): boolean {
    return this.#conn?.usable === true;
  }

  /**
   * Asks suricata for every interface's counters. Never throws; never takes
   * longer than the total timeout (plus a timer tick).
   */
  collect(): Promise<IdsStatsResult> {
    this.#inFlight ??= this.#collect().finally(() => {
      this.#inFlight = undefined;
    });
    return this.#inFlight;
  }

  /**
   * Closes the connection (a pending collection fails with `reason`, default
   * "closed by the client"); a later {@link collect} reconnects unless the signal was aborted.
   */
  close(reason?: JsonLineError): void {
    this.#conn?.close(reason);
    this.#conn = undefined;
  }

  async #collect(): Promise<IdsStatsResult> {
    const where = `suricata socket ${escapeText(this.#path)}`;
    if (this.#signal?.aborted) return { ok: false, reason: `${where}: client shut down` };
    const deadline = Date.now() + this.#totalTimeoutMs;
    const reused = this.#conn?.usable === true;
    try {
      return { ok: true, stats: await this.#ask(deadline) };
    } catch (e) {
      this.close();
      // A kept connection may have died while idle (suricata restarted) without us
      // noticing yet: that is no reason to miss a scrape, so try once on a fresh one.
      if (reused && e instanceof JsonLineError && e.code === "closed" && !this.#signal?.aborted && Date.now() < deadline) {
        try {
          return { ok: true, stats: await this.#ask(deadline) };
        } catch (again) {
          this.close();
          return { ok: false, reason: this.#reason(where, again, deadline) };
        }
      }
      return { ok: false, reason: this.#reason(where, e, deadline) };
    }
  }

  #reason(where: string, e: unknown, deadline: number): string {
    // A step whose budget was cut by the total bound: say which bound it was.
    if (e instanceof JsonLineError && e.code === "timeout" && Date.now() >= deadline) {
      return `${where}: no complete answer within ${this.#totalTimeoutMs} ms in total`;
    }
    if (e instanceof JsonLineError && e.code === "connect") {
      const hint = e.errno === "ENOENT" || e.errno === "ECONNREFUSED" ? " (is suricata running with unix-command enabled?)" : "";
      return `${where}: ${escapeText(e.message)}${hint}`;
    }
    if (e instanceof JsonLineError || e instanceof CollectError) return `${where}: ${escapeText(e.message)}`;
    return `${where}: unexpected error: ${escapeText(String(e))}`;
  }

  /** Time left for the next step: the per-exchange bound, cut by what remains of the total. */
  #budget(deadline: number): number {
    const left = deadline - Date.now();
    if (left <= 0) throw new CollectError(`no complete answer within ${this.#totalTimeoutMs} ms in total`);
    return Math.min(this.#exchangeTimeoutMs, left);
  }

  async #connection(deadline: number): Promise<JsonLineConnection> {
    if (this.#conn?.usable) return this.#conn;
    const conn = await JsonLineConnection.open(this.#path, {
      timeoutMs: this.#budget(deadline),
      maxLineBytes: this.#maxLineBytes,
      ...(this.#signal ? { signal: this.#signal } : {}),
    });
    this.#conn = conn;
    // suricata closes the connection without a word when it dislikes the version.
    const answer = await conn.exchange({ version: PROTOCOL_VERSION }, { timeoutMs: this.#budget(deadline), what: "handshake" });
    this.#check(handshakeAnswer, answer, "handshake");
    return conn;
  }

  async #ask(deadline: number): Promise<Record<string, IdsIfaceStats>> {
    const conn = await this.#connection(deadline);
    const list = this.#check(
      this.#listSchema,
      await conn.exchange({ command: "iface-list" }, { timeoutMs: this.#budget(deadline), what: "iface-list" }),
      "iface-list",
    );
    const entries: [string, IdsIfaceStats][] = [];
    for (const iface of new Set(list.message.ifaces)) {
      const what = `iface-stat ${escapeText(iface, { max: 64 })}`;
      const answer = await conn.exchange({ command: "iface-stat", arguments: { iface } }, { timeoutMs: this.#budget(deadline), what });
      const m = this.#check(ifaceStatAnswer, answer, what).message;
      entries.push([iface, { packets: m.pkts, drop: m.drop, invalidchecksums: m["invalid-checksums"] }]);
    }
    // fromEntries defines own properties, so a hostile "__proto__" stays a plain key.
    return Object.fromEntries(entries);
  }

  #check<S extends v.GenericSchema>(schema: S, answer: unknown, what: string): v.InferOutput<S> {
    const parsed = v.safeParse(schema, answer);
    if (parsed.success) return parsed.output;
    const nok = v.safeParse(nokAnswer, answer);
    if (nok.success) {
      const message = typeof nok.output.message === "string" ? nok.output.message : JSON.stringify(nok.output.message ?? null);
      throw new CollectError(`${what} refused: ${escapeText(message ?? "", { max: 200 })}`);
    }
    const issue = parsed.issues[0];
    const path = issue.path?.map((p) => String(p.key)).join(".") ?? "";
    throw new CollectError(`${what}: unexpected answer${path ? ` at ${escapeText(path, { max: 64 })}` : ""}: ${escapeText(issue.message, { max: 200 })}`);
  }
}
