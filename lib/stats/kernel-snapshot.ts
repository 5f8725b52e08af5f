/**
 * The snapshot statistics and metrics need, at any scale, without listing our table: `nft`
 * answers any question only after filling a cache of every object, half a second of CPU at
 * 10,000 policies even for `nft list tables`. So our table comes from the ruleset we applied and
 * the kernel's own counters read over netlink (named counters, and the map elements' counters
 * summed by the owner comment each element carries); the rules of its chains come from one
 * terse listing, taken again only when those chains change (the rules' counters are all named,
 * so their values are fresh); other tables (the OS's base ruleset, small) are listed whole, one
 * `nft list table` each, which fills no cache of ours.
 *
 * @example
 * ```ts
 * import { runCommand } from "../exec.ts";
 * import { kernelReader } from "../nft/netlink.ts";
 * import { KernelSnapshots } from "./kernel-snapshot.ts";
 * const kernel = kernelReader();
 * if (kernel) {
 *   const snapshots = new KernelSnapshots({ nftPath: "nft", exec: runCommand, kernel });
 *   // snapshots.applied({ table: "firewall", ruleset }); await snapshots.read();
 * }
 * ```
 * @module
 */
import type { Executor } from "../exec.ts";
import { FirewallError } from "../errors.ts";
import type { ElementCount } from "../nft/client.ts";
import { type CommentIndex, commentIndex, slotOf } from "../nft/comment-index.ts";
import { type ElementSums, parseSnapshot, readSnapshot, type Snapshot, type SnapshotRule, sumColumns } from "../nft/snapshot.ts";
import { elementOwners } from "../ruleset/incremental.ts";
import type { Ruleset } from "../ruleset/render.ts";
import { sumByComment } from "./model-snapshot.ts";

/** What of the kernel is read over netlink (lib/nft/netlink.ts). */
export interface KernelCounters {
  tables(): readonly { family: string; name: string }[];
  namedCounters(family: "inet", table: string): ReadonlyMap<string, { packets: number; bytes: number }>;
  setElementCounters(family: "inet", table: string, set: string): readonly ElementCount[];
  /**
   * The same added up by comment into the slots of `index`, without an object per element
   * (lib/nft/netlink.ts); comments it does not know are returned summed (optional: summed here
   * from {@link setElementCounters} otherwise).
   */
  setElementSlots?(family: "inet", table: string, set: string, index: CommentIndex, packets: Float64Array, bytes: Float64Array): ReadonlyMap<string, { packets: number; bytes: number }>;
}

/**
 * How old a read a scrape may be answered with (ms): scrapes of two Prometheus servers at the
 * same moment share one read; anything later reads the kernel again.
 */
export const SCRAPE_MAX_AGE_MS = 1000;

/** Marker chains (lib/nft/apply.ts) change with every transaction: not part of the cached rules. */
const MARKER = /^(revision|fingerprint|generation)\./;

const NO_ELEMENTS: ReadonlyMap<string, string> = new Map();

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** When {@link KernelSnapshots.read} may answer with an earlier read instead of reading again. */
export interface ReadOptions {
  /** The last read is good enough while it is at most this old (ms); default 0: read anew. */
  readonly maxAgeMs?: number;
  /** ...and unless it is this snapshot (the caller's previous one: it wants a newer one). */
  readonly unlike?: Snapshot;
}

export class KernelSnapshots {
  readonly #nftPath: string;
  readonly #exec: Executor;
  readonly #kernel: KernelCounters;
  readonly #now: () => number;
  #model: { table: string; ruleset: Ruleset } | undefined;
  /** The last read and when it started; reads of the same moment share it. */
  #last: { at: number; snapshot: Promise<Snapshot> } | undefined;
  /** The snapshot the last {@link readForInterval} gave (weakly: only its identity matters). */
  #lastInterval: WeakRef<Snapshot> | undefined;
  /** Our chains and their rules from the last terse listing, and what they were listed for. */
  #chains: { key: string; snapshot: Snapshot } | undefined;
  /**
   * By map: the comments of its elements' owners and the elements and owners they were found
   * in. The same comments keep the same index (and array) across rulesets, so that readers of
   * the snapshots can keep what they built for them.
   */
  readonly #indexes = new Map<string, { elements: ReadonlyMap<string, string>; owners: ReadonlyMap<string, string>; index: CommentIndex }>();

