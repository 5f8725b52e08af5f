/**
 * The nftables families of `:9630/metrics` (SPEC §7), drop-in compatible with
 * metal-stack's nftables-exporter: same names, HELP texts, types, label names
 * and label conventions, so existing dashboards and alerts keep working.
 *
 * Where it differs, on purpose:
 * - a rule that counts into a named counter (`counter name "x"`, every counted
 *   rule of `inet firewall`) reports that counter's values; the original reports
 *   0. A named counter shared by several rules (our accounting counters are
 *   counted by one rule per IP family) is reported in full on each of them:
 *   use `nftables_counter_*` to sum, not the rules.
 * - a match with an operator other than `==`/`in` keeps it as a prefix on every
 *   value: `ip saddr != 10.0.0.0/8` → `source_addresses="!=10.0.0.0/8"`,
 *   `!= { a, b }` → `!=a,!=b` (neither a nor b). The original drops the `!=`,
 *   which makes a negated match look like its opposite.
 * - port ranges are `1024-2048` (the original lists the two bounds as two ports);
 *   interface sets are `vlan42,vrf42` (the original prints the raw JSON).
 * - sets and maps are exported: `nftables_table_sets` {name, family} (sets and
 *   maps of a table) and `nftables_set_elements` {name, table, family, type}
 *   (`type` is `set` or `map`; a set and a map may not share a name in one
 *   table, so the series stay unique; an interval counts as one element).
 * - when the ruleset cannot be read, the exposition is `nftables_up 0` alone.
 *
 * @example
 * ```ts
 * import { runCommand } from "../exec.ts";
 * import { readSnapshot } from "../nft/snapshot.ts";
 * import { nftablesRegistry } from "./nftables.ts";
 * const registry = nftablesRegistry(() => readSnapshot("nft", runCommand).catch(() => null));
 * console.log(await registry.metrics());
 * ```
 * @module
 */
import { Counter, Gauge, Registry } from "prom-client";
import type { ElementSums, Match, MatchField, Snapshot, SnapshotRule } from "../nft/snapshot.ts";

export interface NftablesMetricsOptions {
  /**
   * Export the per-policy and per-service series (`nftables_rule_*` with the map's name as
   * `chain` and the owner's comment, summed from the map elements of `inet firewall`); default
   * true. At 10,000 policies they are most of the exposition, and nowhere else.
   */
  readonly perPolicySeries?: boolean;
  /** Table whose per-policy element series {@link perPolicySeries} leaves out; default `firewall`. */
  readonly table?: string;
}

const RULE_LABELS = [
  "chain",
  "family",
  "table",
  "input_interfaces",
  "output_interfaces",
  "source_addresses",
  "destination_addresses",
  "source_ports",
  "destination_ports",
  "comment",
  "action",
  "handle",
] as const;

type RuleLabel = (typeof RULE_LABELS)[number];

/** The exporter's action label: its three verdicts, everything else `policy`. */
const action = (r: SnapshotRule) => (r.verdict === "accept" || r.verdict === "drop" || r.verdict === "masquerade" ? r.verdict : "policy");

/** Values of one match as label parts: `==`/`in` plain (the exporter's form), other operators prefixed. */
const parts = (m: Match) => (m.op === "==" || m.op === "in" ? m.values : m.values.map((x) => `${m.op}${x}`));

/** The exporter's list convention: values joined with `,`, `any` for none. */
function list(rule: SnapshotRule, field: MatchField): string {
  if (rule.matches.length === 0) return "any";
  const all = rule.matches.filter((m) => m.field === field).flatMap(parts);
  return all.length === 0 ? "any" : all.join(",");
}

/**
 * The labels of `nftables_rule_bytes`/`_packets` for one rule, with the
 * exporter's conventions (see the module comment for where they differ).
 *
 * @example
 * ```ts
 * import { ruleLabels } from "./nftables.ts";
 * const l = ruleLabels({ family: "inet", table: "metal", chain: "input", handle: 13, comment: null, counter: { packets: 2, bytes: 120 }, counterName: null, verdict: "drop", target: null,
 *   matches: [{ field: "source_addresses", op: "!=", values: ["10.0.0.0/8"] }] });
 * console.log(l.source_addresses, l.comment, l.action); // "!=10.0.0.0/8" "empty" "drop"
 * ```
 */
