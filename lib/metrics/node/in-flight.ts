/**
 * One read of a source per scrape, however many families it feeds: prom-client
 * calls every metric's `collect()` at once, so the four filesystem families
 * (or the eight network ones) join the read already under way instead of each
 * starting its own.
 *
 * @example
 * ```ts
 * import { shareInFlight } from "./in-flight.ts";
 * let reads = 0;
 * const read = shareInFlight(async () => ++reads);
 * const [a, b] = await Promise.all([read(), read()]);
 * console.log(a, b, reads); // 1 1 1
 * ```
 * @module
 */
export function shareInFlight<T>(read: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () => {
    if (pending === undefined) {
      // Cleared once settled, so the next scrape reads fresh values rather than a stale cache.
      pending = read().finally(() => {
        pending = undefined;
      });
    }
    return pending;
  };
}
