/**
 * The drop log (SPEC §10): kernel drop lines from `/dev/kmsg` → a bounded
 * queue → the droptailer server, exactly once across restarts: the position
 * of the last *shipped* event is persisted (at most once a second, so after
 * a crash at most that second's events repeat), and a restart resumes after
 * it. A shutdown waits up to {@link STOP_GRACE_MS} for the answers of pushes in
 * flight, so what the server has is not shipped again. The reader never blocks
 * reconciling; the sender never throws.
 *
 * @example
 * ```ts
 * import { DropLog } from "./drop-log.ts";
 * // const log = new DropLog({ stateDir: "/var/lib/firewall-controller", signal });
 * // void log.run(); log.setTarget(target);
 * ```
 * @module
 */
import { DropShipper, type DropTarget } from "./client.ts";
import { JournalReader } from "./journal.ts";
import { KmsgReader, type KmsgReaderOptions } from "./kmsg.ts";
import { type Position, readPosition, writePosition } from "./position.ts";
import { DropQueue, type QueueCounters } from "./queue.ts";

export interface DropLogOptions {
  readonly stateDir: string;
  readonly signal: AbortSignal;
  /** Queue bound; default 10,000 events. */
  readonly capacity?: number;
  /**
   * Where kernel lines come from: `/dev/kmsg` (default) or the systemd journal
   * (kernel transport only, through the OS's journalctl).
   */
  readonly source?: "kmsg" | "journal";
  /** For tests: another kmsg file, another port. */
  readonly kmsg?: KmsgReaderOptions;
  /** The journal to read (`--journal-directory`; a file for tests); default the system's. */
  readonly journal?: { readonly directory?: string; readonly file?: string; readonly journalctl?: string };
  readonly port?: number;
  /** Told about problems (position unreadable, records lost, a push failing), for logs. */
  readonly onProblem?: (message: string) => void;
}

export interface DropLogStatus {
  readonly shipping: boolean;
  /** Why it is not shipping, when it is not. */
  readonly reason?: string;
  readonly counters: QueueCounters;
  readonly queued: number;
  readonly lost: bigint;
  /** How often the channel was built: moves with every change of target (rotation, move). */
  readonly channelBuilds: number;
}

const POSITION_EVERY_MS = 1_000;
/**
 * On shutdown, pushes in flight get this long for their answers before they are cancelled: an
 * event the server has but whose answer was cut off would be shipped again after the restart.
 */
export const STOP_GRACE_MS = 2_000;

export class DropLog {
  readonly #o: DropLogOptions;
  readonly #shipper: DropShipper;
  /** Closes the shipper: once the sender ended, or {@link STOP_GRACE_MS} after the signal. */
  readonly #shipperStop = new AbortController();
  readonly #queue: DropQueue<Position>;
  #reader: KmsgReader | undefined;
  #targetProblem: string | undefined = "no target yet";
  #lastFailure: string | undefined;
  #pending: Position | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #opened: () => void = () => {};
  /** Resolves once the reader is positioned (resumed, or at the end): later kernel lines are read. */
  readonly ready: Promise<void> = new Promise((resolve) => {
    this.#opened = resolve;
  });

