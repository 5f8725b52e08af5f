/**
 * Turns bursts of "something changed" into single runs of a task: the first
 * notify after a quiet spell runs the task at once (on the next turn of the
 * event loop, so the rest of the batch being delivered joins it); notifies
 * during a run make exactly one more run, no sooner than `delayMs` after it
 * ended; runs never overlap. So a lone event costs no waiting, and a flood of
 * 1,000 watch events becomes two or three reconciles.
 *
 * @example
 * ```ts
 * import { Coalescer } from "./coalescer.ts";
 * const ac = new AbortController();
 * let runs = 0;
 * const c = new Coalescer(async () => { runs++; }, { delayMs: 20, signal: ac.signal });
 * for (let i = 0; i < 100; i++) c.notify();
 * await c.idle(); // runs === 1
 * ac.abort();
 * ```
 * @module
 */
export class Coalescer {
  readonly #task: () => Promise<void>;
  readonly #delayMs: number;
  readonly #signal: AbortSignal;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  /** When the last run ended (performance.now()); a notify within `delayMs` of it waits out the rest. */
  #lastEnd = Number.NEGATIVE_INFINITY;
  #idleWaiters: (() => void)[] = [];

  constructor(task: () => Promise<void>, options: { delayMs: number; signal: AbortSignal }) {
    this.#task = task;
    this.#delayMs = options.delayMs;
    this.#signal = options.signal;
    this.#signal.addEventListener("abort", () => {
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#again = false;
      this.#settle();
    }, { once: true });
  }

  /** Something changed: run the task soon (once for the whole burst): now after a quiet spell, else `delayMs` after the last run. */
  notify(): void {
    if (this.#signal.aborted) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    if (this.#timer) return;
    const wait = Math.max(0, this.#delayMs - (performance.now() - this.#lastEnd));
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#run();
    }, wait);
  }

  /** Resolves when no run is scheduled or running. */
  idle(): Promise<void> {
    if (!this.#timer && !this.#running) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #run(): void {
    // Marked running before the task starts: the task's own synchronous notifies must queue, not overlap.
    let release!: () => void;
    this.#running = new Promise<void>((r) => (release = r));
    (async () => {
      try {
        await this.#task();
      } catch {
        // The task reports its own failures; a throw must not stop later runs.
      }
    })().finally(() => {
      release();
      this.#running = undefined;
      this.#lastEnd = performance.now();
      if (this.#again && !this.#signal.aborted) {
        this.#again = false;
        this.notify();
      } else this.#settle();
    });
  }

  #settle(): void {
    if (this.#timer || this.#running) return;
    for (const w of this.#idleWaiters.splice(0)) w();
  }
}
