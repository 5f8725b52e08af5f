/**
 * The snapshot statistics need, read cheaply: our table's counted rules are
 * known from the ruleset we applied (their comments, counters and verdicts),
 * so of our table only the named counters are listed (`nft -j list
 * counters`) and the maps' element counters read (summed by the owner's
 * comment each element carries), not the whole table; other tables (the OS's
 * base ruleset, small) are listed whole. Without a model (nothing applied yet
 * by this process) it falls back to the full listing.
 *
 * @example
 * ```ts
 * import { runCommand } from "../exec.ts";
 * import { statsSnapshot } from "./model-snapshot.ts";
 * // const s = await statsSnapshot("nft", runCommand, { table: "firewall", countedRules: ruleset.countedRules, maps: [...ruleset.maps.keys()] }, nft);
 * ```
 * @module
 */
import type { Executor } from "../exec.ts";
import { readSnapshot, type Snapshot, type SnapshotRule } from "../nft/snapshot.ts";
import type { ElementCount, NftClient } from "../nft/client.ts";
import type { CountedRule } from "../ruleset/render.ts";

export interface TableModel {
  /** Our table (family inet). */
  readonly table: string;
  readonly countedRules: readonly CountedRule[];
  /** Our maps, whose element counters hold the per-policy and per-service counts. */
  readonly maps: readonly string[];
}

/**
 * Our table's rules from the model, with the values of the named counters
 * they count into (a rule whose counter is gone gets none, as in a listing).
 */
export function modelRules(model: TableModel, counters: Snapshot["counters"], owners: ReadonlyMap<string, { packets: number; bytes: number }> = new Map()): SnapshotRule[] {
  const values = new Map(counters.filter((c) => c.family === "inet" && c.table === model.table).map((c) => [c.name, c]));
  return model.countedRules.map((r, handle) => {
    // An owner without elements in the kernel counts nothing (not "no counter").
    const c = r.counter === null ? (owners.get(r.comment) ?? { packets: 0, bytes: 0 }) : values.get(r.counter);
    return {
      family: "inet",
      table: model.table,
      chain: r.chain,
      handle,
      comment: r.comment,
      counter: c ? { packets: c.packets, bytes: c.bytes } : null,
      counterName: r.counter ?? null,
      verdict: r.verdict,
      target: null,
      matches: [],
    };
  });
}

/**
 * Adds element counters into `into` by the owner comment each element carries (elements without
 * one left out); returns `into`.
 *
 * @example
 * ```ts
 * import { sumByComment } from "./model-snapshot.ts";
 * console.log(sumByComment([{ comment: "np a", packets: 1, bytes: 10 }, { comment: "np a", packets: 2, bytes: 20 }]).get("np a")); // { packets: 3, bytes: 30 }
 * ```
 */
export function sumByComment(elements: Iterable<ElementCount>, into = new Map<string, { packets: number; bytes: number }>()): Map<string, { packets: number; bytes: number }> {
  for (const e of elements) {
    if (e.comment === null) continue;
    const t = into.get(e.comment);
    if (t === undefined) into.set(e.comment, { packets: e.packets, bytes: e.bytes });
    else {
      t.packets += e.packets;
      t.bytes += e.bytes;
    }
  }
  return into;
}

/** Sums the element counters of `maps` by the owner comment each element carries. */
export async function ownerCounts(nft: Pick<NftClient, "elementCounters">, table: string, maps: readonly string[]): Promise<Map<string, { packets: number; bytes: number }>> {
  const out = new Map<string, { packets: number; bytes: number }>();
  for (const m of maps) sumByComment(await nft.elementCounters(table, m), out);
  return out;
}

export async function statsSnapshot(nftPath: string, exec: Executor, model?: TableModel, nft?: Pick<NftClient, "elementCounters">): Promise<Snapshot> {
  if (!model || !nft) return readSnapshot(nftPath, exec);
  const [counters, tables, owners] = await Promise.all([readSnapshot(nftPath, exec, ["counters"]), readSnapshot(nftPath, exec, ["tables"]), ownerCounts(nft, model.table, model.maps)]);
  const others = tables.tables.filter((t) => !(t.family === "inet" && t.name === model.table));
  const listed = await Promise.all(others.map((t) => readSnapshot(nftPath, exec, ["table", t.family, t.name])));
  return {
    tables: tables.tables,
    chains: listed.flatMap((s) => s.chains),
    rules: [...modelRules(model, counters.counters, owners), ...listed.flatMap((s) => s.rules)],
    counters: counters.counters,
    sets: listed.flatMap((s) => s.sets),
  };
}