export function ruleLabels(rule: SnapshotRule): Record<RuleLabel, string> {
  return {
    chain: rule.chain,
    family: rule.family,
    table: rule.table,
    input_interfaces: list(rule, "input_interfaces"),
    output_interfaces: list(rule, "output_interfaces"),
    source_addresses: list(rule, "source_addresses"),
    destination_addresses: list(rule, "destination_addresses"),
    source_ports: list(rule, "source_ports"),
    destination_ports: list(rule, "destination_ports"),
    comment: rule.comment ?? "empty",
    action: action(rule),
    handle: String(rule.handle),
  };
}

/**
 * A registry that leaves out families without a sample (prom-client prints HELP and TYPE for them
 * anyway), and prints some families itself: `after` names the family each follows. Those may
 * print as bytes (the 80,000 per-policy series: 11 MB a scrape, which as strings cost more than
 * everything else of a scrape); {@link exposition} hands the whole text over as bytes.
 */
class SampledRegistry extends Registry {
  readonly #own: { after: string; text: () => Promise<string | Uint8Array[]> }[] = [];
  readonly #scraped: (() => void)[] = [];

  /** Called after every exposition (to let go of what only that scrape needed). */
  onScraped(f: () => void): void {
    this.#scraped.push(f);
  }

  /** A family printed by `text` (HELP, TYPE, samples, no final newline; empty for none), after the family `after`. */
  addText(after: string, text: () => Promise<string | Uint8Array[]>): void {
    this.#own.push({ after, text });
  }

