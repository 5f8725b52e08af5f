/**
 * The bounded in-memory queue between the kernel reader and the droptailer shipper (SPEC §10).
 * `offer` never blocks: when the queue is full the oldest waiting event is dropped and counted.
 * One sender loop starts pushes in order, up to `concurrency` at once; a failed push is retried
 * (the same event) with exponential backoff and jitter until it succeeds or the queue is stopped.
 * Positions are reported through `onShipped` in order, each once it and every event before it
 * were accepted, so the position file is only advanced past events the server has. The loop
 * never throws.
 *
 * Events in flight count against the capacity but are never the ones dropped (they may already
 * be at the server); with everything else gone, a newcomer is dropped instead.
 *
 * @example
 * ```ts
 * import { DropQueue } from "./queue.ts";
 * const q = new DropQueue<bigint>({ capacity: 10_000, shipper, onShipped: (seq) => savePosition(seq), signal });
 * const done = q.run();
 * q.offer({ timestamp: 1_700_000_000_000_000n, fields: { ACTION: "drop" } }, 42n);
 * ```
 * @module
 */
import { sleep } from "../kube/backoff.ts";
import type { DropEvent, PushResult } from "./client.ts";

export interface Shipper {
  push(event: DropEvent): Promise<PushResult>;
}

export interface BackoffOptions {
  /** First retry delay, ms (default 100). */
  readonly initialMs?: number;
  /** Upper bound of the delay, ms (default 10,000). */
  readonly maxMs?: number;
  /** Growth per failed attempt (default 2). */
  readonly factor?: number;
  /** Fraction of the delay that is random, 0..1 (default 0.5: delay × [0.5, 1)). */
  readonly jitter?: number;
}

export interface DropQueueOptions<P> {
  /** At most this many events held (waiting plus the one in flight); at least 1. */
  readonly capacity: number;
  readonly shipper: Shipper;
  /** Called, in order, with the position of each event after the server accepted it. */
  readonly onShipped?: (position: P) => void;
  /** Called on each failed push (for logs; rate-limit there). */
  readonly onFailure?: (result: Extract<PushResult, { ok: false }>, attempt: number) => void;
  readonly backoff?: BackoffOptions;
  /** Stops the sender: a backoff wait ends, no further push starts. */
  readonly signal?: AbortSignal;
  /** Injected for tests: waits `ms` or until the signal aborts. */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Injected for tests: a number in [0, 1). */
  readonly random?: () => number;
  /**
   * Pushes in flight at once (default 1). One unary call at a time ships a few hundred events a
   * second (each waits a round trip); a window keeps the connection busy. Positions are still
   * reported in order, each only once every event before it was accepted.
   */
  readonly concurrency?: number;
}

export interface QueueCounters {
  /** Events the server accepted. */
  readonly shipped: number;
  /** Failed pushes that were (or will be) retried. */
  readonly retried: number;
  /** Events dropped because the queue was full. */
  readonly dropped: number;
  /** Events offered. */
  readonly offered: number;
}

/** One started push: `done` once accepted, `finished` once it ended at all. */
interface Slot<P> {
  readonly entry: Entry<P>;
  done: boolean;
  finished: boolean;
  settled: Promise<void>;
}

interface Entry<P> {
  readonly event: DropEvent;
  readonly position: P | undefined;
  readonly hasPosition: boolean;
}

// The shared one: resolves after `ms`, or at once when the signal aborts.
const defaultSleep = sleep;

/** The delay before retry number `attempt` (1-based). */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  const initial = options.initialMs ?? 100;
  const max = options.maxMs ?? 10_000;
  const factor = options.factor ?? 2;
  const jitter = Math.min(1, Math.max(0, options.jitter ?? 0.5));
  const base = Math.min(max, initial * factor ** Math.max(0, attempt - 1));
  return base * (1 - jitter) + base * jitter * random();
}

export class DropQueue<P = unknown> {
  readonly capacity: number;
  readonly #o: DropQueueOptions<P>;
  readonly #sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  // A ring would do too; an array with a moving head keeps it simple and O(1) amortised.
  #items: (Entry<P> | undefined)[] = [];
  #head = 0;
  /** Started pushes, oldest first; each settles once accepted (or at stop). */
  #inFlight: Slot<P>[] = [];
  #shipped = 0;
  #retried = 0;
  #dropped = 0;
  #offered = 0;
  #wakeItems: (() => void) | undefined;
  /** Wakes the sender when a push in flight ended; `#settled` says one did since it last looked. */
  #wakeSettled: (() => void) | undefined;
  #settled = false;
  #kick = new AbortController();
  readonly #stop = new AbortController();
  #running: Promise<void> | undefined;

  constructor(options: DropQueueOptions<P>) {
    if (!Number.isInteger(options.capacity) || options.capacity < 1) throw new RangeError(`capacity must be a positive integer, not ${options.capacity}`);
    this.capacity = options.capacity;
    this.#o = options;
    this.#sleep = options.sleep ?? defaultSleep;
    const s = options.signal;
    if (s?.aborted) this.#stop.abort();
    else s?.addEventListener("abort", () => this.stop(), { once: true });
  }

