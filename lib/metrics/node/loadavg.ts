/**
 * Parsing `/proc/loadavg` into the three averages of `node_load1/5/15`.
 *
 * @example
 * ```ts
 * import { parseLoadavg } from "./loadavg.ts";
 * console.log(parseLoadavg("0.50 0.25 0.10 1/123 4567\n")); // [0.5, 0.25, 0.1]
 * ```
 * @module
 */
export function parseLoadavg(text: string): [number, number, number] {
  const f = text.trim().split(/\s+/).slice(0, 3).map(Number);
  if (f.length < 3 || f.some((v) => !Number.isFinite(v))) throw new Error(`unexpected content in loadavg: ${JSON.stringify(text.slice(0, 100))}`);
  return [f[0]!, f[1]!, f[2]!];
}
