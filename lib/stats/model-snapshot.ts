/**
 * The snapshot statistics need, read cheaply: our table's counted rules are
 * known from the ruleset we applied (their comments, counters and verdicts),
 * so of our table only the named counters are listed (`nft -j list
 * counters`), not its thousands of chains; other tables (the OS's base
 * ruleset, small) are listed whole. Without a model (nothing applied yet by
 * this process) it falls back to the full listing.
 *
 * @example
 * ```ts
 * import { runCommand } from "../exec.ts";
 * import { statsSnapshot } from "./model-snapshot.ts";
 * // const s = await statsSnapshot("nft", runCommand, { table: "firewall", countedRules: ruleset.countedRules ?? [] });
 * ```
 * @module
 */
import type { Executor } from "../exec.ts";
import { readSnapshot, type Snapshot, type SnapshotRule } from "../nft/snapshot.ts";
import type { CountedRule } from "../ruleset/render.ts";

export interface TableModel {
  /** Our table (family inet). */
  readonly table: string;
  readonly countedRules: readonly CountedRule[];
}

/**
 * Our table's rules from the model, with the values of the named counters
 * they count into (a rule whose counter is gone gets none, as in a listing).
 */
export function modelRules(model: TableModel, counters: Snapshot["counters"]): SnapshotRule[] {
  const values = new Map(counters.filter((c) => c.family === "inet" && c.table === model.table).map((c) => [c.name, c]));
  return model.countedRules.map((r, handle) => {
    const c = values.get(r.counter);
    return {
      family: "inet",
      table: model.table,
      chain: r.chain,
      handle,
      comment: r.comment,
      counter: c ? { packets: c.packets, bytes: c.bytes } : null,
      counterName: r.counter,
      verdict: r.verdict,
      target: null,
      matches: [],
    };
  });
}

export async function statsSnapshot(nftPath: string, exec: Executor, model?: TableModel): Promise<Snapshot> {
  if (!model) return readSnapshot(nftPath, exec);
  const [counters, tables] = await Promise.all([readSnapshot(nftPath, exec, ["counters"]), readSnapshot(nftPath, exec, ["tables"])]);
  const others = tables.tables.filter((t) => !(t.family === "inet" && t.name === model.table));
  const listed = await Promise.all(others.map((t) => readSnapshot(nftPath, exec, ["table", t.family, t.name])));
  return {
    tables: tables.tables,
    chains: listed.flatMap((s) => s.chains),
    rules: [...modelRules(model, counters.counters), ...listed.flatMap((s) => s.rules)],
    counters: counters.counters,
    sets: listed.flatMap((s) => s.sets),
  };
}
