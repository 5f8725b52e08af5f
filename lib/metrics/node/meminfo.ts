/**
 * Parsing `/proc/meminfo` into the fields we export as
 * `node_memory_<Field>_bytes`, named as node_exporter names them (a field with
 * a `kB` unit gets `_bytes` and is multiplied by 1024).
 *
 * @example
 * ```ts
 * import { parseMeminfo } from "./meminfo.ts";
 * console.log(parseMeminfo("MemTotal:  2048 kB\nMemFree:  1024 kB\n").get("MemTotal")); // 2097152
 * ```
 * @module
 */

/** The meminfo fields of SPEC §7; node_exporter exports all of them, we only these. */
export const MEMINFO_FIELDS = ["MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached"] as const;
export type MeminfoField = (typeof MEMINFO_FIELDS)[number];

/** Values in bytes of the fields in {@link MEMINFO_FIELDS} present in the file. */
export function parseMeminfo(text: string): Map<MeminfoField, number> {
  const wanted = new Set<string>(MEMINFO_FIELDS);
  const out = new Map<MeminfoField, number>();
  for (const line of text.split("\n")) {
    const parts = line.trim().split(/\s+/);
    const key = (parts[0] ?? "").replace(/:$/, "");
    if (!wanted.has(key) || parts.length !== 3) continue;
    const kb = Number(parts[1]);
    if (Number.isFinite(kb)) out.set(key as MeminfoField, kb * 1024);
  }
  return out;
}