  constructor(deps: { nftPath: string; exec: Executor; kernel: KernelCounters; now?: () => number }) {
    this.#nftPath = deps.nftPath;
    this.#exec = deps.exec;
    this.#kernel = deps.kernel;
    this.#now = deps.now ?? (() => performance.now());
  }

  /** The ruleset now in force in `table` (undefined: none known; then {@link read} lists everything). */
  applied(model: { table: string; ruleset: Ruleset } | undefined): void {
    // Another ruleset has other elements: an earlier read describes the old one.
    if (model?.ruleset !== this.#model?.ruleset || model?.table !== this.#model?.table) this.#last = undefined;
    this.#model = model;
  }

  /**
   * A snapshot of every table, ours from the kernel's counters. A read costs about 60 ms of CPU
   * at 10,000 policies (the kernel's dump of 40,000 element counters and its parsing), so callers
   * that can live with an earlier one say how old it may be (see {@link ReadOptions}): the
   * statistics of an interval then take the counters a scrape read during it.
   */
  read(options: ReadOptions = {}): Promise<Snapshot> {
    const now = this.#now();
    const last = this.#last;
    const maxAge = options.maxAgeMs ?? 0;
    if (last && maxAge > 0 && now - last.at <= maxAge) {
      return last.snapshot.then((s) => (s === options.unlike ? this.#fresh(now) : s), () => this.#fresh(now));
    }
    return this.#fresh(now);
  }

  /**
   * For the statistics of an interval of `intervalMs`: the last read when it is at most one
   * interval old and newer than the one the previous interval took (a scrape's, typically), else
   * a new read. The status's counters are then at most one interval old, and an interval with a
   * scrape in it costs one read, not two.
   */
  async readForInterval(intervalMs: number): Promise<Snapshot> {
    const previous = this.#lastInterval?.deref();
    const s = await this.read({ maxAgeMs: intervalMs, ...(previous ? { unlike: previous } : {}) });
    this.#lastInterval = new WeakRef(s);
    return s;
  }

  #fresh(now: number): Promise<Snapshot> {
    const snapshot = this.#read();
    const entry = { at: now, snapshot };
    this.#last = entry;
    // A failed read is not kept.
    snapshot.catch(() => {
      if (this.#last === entry) this.#last = undefined;
    });
    return snapshot;
  }

  async #read(): Promise<Snapshot> {
    const model = this.#model;
    if (!model) return readSnapshot(this.#nftPath, this.#exec);
    const { table, ruleset } = model;
    const tables = this.#kernel.tables().map((t) => ({ family: t.family, name: t.name }));
    const ours = tables.some((t) => t.family === "inet" && t.name === table);
    const others = tables.filter((t) => !(t.family === "inet" && t.name === table));
    const listed = await Promise.all(others.map((t) => readSnapshot(this.#nftPath, this.#exec, ["table", t.family, t.name])));
    const rest = {
      chains: listed.flatMap((s) => s.chains),
      rules: listed.flatMap((s) => s.rules),
      counters: listed.flatMap((s) => s.counters),
      sets: listed.flatMap((s) => s.sets),
      elements: listed.flatMap((s) => s.elements ?? []),
    };
    if (!ours) return { tables, ...rest };

    const named = this.#kernel.namedCounters("inet", table);
    const counters = [...named].map(([name, c]) => ({ family: "inet", table, name, packets: c.packets, bytes: c.bytes }));
    const chains = await this.#ourChains(table, ruleset);
    // Our rules count into named counters: their values now, not the listing's.
    const rules: SnapshotRule[] = chains.rules.map((r) => (r.counterName === null ? r : { ...r, counter: named.get(r.counterName) ?? null }));
    const verdict = ruleset.verdict === "accept" || ruleset.verdict.startsWith("goto ") ? "accept" : "other";
    const elements: ElementSums[] = [];
    for (const map of ruleset.maps.keys()) {
      const index = this.#indexFor(map, ruleset);
      const n = index.comments.length;
      const packets = new Float64Array(n);
      const bytes = new Float64Array(n);
      const unknown = this.#slots(table, map, index, packets, bytes);
      elements.push({ family: "inet", table, map, verdict, target: null, comments: index.comments, packets, bytes });
      // Elements of owners the ruleset does not know (someone else's, until the next apply).
      if (unknown.size > 0) elements.push({ family: "inet", table, map, verdict, target: null, ...sumColumns(unknown) });
    }
    for (const map of this.#indexes.keys()) if (!ruleset.maps.has(map)) this.#indexes.delete(map);
    const sets = [
      ...[...(ruleset.sets ?? new Map<string, number>())].map(([name, elements]) => ({ family: "inet", table, name, kind: "set" as const, elements })),
      ...[...ruleset.elements].map(([name, e]) => ({ family: "inet", table, name, kind: "map" as const, elements: e.size })),
    ];
    return {
      tables,
      chains: [...chains.chains, ...rest.chains],
      rules: [...rules, ...rest.rules],
      counters: [...counters, ...rest.counters],
      sets: [...sets, ...rest.sets],
      elements: [...elements, ...rest.elements],
    };
  }

  /** The comments of the owners of `map`'s elements, indexed; the last index while they are the same. */
  #indexFor(map: string, ruleset: Ruleset): CommentIndex {
    const elements = ruleset.elements.get(map) ?? NO_ELEMENTS;
    const cached = this.#indexes.get(map);
    if (cached?.elements === elements && cached.owners === ruleset.owners) return cached.index;
    const comments: string[] = [];
    const seen = new Set<string>();
    for (const owner of elementOwners(elements)) {
      if (seen.has(owner)) continue;
      seen.add(owner);
      const comment = ruleset.owners.get(owner);
      if (comment !== undefined) comments.push(comment);
    }
    const index = cached && sameStrings(cached.index.comments, comments) ? cached.index : commentIndex(comments);
    this.#indexes.set(map, { elements, owners: ruleset.owners, index });
    return index;
  }

  /** Adds `map`'s element counters into the slots of `index`; returns what it does not know, summed by comment. */
  #slots(table: string, map: string, index: CommentIndex, packets: Float64Array, bytes: Float64Array): ReadonlyMap<string, { packets: number; bytes: number }> {
    const k = this.#kernel;
    if (k.setElementSlots) return k.setElementSlots("inet", table, map, index, packets, bytes);
    const unknown = new Map<string, { packets: number; bytes: number }>();
    for (const [comment, c] of sumByComment(k.setElementCounters("inet", table, map))) {
      const slot = slotOf(index, comment);
      if (slot < 0) unknown.set(comment, c);
      else {
        packets[slot] = c.packets;
        bytes[slot] = c.bytes;
      }
    }
    return unknown;
  }

  /** Our chains and rules, listed tersely (no elements) when they changed since the last listing. */
  async #ourChains(table: string, ruleset: Ruleset): Promise<Snapshot> {
    const key = `${table}\n${ruleset.skeleton}\n${ruleset.forwardRules.join("\n")}`;
    if (this.#chains?.key === key) return this.#chains.snapshot;
    const argv = [this.#nftPath, "-j", "-t", "list", "table", "inet", table];
    const r = await this.#exec(argv);
    if (r.code !== 0) throw new FirewallError("nft_unavailable", `${argv.join(" ")} failed: ${r.stderr.trim() || `exit ${r.code}`}`);
    const parsed = parseSnapshot(JSON.parse(r.stdout || "{}"));
    if (!parsed.ok) throw new FirewallError("nft_unavailable", parsed.message);
    const s = parsed.value;
    const snapshot: Snapshot = {
      tables: [],
      chains: s.chains.filter((c) => !MARKER.test(c.name)),
      rules: s.rules,
      counters: [],
      sets: [],
    };
    this.#chains = { key, snapshot };
    return snapshot;
  }
}
