/**
 * Turns bursts of "something changed" into single runs of a task: a notify
 * schedules a run after a short quiet delay; notifies during a run make
 * exactly one more run after it; runs never overlap. This is how a flood of
 * 1,000 watch events becomes one or two reconciles.
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

  /** Something changed: run the task soon (once for the whole burst). */
  notify(): void {
    if (this.#signal.aborted) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#run();
    }, this.#delayMs);
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
