/**
 * Polls an async check until it holds; for tests that wait on the kernel or
 * the API server. Returns how long it took, so tests can bound latencies.
 *
 * @example
 * ```ts
 * import { waitUntil } from "./wait-until.ts";
 * const ms = await waitUntil("a file", async () => true);
 * ```
 * @module
 */
export async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 10_000, everyMs = 20): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    if (await check()) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