  /**
   * The exposition as byte parts, in order (the families and the blank lines between them): what
   * the metrics server sends one after the other, so that 11 MB are not copied into one buffer.
   */
  async expositionParts(): Promise<Uint8Array[]> {
    const parts: Promise<string | Uint8Array[]>[] = [];
    for (const m of this.getMetricsAsArray()) {
      parts.push(this.getSingleMetricAsString(m.name));
      for (const o of this.#own) if (o.after === m.name) parts.push(o.text());
    }
    const texts = await Promise.all(parts).finally(() => {
      for (const f of this.#scraped) f();
    });
    // HELP and TYPE are two lines; a third is a sample (our own families print only with samples).
    const kept = texts.filter((t) => (typeof t === "string" ? t.split("\n", 3).length > 2 : t.some((p) => p.length > 0))).map((t) => (typeof t === "string" ? [encoder.encode(t)] : t));
    const out: Uint8Array[] = [];
    for (const t of kept) {
      if (out.length > 0) out.push(BLANK_LINE);
      out.push(...t);
    }
    out.push(NEWLINE);
    return out;
  }

  /** The exposition as one byte array. */
  async exposition(): Promise<Uint8Array> {
    const parts = await this.expositionParts();
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let off = 0;
    for (const p of parts) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  }

  override async metrics(): Promise<string> {
    return decoder.decode(await this.exposition());
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const NEWLINE = new Uint8Array([10]);
const BLANK_LINE = new Uint8Array([10, 10]);

/** A label value as the exposition format quotes it (prom-client's escaping). */
const labelValue = (v: string) => (/[\\\n"]/.test(v) ? v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"') : v);

/** A rule's labels in exposition form: `chain="…",family="…",…` (prom-client's order and escaping). */
function labelText(rule: SnapshotRule): string {
  const labels = ruleLabels(rule);
  const parts: string[] = [];
  for (const k of RULE_LABELS) parts.push(`${k}="${labelValue(labels[k])}"`);
  return parts.join(",");
}

/**
 * The label texts of the element series (one per map and owner comment), kept across scrapes as
 * bytes: their labels are a function of family, table, map, verdict and comment alone (no
 * matches, handle 0), and at 10,000 policies building them anew was most of a scrape. A map
 * whose comments are the same array as at the last scrape (an unchanged map: lib/stats/) takes
 * the last labels as they are; a changed one builds only the labels of new comments. Bounded by
 * what the last scrapes saw.
 */
class ElementLabels {
  /** By family, table, map and which of the map's blocks. */
  readonly #blocks = new Map<string, { comments: readonly string[]; verdict: string; labels: Uint8Array[]; seen: number }>();
  #scrape = 0;

  /** The labels of `block`, the `nth` of its map in the snapshot (a map may have blocks for two verdicts). */
  get(block: ElementSums, nth: number): readonly Uint8Array[] {
    const key = `${block.family}\u0000${block.table}\u0000${block.map}\u0000${nth}`;
    const last = this.#blocks.get(key);
    if (last !== undefined && last.verdict === block.verdict) {
      last.seen = this.#scrape;
      if (last.comments === block.comments) return last.labels;
    }
    // The last labels by comment only while building these (kept, it would be a second index of 20,000).
    const old = new Map<string, Uint8Array>();
    if (last?.verdict === block.verdict) last.comments.forEach((c, i) => old.set(c, last.labels[i] as Uint8Array));
    const labels = block.comments.map((comment) =>
      old.get(comment) ??
        encoder.encode(labelText({ family: block.family, table: block.table, chain: block.map, handle: 0, comment, counter: null, counterName: null, verdict: block.verdict, target: block.target, matches: [] }))
    );
    this.#blocks.set(key, { comments: block.comments, verdict: block.verdict, labels, seen: this.#scrape });
    return labels;
  }

  /** Before a scrape: maps the last two scrapes did not see are forgotten. */
  rotate(): void {
    this.#scrape++;
    for (const [k, b] of this.#blocks) if (b.seen < this.#scrape - 2) this.#blocks.delete(k);
  }
}

/** One series of a rule family, by its labels as text (summed with equal ones). */
type RuleSeries = { rule: SnapshotRule; labels: string };

/** The element series of one map: labels known unique (one per map and comment), printed as they are. */
type ElementSeries = { labels: readonly Uint8Array[]; sums: ElementSums };

/** Powers of ten up to 10^16 (a safe integer has at most 16 digits). */
const POW10 = Array.from({ length: 17 }, (_, i) => 10 ** i);

/** Decimal digits of a safe non-negative integer: comparisons only (this runs for 80,000 values a scrape). */
function digitCount(value: number): number {
  let digits = 1;
  while (digits < 16 && value >= (POW10[digits] as number)) digits++;
  return digits;
}

/** Writes the digits of an integer 0 <= value < 2^31 ending just before `end`, with int arithmetic. */
function writeSmall(out: Uint8Array, end: number, value: number, digits: number): void {
  let v = value | 0;
  for (let i = end - 1; i >= end - digits; i--) {
    const q = (v / 10) | 0;
    out[i] = 48 + (v - q * 10);
    v = q;
  }
}

/** Writes the decimal digits of a safe non-negative integer at `off`; returns the offset after them. */
function writeInteger(out: Uint8Array, off: number, value: number): number {
  const digits = digitCount(value);
  const end = off + digits;
  if (value < 0x8000_0000) writeSmall(out, end, value, digits);
  else {
    // Above 2^31: the low eight digits and the rest (below 2^53 / 10^8 < 2^31) apart.
    const high = Math.floor(value / 1e8);
    writeSmall(out, end, value - high * 1e8, 8);
    writeSmall(out, end - 8, high, digits - 8);
  }
  return end;
}

const printable = (value: number) => Number.isSafeInteger(value) && value >= 0;

/**
 * One counter family of many series, printed directly into bytes: at 10,000 policies the rule
 * series are 80,000, and prom-client's own formatting of them costs over a second of CPU per
 * scrape. The text is the same as prom-client prints (series with equal labels summed, in
 * first-seen order). Element series are known to have labels no other series has (one per map,
 * verdict and comment) and skip the summing.
 *
 * The last text is kept, in parts of about 64 KiB, with where each value stands: when the next
 * scrape has the same series (the same label bytes, in the same order), it is the last text
 * again with only the parts that hold a changed value copied (a value of as many digits as
 * before is overwritten in place) or printed again, instead of 80,000 lines put together again
 * (or 11 MB copied).
 */
class CounterFamily {
  readonly #head: Uint8Array;
  readonly #prefix: Uint8Array;
  #last: LastText | undefined;

  constructor(name: string, help: string) {
    this.#head = encoder.encode(`# HELP ${name} ${help}\n# TYPE ${name} counter`);
    this.#prefix = encoder.encode(`\n${name}{`);
  }

  /** The family's text in parts (no final newline); none without a series. */
  print(series: readonly RuleSeries[], elements: readonly ElementSeries[], kind: "bytes" | "packets"): Uint8Array[] {
    // One line per slot; a summed series adds into the slot it was first seen at.
    const labels: Uint8Array[] = [];
    const values: number[] = [];
    const sums = new Map<string, number>();
    for (const s of series) {
      const value = s.rule.counter?.[kind] ?? 0;
      const slot = sums.get(s.labels);
      if (slot !== undefined) values[slot] = (values[slot] as number) + value;
      else {
        sums.set(s.labels, labels.length);
        labels.push(encoder.encode(s.labels));
        values.push(value);
      }
    }
    for (const e of elements) {
      const v = e.sums[kind];
      for (let i = 0; i < e.labels.length; i++) {
        labels.push(e.labels[i] as Uint8Array);
        values.push(v[i] as number);
      }
    }
    if (labels.length === 0) {
      this.#last = undefined;
      return [];
    }
    return this.#patched(labels, values) ?? this.#printed(labels, values);
  }

  /**
   * The last text with the new values, when the series are as they were. Its parts are never
   * written to (a scraper may still be sending them): a part with a changed value is a copy with
   * the new digits written over the old (all of as many digits as before), or else put together
   * from the old part's bytes between the changed values and their new digits; the other parts
   * are the last ones.
   */
  #patched(labels: readonly Uint8Array[], values: readonly number[]): Uint8Array[] | undefined {
    const last = this.#last;
    if (!last || last.labels.length !== labels.length) return undefined;
    const changed: number[] = [];
    for (let i = 0; i < labels.length; i++) {
      const a = labels[i] as Uint8Array;
      const b = last.labels[i] as Uint8Array;
      if (a !== b && !sameBytes(a, b)) return undefined;
      if (values[i] !== last.values[i]) changed.push(i);
    }
    const parts = last.parts.slice();
    let at = last.at;
    let ends = last.ends;
    // Parts in which a value has another width, and the copies in which digits were overwritten.
    const rebuild = new Set<number>();
    for (const i of changed) {
      const v = values[i] as number;
      if (!printable(v) || digitCount(v) !== (last.ends[i] as number) - (last.at[i] as number)) rebuild.add(last.partOf[i] as number);
    }
    if (rebuild.size > 0) {
      at = at.slice();
      ends = ends.slice();
    }
    for (const i of changed) {
      const c = last.partOf[i] as number;
      if (rebuild.has(c)) continue;
      let part = parts[c] as Buffer;
      // Buffer.from copies (a Buffer's slice() would not).
      if (part === last.parts[c]) parts[c] = part = Buffer.from(part);
      writeInteger(part, at[i] as number, values[i] as number);
    }
    for (const c of rebuild) parts[c] = rebuilt(last.parts[c] as Buffer, last.firstLine[c] as number, last.firstLine[c + 1] as number, last, values, at, ends);
    this.#last = { labels: labels as Uint8Array[], values: Float64Array.from(values), at, ends, partOf: last.partOf, firstLine: last.firstLine, parts };
    return parts;
  }

  #printed(labels: readonly Uint8Array[], values: readonly number[]): Buffer[] {
    // Parts of about PART_BYTES, by the size of their labels (the values' digits vary).
    const first: number[] = [0];
    const partOf = new Int32Array(labels.length);
    let size = this.#head.length;
    for (let i = 0; i < labels.length; i++) {
      if (size >= PART_BYTES) {
        first.push(i);
        size = 0;
      }
      partOf[i] = first.length - 1;
      size += this.#prefix.length + (labels[i] as Uint8Array).length + 2 + 20;
    }
    first.push(labels.length);
    const firstLine = Int32Array.from(first);
    const at = new Int32Array(labels.length);
    const ends = new Int32Array(labels.length);
    const parts: Buffer[] = [];
    for (let c = 0; c + 1 < firstLine.length; c++) parts.push(this.#part(c, firstLine, labels, values, at, ends));
    this.#last = { labels: labels as Uint8Array[], values: Float64Array.from(values), at, ends, partOf, firstLine, parts };
    return parts;
  }

  /** Part `c` (lines firstLine[c] to firstLine[c + 1]; the first with the family's head), setting where each of its values stands in it. */
  #part(c: number, firstLine: Int32Array, labels: readonly Uint8Array[], values: readonly number[], at: Int32Array, ends: Int32Array): Buffer {
    const head = c === 0 ? this.#head : EMPTY;
    const prefix = this.#prefix;
    const from = firstLine[c] as number;
    const to = firstLine[c + 1] as number;
    let size = head.length;
    for (let i = from; i < to; i++) size += prefix.length + (labels[i] as Uint8Array).length + 2 + 25;
    // Not zero-filled: every byte up to `off` is written. A Buffer, for Buffer.copy in rebuilt().
    const out = Buffer.allocUnsafe(size);
    out.set(head, 0);
    let off = head.length;
    for (let i = from; i < to; i++) {
      const l = labels[i] as Uint8Array;
      out.set(prefix, off);
      off += prefix.length;
      out.set(l, off);
      off += l.length;
      out[off++] = 125; // }
      out[off++] = 32;
      at[i] = off;
      off = writeValue(out, off, values[i] as number);
      ends[i] = off;
    }
    return out.subarray(0, off);
  }
}

/** Writes `value` at `off` as the exposition prints it; returns the offset after it. */
function writeValue(out: Uint8Array, off: number, value: number): number {
  if (printable(value)) return writeInteger(out, off, value);
  const t = encoder.encode(String(value));
  out.set(t, off);
  return off + t.length;
}

/**
 * The part holding lines [from, to) again from its `old` bytes, with the values that changed
 * since `last` written anew: the bytes between changed values are copied as they are. Sets where
 * each of its values stands now in `at` and `ends`.
 */
function rebuilt(old: Buffer, from: number, to: number, last: LastText, values: readonly number[], at: Int32Array, ends: Int32Array): Buffer {
  const out = Buffer.allocUnsafe(old.length + (to - from) * 25);
  let off = 0;
  let copyFrom = 0;
  let shift = 0;
  for (let i = from; i < to; i++) {
    const v = values[i] as number;
    const oldAt = last.at[i] as number;
    const oldEnd = last.ends[i] as number;
    if (v === last.values[i]) {
      at[i] = oldAt + shift;
      ends[i] = oldEnd + shift;
      continue;
    }
    // Buffer.copy: a view per line (subarray) would cost more than the copy.
    off += old.copy(out, off, copyFrom, oldAt);
    at[i] = off;
    off = writeValue(out, off, v);
    ends[i] = off;
    shift = off - oldEnd;
    copyFrom = oldEnd;
  }
  off += old.copy(out, off, copyFrom);
  return out.subarray(0, off);
}

const EMPTY = new Uint8Array(0);

/** What {@link CounterFamily} printed last, in parts, and where each value stands in its part. */
interface LastText {
  readonly labels: Uint8Array[];
  readonly values: Float64Array;
  /** Where each value starts and ends in its part. */
  readonly at: Int32Array;
  readonly ends: Int32Array;
  readonly partOf: Int32Array;
  /** The first line of each part, and the number of lines after the last. */
  readonly firstLine: Int32Array;
  /** Buffers (see {@link rebuilt}). */
  readonly parts: Buffer[];
}

/** About how large a part of a printed family is: a changed value costs a copy of its part. */
const PART_BYTES = 64 * 1024;

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * A registry whose metrics are read from a fresh snapshot at every scrape
 * (`collect()` callbacks; the collects of one scrape share one read). When
 * `getSnapshot` gives null or throws, the exposition is `nftables_up 0` alone.
 *
 * @example
 * ```ts
 * import { nftablesRegistry } from "./nftables.ts";
 * const registry = nftablesRegistry(async () => ({ tables: [{ family: "inet", name: "metal" }], chains: [], rules: [], counters: [], sets: [] }));
 * console.log(await registry.metrics()); // nftables_up 1, nftables_table_chains{name="metal",family="inet"} 0, ...
 * ```
 */
export function nftablesRegistry(getSnapshot: () => Promise<Snapshot | null>, options: NftablesMetricsOptions = {}): Registry {
  const perPolicy = options.perPolicySeries ?? true;
  const ourTable = options.table ?? "firewall";
  const registry = new SampledRegistry();
  const registers = [registry];

  // One read per scrape: every collect of a scrape starts in the same tick, so
  // they find the first one's read still in flight and share it; the next scrape reads again.
  let inFlight: Promise<Snapshot | null> | null = null;
  const snapshot = (): Promise<Snapshot | null> => {
    if (inFlight) return inFlight;
    const p = getSnapshot().catch(() => null);
    inFlight = p;
    void p.finally(() => {
      if (inFlight === p) inFlight = null;
    });
    return p;
  };

  new Gauge({
    name: "nftables_up",
    help: "'1' if reading the nft output was successful, '0' otherwise",
    registers,
    async collect() {
      this.set((await snapshot()) ? 1 : 0);
    },
  });
  for (const [kind, help] of [["bytes", "Bytes, matched by counter"], ["packets", "Packets, matched by counter"]] as const) {
    new Counter({
      name: `nftables_counter_${kind}`,
      help,
      labelNames: ["name", "table", "family"],
      registers,
      async collect() {
        this.reset();
        for (const c of (await snapshot())?.counters ?? []) this.inc({ name: c.name, table: c.table, family: c.family }, c[kind]);
      },
    });
  }
  new Gauge({
    name: "nftables_table_chains",
    help: "Count chains in table",
    labelNames: ["name", "family"],
    registers,
    async collect() {
      this.reset();
      const s = await snapshot();
      for (const t of s?.tables ?? []) this.set({ name: t.name, family: t.family }, s?.chains.filter((c) => c.table === t.name && c.family === t.family).length ?? 0);
    },
  });
  new Gauge({
    name: "nftables_chain_rules",
    help: "Count rules in chain",
    labelNames: ["name", "family", "table", "handle"],
    registers,
    async collect() {
      this.reset();
      for (const c of (await snapshot())?.chains ?? []) this.set({ name: c.name, family: c.family, table: c.table, handle: String(c.handle) }, c.rules);
    },
  });
  // Per-policy and per-service figures: our maps' element counters, summed by owner comment.
  const ownMap = (e: ElementSums) => e.table === ourTable && e.family === "inet";
  const elementLabels = new ElementLabels();
  let labelled: Snapshot | null = null;
  const ruleSeries = (s: Snapshot | null) => {
    if (s !== labelled) elementLabels.rotate();
    labelled = s;
    // As the original: only counted rules. A rule naming a counter that does not exist counts as 0.
    const series: RuleSeries[] = [];
    for (const r of s?.rules ?? []) {
      if (r.counter === null && r.counterName === null) continue;
      series.push({ rule: r, labels: labelText(r) });
    }
    const elements: ElementSeries[] = [];
    const seen = new Map<string, number>();
    for (const e of s?.elements ?? []) {
      if (!perPolicy && ownMap(e)) continue;
      const key = `${e.family}\u0000${e.table}\u0000${e.map}`;
      const nth = seen.get(key) ?? 0;
      seen.set(key, nth + 1);
      elements.push({ labels: elementLabels.get(e, nth), sums: e });
    }
    return { series, elements };
  };
  // Both families of one scrape share one labelling of its snapshot; it goes with the scrape.
  let labelling: { snapshot: Snapshot | null; series: ReturnType<typeof ruleSeries> } | undefined;
  registry.onScraped(() => {
    labelling = undefined;
    labelled = null;
  });
  for (const [kind, help] of [["bytes", "Bytes, matched by rule per rule comment"], ["packets", "Packets, matched by rule per rule comment"]] as const) {
    const family = new CounterFamily(`nftables_rule_${kind}`, help);
    registry.addText("nftables_chain_rules", async () => {
      const s = await snapshot();
      if (labelling?.snapshot !== s) labelling = { snapshot: s, series: ruleSeries(s) };
      return family.print(labelling.series.series, labelling.series.elements, kind);
    });
  }
  new Gauge({
    name: "nftables_table_sets",
    help: "Count sets and maps in table",
    labelNames: ["name", "family"],
    registers,
    async collect() {
      this.reset();
      const s = await snapshot();
      for (const t of s?.tables ?? []) this.set({ name: t.name, family: t.family }, s?.sets.filter((x) => x.table === t.name && x.family === t.family).length ?? 0);
    },
  });
  new Gauge({
    name: "nftables_set_elements",
    help: "Count elements in set or map",
    labelNames: ["name", "table", "family", "type"],
    registers,
    async collect() {
      this.reset();
      for (const x of (await snapshot())?.sets ?? []) this.set({ name: x.name, table: x.table, family: x.family, type: x.kind }, x.elements);
    },
  });
  return registry;
}
