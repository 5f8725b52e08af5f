/**
 * The interval's statistics for the Firewall status (SPEC §3.1): device
 * traffic and every counted rule from one nft snapshot, IDS counters from
 * suricata. Each source may fail on its own; what it could not read is said
 * in `notes` and the rest is still reported.
 *
 * @example
 * ```ts
 * import { collectStats } from "./collect.ts";
 * const s = await collectStats({ snapshot: async () => ({ tables: [], chains: [], rules: [], counters: [], sets: [] }) });
 * console.log(s.stats.devices.external.total, s.notes); // 0 []
 * ```
 * @module
 */
import { escapeText } from "../escape.ts";
import type { IdsIfaceStats, IdsStatsResult } from "../ids/suricata.ts";
import type { Snapshot } from "../nft/snapshot.ts";
import { type DeviceStats, deviceStats } from "./devices.ts";
import { MAX_RULE_STATS, type RuleStats, ruleStats } from "./rules.ts";

export interface FirewallStats {
  readonly devices: DeviceStats;
  readonly rules: RuleStats["rules"];
  readonly idsstats: Readonly<Record<string, IdsIfaceStats>>;
}

export interface CollectedStats {
  readonly stats: FirewallStats;
  /** What could not be read or was left out, for the status message. */
  readonly notes: readonly string[];
}

export interface StatsSources {
  readonly snapshot: () => Promise<Snapshot>;
  /** Absent when IDS statistics are off (`--enable-ids=false`). */
  readonly ids?: () => Promise<IdsStatsResult>;
}

const ZERO: DeviceStats = { external: { in: 0, out: 0, total: 0 }, internal: { in: 0, out: 0, total: 0 } };

export async function collectStats(sources: StatsSources): Promise<CollectedStats> {
  const notes: string[] = [];
  const [snapshot, ids] = await Promise.all([
    sources.snapshot().then((s) => s, (e: unknown) => {
      notes.push(`counters unavailable: ${e instanceof Error ? e.message : String(e)}`);
      return undefined;
    }),
    sources.ids?.(),
  ]);
  let devices = ZERO;
  let rules: RuleStats["rules"] = { accept: {}, drop: {}, other: {} };
  if (snapshot) {
    devices = deviceStats(snapshot);
    const r = ruleStats(snapshot);
    rules = r.rules;
    if (r.omitted > 0) notes.push(`stats.rules shows ${MAX_RULE_STATS} counted rules, ${r.omitted} more are left out (the nftables metrics have every rule)`);
  }
  if (ids && !ids.ok) notes.push(`IDS statistics unavailable: ${ids.reason}`);
  // Keys reach the status (and kubectl) as they are: interface names and other tables' comments
  // pass the output gate like any other text.
  const gate = <T>(m: Readonly<Record<string, T>>): Record<string, T> => Object.fromEntries(Object.entries(m).map(([k, v]) => [escapeText(k, { max: 256 }), v]));
  return {
    stats: { devices, rules: { accept: gate(rules.accept), drop: gate(rules.drop), other: gate(rules.other) }, idsstats: ids?.ok ? gate(ids.stats) : {} },
    notes,
  };
}
