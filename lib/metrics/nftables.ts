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
import type { Match, MatchField, Snapshot, SnapshotRule } from "../nft/snapshot.ts";

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
  readonly #own: { after: string; text: () => Promise<string | Uint8Array> }[] = [];
  readonly #scraped: (() => void)[] = [];

  /** Called after every exposition (to let go of what only that scrape needed). */
  onScraped(f: () => void): void {
    this.#scraped.push(f);
  }

  /** A family printed by `text` (HELP, TYPE, samples, no final newline; empty for none), after the family `after`. */
  addText(after: string, text: () => Promise<string | Uint8Array>): void {
    this.#own.push({ after, text });
  }

  /**
   * The exposition as byte parts, in order (the families and the blank lines between them): what
   * the metrics server sends one after the other, so that 11 MB are not copied into one buffer.
   */
  async expositionParts(): Promise<Uint8Array[]> {
    const parts: Promise<string | Uint8Array>[] = [];
    for (const m of this.getMetricsAsArray()) {
      parts.push(this.getSingleMetricAsString(m.name));
      for (const o of this.#own) if (o.after === m.name) parts.push(o.text());
    }
    const texts = await Promise.all(parts).finally(() => {
      for (const f of this.#scraped) f();
    });
    // HELP and TYPE are two lines; a third is a sample (our own families print only with samples).
    const kept = texts.filter((t) => (typeof t === "string" ? t.split("\n", 3).length > 2 : t.length > 0)).map((t) => (typeof t === "string" ? encoder.encode(t) : t));
    const out: Uint8Array[] = [];
    for (const t of kept) {
      if (out.length > 0) out.push(BLANK_LINE);
      out.push(t);
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
 * The label texts of the element rules (one per map and owner comment), kept across scrapes as
 * bytes: their labels are a function of family, table, map, verdict and comment alone (no
 * matches, handle 0), and at 10,000 policies building them anew was most of a scrape. Bounded by
 * what the last scrapes saw.
 */
class ElementLabels {
  /** By map (the rule's chain), then by comment: both are shared strings, so no key is built per rule. */
  readonly #texts = new Map<string, Map<string | null, { bytes: Uint8Array; seen: number; family: string; table: string; verdict: string }>>();
  #scrape = 0;

  get(rule: SnapshotRule): Uint8Array {
    let byComment = this.#texts.get(rule.chain);
    if (byComment === undefined) this.#texts.set(rule.chain, (byComment = new Map()));
    const e = byComment.get(rule.comment);
    if (e !== undefined && e.family === rule.family && e.table === rule.table && e.verdict === rule.verdict) {
      e.seen = this.#scrape;
      return e.bytes;
    }
    const bytes = encoder.encode(labelText(rule));
    byComment.set(rule.comment, { bytes, seen: this.#scrape, family: rule.family, table: rule.table, verdict: rule.verdict });
    return bytes;
  }

  /** Before a scrape: what the last two scrapes did not use is forgotten. */
  rotate(): void {
    this.#scrape++;
    for (const [chain, byComment] of this.#texts) {
      for (const [k, e] of byComment) if (e.seen < this.#scrape - 2) byComment.delete(k);
      if (byComment.size === 0) this.#texts.delete(chain);
    }
  }
}

/** One series of a rule family: labels as text (summed with equal ones) or as bytes (unique, printed as they are). */
type RuleSeries = { rule: SnapshotRule; labels: string; unique: false } | { rule: SnapshotRule; labels: Uint8Array; unique: true };

/** Writes the decimal digits of a safe non-negative integer at `off`; returns the offset after them. */
function writeInteger(out: Uint8Array, off: number, value: number): number {
  if (value === 0) {
    out[off] = 48;
    return off + 1;
  }
  let digits = 0;
  for (let v = value; v >= 1; v = Math.floor(v / 10)) digits++;
  let v = value;
  for (let i = digits - 1; i >= 0; i--) {
    out[off + i] = 48 + (v % 10);
    v = Math.floor(v / 10);
  }
  return off + digits;
}

/** Decimal digits of a safe non-negative integer. */
function digitCount(value: number): number {
  let digits = 1;
  for (let v = value; v >= 10; v = Math.floor(v / 10)) digits++;
  return digits;
}

const printable = (value: number) => Number.isSafeInteger(value) && value >= 0;

/**
 * One counter family of many series, printed directly into bytes: at 10,000 policies the rule
 * series are 80,000, and prom-client's own formatting of them costs over a second of CPU per
 * scrape. The text is the same as prom-client prints (series with equal labels summed, in
 * first-seen order). `unique` series are known to have labels no other series has (the element
 * rules: one per map and comment) and skip the summing.
 *
 * The last text is kept with where each value stands: when the next scrape has the same series
 * (the same label bytes, in the same order) and every value as many digits as before — the
 * common case, counters grow slowly — it is the last text copied with the digits overwritten,
 * instead of 80,000 lines put together again.
 */
class CounterFamily {
  readonly #head: Uint8Array;
  readonly #prefix: Uint8Array;
  #last: { labels: Uint8Array[]; at: Int32Array; widths: Uint8Array; text: Uint8Array } | undefined;

  constructor(name: string, help: string) {
    this.#head = encoder.encode(`# HELP ${name} ${help}\n# TYPE ${name} counter`);
    this.#prefix = encoder.encode(`\n${name}{`);
  }

  /** The family's text (no final newline); empty without a series. */
  print(series: readonly RuleSeries[], kind: "bytes" | "packets"): Uint8Array {
    if (series.length === 0) {
      this.#last = undefined;
      return new Uint8Array(0);
    }
    // One line per slot; a summed series adds into the slot it was first seen at.
    const labels: Uint8Array[] = [];
    const values: number[] = [];
    const sums = new Map<string, number>();
    for (const s of series) {
      const value = s.rule.counter?.[kind] ?? 0;
      if (s.unique) {
        labels.push(s.labels);
        values.push(value);
        continue;
      }
      const slot = sums.get(s.labels);
      if (slot !== undefined) values[slot] = (values[slot] as number) + value;
      else {
        sums.set(s.labels, labels.length);
        labels.push(encoder.encode(s.labels));
        values.push(value);
      }
    }
    return this.#patched(labels, values) ?? this.#printed(labels, values);
  }

  /** The last text with new digits, when the series and the values' widths are as they were. */
  #patched(labels: readonly Uint8Array[], values: readonly number[]): Uint8Array | undefined {
    const last = this.#last;
    if (!last || last.labels.length !== labels.length) return undefined;
    for (let i = 0; i < labels.length; i++) {
      const a = labels[i] as Uint8Array;
      const b = last.labels[i] as Uint8Array;
      if (a !== b && !sameBytes(a, b)) return undefined;
      const v = values[i] as number;
      if (!printable(v) || digitCount(v) !== last.widths[i]) return undefined;
    }
    // A copy: the last text may still be on its way to a scraper.
    const text = Buffer.allocUnsafe(last.text.length);
    text.set(last.text);
    for (let i = 0; i < values.length; i++) writeInteger(text, last.at[i] as number, values[i] as number);
    this.#last = { ...last, labels: labels as Uint8Array[], text };
    return text;
  }

  #printed(labels: readonly Uint8Array[], values: readonly number[]): Uint8Array {
    const head = this.#head;
    const prefix = this.#prefix;
    let size = head.length;
    for (const l of labels) size += prefix.length + l.length + 2 + 25;
    const out = new Uint8Array(size);
    out.set(head, 0);
    let off = head.length;
    const at = new Int32Array(labels.length);
    const widths = new Uint8Array(labels.length);
    let patchable = true;
    for (let i = 0; i < labels.length; i++) {
      const l = labels[i] as Uint8Array;
      const value = values[i] as number;
      out.set(prefix, off);
      off += prefix.length;
      out.set(l, off);
      off += l.length;
      out[off++] = 125; // }
      out[off++] = 32;
      at[i] = off;
      if (printable(value)) {
        off = writeInteger(out, off, value);
        widths[i] = off - (at[i] as number);
      } else {
        const t = encoder.encode(String(value));
        out.set(t, off);
        off += t.length;
        patchable = false;
      }
    }
    const text = out.subarray(0, off);
    this.#last = patchable ? { labels: labels as Uint8Array[], at, widths, text } : undefined;
    return text;
  }
}

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
  const ownChain = (r: SnapshotRule) => r.table === ourTable && r.family === "inet" && r.fromElements === true;
  const elementLabels = new ElementLabels();
  let labelled: Snapshot | null = null;
  const ruleSeries = (s: Snapshot | null) => {
    if (s !== labelled) elementLabels.rotate();
    labelled = s;
    // As the original: only counted rules. A rule naming a counter that does not exist counts as 0.
    // Element rules are unique per table, map and comment (they are sums by comment).
    const out: RuleSeries[] = [];
    for (const r of s?.rules ?? []) {
      if ((r.counter === null && r.counterName === null) || (!perPolicy && ownChain(r))) continue;
      out.push(r.fromElements === true ? { rule: r, labels: elementLabels.get(r), unique: true } : { rule: r, labels: labelText(r), unique: false });
    }
    return out;
  };
  // Both families of one scrape share one labelling of its snapshot; it goes with the scrape
  // (at 10,000 policies it holds ~10 MB).
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
      return family.print(labelling.series, kind);
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
