/**
 * `status.stats.rules` and `status.stats.devices` of the Firewall (SPEC §3.1,
 * §4.5) from a kernel snapshot. Pure.
 *
 * The status must stay small at any scale (etcd refuses objects over 1.5 MiB),
 * so the rules are bounded by {@link MAX_RULE_STATS} entries in all three
 * groups together; the caller gets how many were left out and says so (the
 * metrics hold them all). Which are kept is deterministic: entries with a rule
 * of our forward chain first (the fixed rules operators look for first), then
 * entries with a rule of any other table (the base table's), then the
 * per-policy and per-service ones; within each, most bytes first, then most
 * packets, then by comment.
 *
 * @example
 * ```ts
 * import { ruleStats } from "./rules.ts";
 * const s = ruleStats({ tables: [], chains: [], counters: [], sets: [], rules: [
 *   { family: "inet", table: "metal", chain: "input", handle: 8, comment: "accept established connections", counter: { packets: 1, bytes: 60 }, counterName: null, verdict: "accept", target: null, matches: [] },
 * ] });
 * console.log(s.rules.accept, s.omitted); // { "accept established connections": { counter: { bytes: 60, packets: 1 } } } 0
 * ```
 * @module
 */
import type { Snapshot, SnapshotRule } from "../nft/snapshot.ts";

/**
 * Most entries in `status.stats.rules`. An entry is about 100 bytes of JSON
 * (comments are at most 128 characters in nft), so 250 keep the stats under
 * 40 KiB, far below etcd's limit next to the rest of the status; our fixed
 * rules and a base table fit many times over.
 */
export const MAX_RULE_STATS = 250;

export interface RuleCounter {
  readonly counter: { readonly bytes: number; readonly packets: number };
}

export type RuleGroup = "accept" | "drop" | "other";

export interface RuleStats {
  /** By group, then by comment; keys sorted, so the status text is stable. */
  readonly rules: Readonly<Record<RuleGroup, Readonly<Record<string, RuleCounter>>>>;
  /** Entries left out to stay within the bound. */
  readonly omitted: number;
}

export interface RuleStatsOptions {
  /** Bound on the entries; default {@link MAX_RULE_STATS}. */
  readonly max?: number;
  /** Our table (family inet); its chain `forward` comes first. Default `firewall`. */
  readonly table?: string;
}

/** accept / drop by verdict; jump, goto, return, masquerade, log-only and none → other (SPEC §3.1). */
const groupOf = (r: Pick<SnapshotRule, "verdict">): RuleGroup => (r.verdict === "accept" || r.verdict === "drop" ? r.verdict : "other");

interface Entry {
  group: RuleGroup;
  comment: string;
  bytes: number;
  packets: number;
  tier: number;
  /** Named counters already added: two rules counting into one counter (one per IP family) must not count it twice. */
  named: Set<string> | null;
}

/**
 * Every counted rule with a comment, in every table, grouped by verdict and
 * keyed by comment; rules sharing a comment (in one group) are summed, a named
 * counter shared by several of them once.
 */
export function ruleStats(snapshot: Snapshot, options: RuleStatsOptions = {}): RuleStats {
  const max = options.max ?? MAX_RULE_STATS;
  const ours = options.table ?? "firewall";
  // By group, then by comment: 40,000 element rules at 10,000 policies, so no key is built per rule.
  const byGroup: Record<RuleGroup, Map<string, Entry>> = { accept: new Map(), drop: new Map(), other: new Map() };
  // Rules in our forward chain rank first, then other tables', then the rest of ours (maps read as
  // rules of a chain named after the map).
  const tierOf = (family: string, table: string, chain: string) => (table === ours && family === "inet" ? (chain === "forward" ? 0 : 2) : 1);
  const entryOf = (group: RuleGroup, comment: string, tier: number): Entry => {
    const entries = byGroup[group];
    let e = entries.get(comment);
    if (!e) entries.set(comment, (e = { group, comment, bytes: 0, packets: 0, tier, named: null }));
    if (tier < e.tier) e.tier = tier;
    return e;
  };
  for (const r of snapshot.rules) {
    if (r.comment === null || r.counter === null) continue;
    const e = entryOf(groupOf(r), r.comment, tierOf(r.family, r.table, r.chain));
    if (r.counterName !== null) {
      const id = `${r.family}\u0000${r.table}\u0000${r.counterName}`;
      e.named ??= new Set();
      if (e.named.has(id)) continue;
      e.named.add(id);
    }
    e.bytes += r.counter.bytes;
    e.packets += r.counter.packets;
  }
  for (const block of snapshot.elements ?? []) {
    const group = groupOf(block);
    const tier = tierOf(block.family, block.table, block.map);
    const { comments, packets, bytes } = block;
    for (let s = 0; s < comments.length; s++) {
      const e = entryOf(group, comments[s] as string, tier);
      e.bytes += bytes[s] as number;
      e.packets += packets[s] as number;
    }
  }
  const total = byGroup.accept.size + byGroup.drop.size + byGroup.other.size;
  const kept = topRanked([byGroup.accept.values(), byGroup.drop.values(), byGroup.other.values()], Math.max(0, max)).sort((a, b) => cmp(a.comment, b.comment));
  const rules: Record<RuleGroup, Record<string, RuleCounter>> = { accept: {}, drop: {}, other: {} };
  for (const e of kept) rules[e.group][e.comment] = { counter: { bytes: e.bytes, packets: e.packets } };
  return { rules, omitted: total - kept.length };
}

/** The ranking: lower tier first, then most bytes, most packets, by comment, by group. */
const rank = (a: Entry, b: Entry): number => a.tier - b.tier || b.bytes - a.bytes || b.packets - a.packets || cmp(a.comment, b.comment) || cmp(a.group, b.group);

/**
 * The first `k` entries by {@link rank}, without sorting them all: at 10,000 policies there are
 * 40,000 entries for 250 places. A heap of the `k` best so far, its worst at the root.
 */
function topRanked(sources: readonly Iterable<Entry>[], k: number): Entry[] {
  const heap: Entry[] = [];
  if (k === 0) return heap;
  const worse = (i: number, j: number) => rank(heap[i] as Entry, heap[j] as Entry) > 0;
  const swap = (i: number, j: number) => {
    const t = heap[i] as Entry;
    heap[i] = heap[j] as Entry;
    heap[j] = t;
  };
  const down = (i: number) => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && worse(l, m)) m = l;
      if (r < heap.length && worse(r, m)) m = r;
      if (m === i) return;
      swap(i, m);
      i = m;
    }
  };
  for (const source of sources) {
    for (const e of source) {
      if (heap.length < k) {
        heap.push(e);
        for (let i = heap.length - 1; i > 0; ) {
          const p = (i - 1) >> 1;
          if (!worse(i, p)) break;
          swap(i, p);
          i = p;
        }
      } else if (rank(e, heap[0] as Entry) < 0) {
        heap[0] = e;
        down(0);
      }
    }
  }
  return heap;
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