  /** Events held: waiting plus those in flight. */
  get length(): number {
    return this.#items.length - this.#head + this.#inFlight.length;
  }

  get counters(): QueueCounters {
    return { shipped: this.#shipped, retried: this.#retried, dropped: this.#dropped, offered: this.#offered };
  }

  /** Adds an event (and its position, reported after it was shipped); never blocks. Returns false when something was dropped. */
  offer(event: DropEvent, ...position: [] | [P]): boolean {
    this.#offered++;
    const entry: Entry<P> = { event, position: position[0], hasPosition: position.length > 0 };
    let ok = true;
    if (this.length >= this.capacity) {
      this.#dropped++;
      ok = false;
      if (this.#items.length - this.#head > 0) this.#shift(); // the oldest waiting one
      else return false; // only the one in flight is held: the newcomer goes
    }
    this.#items.push(entry);
    const w = this.#wakeItems;
    this.#wakeItems = undefined;
    w?.();
    return ok;
  }

  /** Ends a backoff wait now (e.g. after the shipper got a new target). */
  kick(): void {
    const k = this.#kick;
    this.#kick = new AbortController();
    k.abort();
  }

  /** Stops the sender loop; `run()`'s promise resolves once the push in flight (if any) ended. */
  stop(): void {
    this.#stop.abort();
    this.kick();
    const w = this.#wakeItems ?? this.#wakeSettled;
    this.#wakeItems = this.#wakeSettled = undefined;
    w?.();
  }

  /** Starts the sender loop (once; later calls return the same promise). Never rejects. */
  run(): Promise<void> {
    this.#running ??= this.#loop().catch(() => undefined);
    return this.#running;
  }

  #shift(): Entry<P> | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const e = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return e;
  }

  async #loop(): Promise<void> {
    const stop = this.#stop.signal;
    const window = Math.max(1, Math.floor(this.#o.concurrency ?? 1));
    try {
      while (!stop.aborted) {
        while (this.#inFlight.length < window) {
          const entry = this.#shift();
          if (!entry) break;
          const slot: Slot<P> = { entry, done: false, finished: false, settled: Promise.resolve() };
          slot.settled = this.#pushUntilAccepted(entry).then((ok) => {
            slot.done = ok;
            slot.finished = true;
            this.#settled = true;
            const w = this.#wakeSettled;
            this.#wakeSettled = undefined;
            w?.();
          });
          this.#inFlight.push(slot);
        }
        if (this.#inFlight.length === 0) {
          await new Promise<void>((r) => (this.#wakeItems = r));
          continue;
        }
        // Wait for any push to settle (or for a new event, to fill the window), then report the
        // accepted prefix in order. One waiter for all of them: the window may be hundreds wide.
        if (!this.#settled) {
          await new Promise<void>((r) => {
            this.#wakeSettled = r;
            if (this.#inFlight.length < window) this.#wakeItems = r;
          });
        }
        this.#wakeItems = undefined;
        this.#wakeSettled = undefined;
        this.#settled = false;
        this.#reportAccepted();
      }
    } finally {
      // Pushes the server answered while stopping are at the server: their positions move too,
      // or a restart would ship them again.
      await Promise.all(this.#inFlight.map((x) => x.settled));
      this.#reportAccepted();
      this.#inFlight = [];
    }
  }

  /** Reports the positions of the accepted prefix of the pushes in flight, in order, and drops them. */
  #reportAccepted(): void {
    while (this.#inFlight[0]?.done) {
      const { entry } = this.#inFlight.shift() as { entry: Entry<P> };
      if (!entry.hasPosition) continue;
      try {
        this.#o.onShipped?.(entry.position as P);
      } catch {
        // a failing position callback must not stop shipping
      }
    }
  }

  /** Pushes one event until the server accepts it (true) or the queue stops (false). */
  async #pushUntilAccepted(entry: Entry<P>): Promise<boolean> {
    const stop = this.#stop.signal;
    const random = this.#o.random ?? Math.random;
    for (let attempt = 1; !stop.aborted; attempt++) {
      let result: PushResult;
      try {
        result = await this.#o.shipper.push(entry.event);
      } catch (e) {
        result = { ok: false, kind: "unavailable", reason: `unavailable: ${e instanceof Error ? e.message : String(e)}` };
      }
      if (result.ok) {
        this.#shipped++;
        return true;
      }
      if (stop.aborted) return false;
      this.#retried++;
      try {
        this.#o.onFailure?.(result, attempt);
      } catch {
        // ditto
      }
      const both = AbortSignal.any([stop, this.#kick.signal]);
      await this.#sleep(backoffDelay(attempt, this.#o.backoff, random), both);
    }
    return false;
  }
}