  constructor(options: DropLogOptions) {
    this.#o = options;
    this.#shipper = new DropShipper({ signal: this.#shipperStop.signal });
    const cut = () => setTimeout(() => this.#shipperStop.abort(), STOP_GRACE_MS).unref();
    if (options.signal.aborted) this.#shipperStop.abort();
    else options.signal.addEventListener("abort", cut, { once: true });
    this.#queue = new DropQueue<Position>({
      capacity: options.capacity ?? 10_000,
      shipper: this.#shipper,
      signal: options.signal,
      // An outage is retried often enough to catch up soon after the server is back.
      backoff: { initialMs: 100, maxMs: 5_000 },
      // A window of pushes keeps the one HTTP/2 connection busy: 64 shipped ~18,000/s against
      // grpc-go, 256 all of 20,000/s (bench/drop-log.ts).
      concurrency: 256,
      onShipped: (p) => {
        this.#pending = p;
        this.#lastFailure = undefined;
      },
      onFailure: (r) => {
        this.#lastFailure = r.reason;
      },
    });
  }

  /** Follows the cluster: a rotated Secret or a moved pod takes effect at once. */
  setTarget(target: DropTarget | undefined, problem?: string): void {
    this.#targetProblem = target ? undefined : (problem ?? "no target");
    const port = this.#o.port;
    if (this.#shipper.setTarget(target && port !== undefined ? { ...target, port } : target)) this.#queue.kick();
  }

  status(): DropLogStatus {
    const reason = this.#targetProblem ?? this.#lastFailure;
    return {
      shipping: reason === undefined,
      ...(reason ? { reason } : {}),
      counters: this.#queue.counters,
      queued: this.#queue.length,
      lost: this.#reader?.lost ?? 0n,
      channelBuilds: this.#shipper.status.channelBuilds,
    };
  }

  /** Reads and ships until the signal aborts; never throws. */
  async run(): Promise<void> {
    const { signal, stateDir } = this.#o;
    const stored = await readPosition(stateDir);
    if (stored.problem) this.#o.onProblem?.(stored.problem);
    if (this.#o.source === "journal") return this.#runJournal(stored.position?.source === "journal" ? stored.position.cursor : undefined, stored.position !== undefined && stored.position.source !== "journal");
    const resume = stored.position?.source === "kmsg" ? { bootId: stored.position.bootId, seq: stored.position.seq } : undefined;
    this.#reader = new KmsgReader({
      ...this.#o.kmsg,
      signal,
      ...(resume ? { resume } : {}),
      onLost: (count, why) => this.#o.onProblem?.(`drop log: ${count} kernel records lost (${why})`),
    });
    const sender = this.#queue.run();
    this.#timer = setInterval(() => void this.#flushPosition(), POSITION_EVERY_MS);
    try {
      await this.#reader.open();
      this.#opened();
      for await (const item of this.#reader.events()) {
        this.#queue.offer({ timestamp: item.event.timestampUs, fields: item.event.fields }, { source: "kmsg", bootId: item.bootId, seq: item.seq });
      }
    } catch (e) {
      this.#o.onProblem?.(`drop log: reading the kernel log failed: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      this.#opened();
      clearInterval(this.#timer);
      this.#queue.stop();
      await sender;
      this.#shipperStop.abort();
      await this.#flushPosition();
      this.#reader.close();
    }
  }

  /** The same pipeline from the journal: resumes after the stored cursor. */
  async #runJournal(after: string | undefined, otherSource: boolean): Promise<void> {
    const { signal } = this.#o;
    if (otherSource) this.#o.onProblem?.("drop log: the stored position is of /dev/kmsg, not of the journal; starting at the journal's end");
    const reader = new JournalReader({ ...this.#o.journal, signal, ...(after ? { after } : {}), onProblem: (m) => this.#o.onProblem?.(`drop log: ${m}`) });
    const sender = this.#queue.run();
    this.#timer = setInterval(() => void this.#flushPosition(), POSITION_EVERY_MS);
    this.#opened();
    try {
      for await (const item of reader.events()) {
        this.#queue.offer({ timestamp: item.event.timestampUs, fields: item.event.fields }, { source: "journal", cursor: item.cursor });
      }
    } catch (e) {
      this.#o.onProblem?.(`drop log: reading the journal failed: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      clearInterval(this.#timer);
      this.#queue.stop();
      await sender;
      this.#shipperStop.abort();
      await this.#flushPosition();
      reader.close();
    }
  }

  async #flushPosition(): Promise<void> {
    const p = this.#pending;
    if (!p) return;
    this.#pending = undefined;
    await writePosition(this.#o.stateDir, p).catch((e: unknown) => this.#o.onProblem?.(`drop log: persisting the position failed: ${e instanceof Error ? e.message : String(e)}`));
  }
}
