/**
 * One typed picture of the kernel's nftables state, read with one
 * `nft -j list ruleset` and parsed at the edge, so that the metrics exporter
 * (lib/metrics/nftables.ts) and the status statistics (lib/stats/) work on
 * plain data and never on nft's JSON.
 *
 * What it keeps: tables, chains (with their rule count), rules (counter values,
 * with `counter name "x"` resolved to that named counter's values, verdict, and
 * the matches the exporter turns into labels), named counters, and sets and maps
 * with their element count. Everything else in nft's JSON (unknown keys, other
 * object kinds such as flowtables or quotas, other statements) is ignored, so a
 * newer nft that adds fields does not break us.
 *
 * @example
 * ```ts
 * import { runCommand } from "../exec.ts";
 * import { readSnapshot } from "./snapshot.ts";
 * const s = await readSnapshot("nft", runCommand);
 * console.log(s.tables.map((t) => `${t.family} ${t.name}`));
 * ```
 * @module
 */
import * as v from "valibot";
import type { Executor } from "../exec.ts";
import { FirewallError } from "../errors.ts";

/**
 * Largest `nft -j list ruleset` output read, in characters. Our table at 10,000
 * policies lists as about 14 MB of JSON; anything 15 times that is not a
 * firewall we know and would cost seconds of parsing and hundreds of MB.
 */
export const MAX_SNAPSHOT_CHARS = 200 * 1024 * 1024;

/** Most top-level objects (tables, chains, rules, sets, ...) accepted; ours has ~3 per policy. */
export const MAX_SNAPSHOT_OBJECTS = 1_000_000;

/** Packets and bytes of a counter. */
export interface CounterValues {
  readonly packets: number;
  readonly bytes: number;
}

/** A rule's verdict: the first verdict-like statement in it; `other` for none (log-only, counter-only) or others (vmap, reject, snat, ...). */
export type Verdict = "accept" | "drop" | "jump" | "goto" | "return" | "masquerade" | "other";

/** What a match looks at, in the exporter's label terms. */
export type MatchField = "input_interfaces" | "output_interfaces" | "source_addresses" | "destination_addresses" | "source_ports" | "destination_ports";

/**
 * One match of a rule on an interface, address or port. `values` are nft's
 * right-hand side, flattened: `"10.0.0.0/8"`, `"1024-2048"`, `"@setname"`,
 * `"22"`; `op` is nft's operator (`==`, `!=`, `in`, `<`, ...).
 */
export interface Match {
  readonly field: MatchField;
  readonly op: string;
  readonly values: readonly string[];
}

export interface SnapshotTable {
  readonly family: string;
  readonly name: string;
}

export interface SnapshotChain {
  readonly family: string;
  readonly table: string;
  readonly name: string;
  readonly handle: number;
  /** Rules in the chain. */
  readonly rules: number;
}

export interface SnapshotRule {
  readonly family: string;
  readonly table: string;
  readonly chain: string;
  readonly handle: number;
  /** null when the rule has no comment. */
  readonly comment: string | null;
  /** The rule's counter (inline, or the named counter it counts into); null when it counts nothing or names an unknown counter. */
  readonly counter: CounterValues | null;
  /** Name of the named counter the rule counts into; null for an inline counter or none. */
  readonly counterName: string | null;
  readonly verdict: Verdict;
  /** Chain a `jump`/`goto` goes to, else null. */
  readonly target: string | null;
  readonly matches: readonly Match[];
  /**
   * True for the elements of a map that carry a counter and a comment, summed by map and comment
   * (`chain` is then the map's name): how our table counts per policy and service.
   */
  readonly fromElements?: boolean;
}

export interface SnapshotCounter extends CounterValues {
  readonly family: string;
  readonly table: string;
  readonly name: string;
}

export interface SnapshotSet {
  readonly family: string;
  readonly table: string;
  readonly name: string;
  readonly kind: "set" | "map";
  /** Elements as listed (an interval counts once). */
  readonly elements: number;
}

/**
 * The counted elements of one map, summed by the comment each carries (how our table counts per
 * policy and per service), as columns: slot `s` is `comments[s]` with `packets[s]` and
 * `bytes[s]`. They read as rules of a chain named after the map ({@link elementRules}); at
 * 10,000 policies they are 40,000, so they are kept without an object each. The `comments` of
 * reads of an unchanged map are the same array.
 */
export interface ElementSums {
  readonly family: string;
  readonly table: string;
  /** The map's name. */
  readonly map: string;
  /** The verdict the elements map to (all of this block's, `accept` for a goto to a chain that accepts). */
  readonly verdict: Verdict;
  readonly target: string | null;
  readonly comments: readonly string[];
  readonly packets: Float64Array;
  readonly bytes: Float64Array;
}

/** The kernel's nftables state, every table. Arrays are in nft's listing order. */
export interface Snapshot {
  readonly tables: readonly SnapshotTable[];
  readonly chains: readonly SnapshotChain[];
  readonly rules: readonly SnapshotRule[];
  readonly counters: readonly SnapshotCounter[];
  readonly sets: readonly SnapshotSet[];
  /** Maps' counted elements summed by comment (absent: none). */
  readonly elements?: readonly ElementSums[];
}

/** Sums by comment as the columns of {@link ElementSums}: comments, packets and bytes, slot by slot. */
export function sumColumns(sums: ReadonlyMap<string, { readonly packets: number; readonly bytes: number }>): Pick<ElementSums, "comments" | "packets" | "bytes"> {
  return { comments: [...sums.keys()], packets: Float64Array.from(sums.values(), (c) => c.packets), bytes: Float64Array.from(sums.values(), (c) => c.bytes) };
}

/**
 * The element sums of `snapshot` as rules (`fromElements`, the map's name as `chain`, handle 0),
 * map by map, slot by slot: for readers that want one shape, and tests.
 *
 * @example
 * ```ts
 * import { elementRules } from "./snapshot.ts";
 * const rules = elementRules({ tables: [], chains: [], rules: [], counters: [], sets: [], elements: [
 *   { family: "inet", table: "firewall", map: "egress4_ports", verdict: "accept", target: null, comments: ["np a"], packets: Float64Array.of(2), bytes: Float64Array.of(120) },
 * ] });
 * console.log(rules[0]?.chain, rules[0]?.comment, rules[0]?.counter); // egress4_ports np a { packets: 2, bytes: 120 }
 * ```
 */
export function elementRules(snapshot: Snapshot): SnapshotRule[] {
  const out: SnapshotRule[] = [];
  for (const e of snapshot.elements ?? []) {
    e.comments.forEach((comment, s) => {
      out.push({
        family: e.family, table: e.table, chain: e.map, handle: 0, comment, counter: { packets: e.packets[s] as number, bytes: e.bytes[s] as number },
        counterName: null, verdict: e.verdict, target: e.target, matches: [], fromElements: true,
      });
    });
  }
  return out;
}

export type ParsedSnapshot = { ok: true; value: Snapshot } | { ok: false; message: string };

// ---- schemas of nft's JSON (libnftables-json(5)); loose: unknown keys are allowed and dropped.

const Name = v.pipe(v.string(), v.maxLength(256));
const Handle = v.pipe(v.number(), v.integer(), v.minValue(0));
const Count = v.pipe(v.number(), v.minValue(0));

const TableJson = v.looseObject({ family: Name, name: Name });
const ChainJson = v.looseObject({ family: Name, table: Name, name: Name, handle: Handle });
const CounterJson = v.looseObject({ family: Name, table: Name, name: Name, packets: Count, bytes: Count });
const SetJson = v.looseObject({ family: Name, table: Name, name: Name, elem: v.optional(v.array(v.unknown())) });
const StatementJson = v.record(v.string(), v.unknown());
const RuleJson = v.looseObject({
  family: Name,
  table: Name,
  chain: Name,
  handle: Handle,
  comment: v.optional(v.string()),
  expr: v.optional(v.array(StatementJson)),
});
const EntryJson = v.looseObject({
  table: v.optional(TableJson),
  chain: v.optional(ChainJson),
  rule: v.optional(RuleJson),
  counter: v.optional(CounterJson),
  set: v.optional(SetJson),
  map: v.optional(SetJson),
});
// The array is checked for its length before its entries are, so an absurd listing costs nothing.
const DocumentJson = v.looseObject({ nftables: v.pipe(v.array(v.unknown()), v.maxLength(MAX_SNAPSHOT_OBJECTS, `more than ${MAX_SNAPSHOT_OBJECTS} objects`)) });

const InlineCounter = v.looseObject({ packets: Count, bytes: Count });
const MatchJson = v.looseObject({ op: v.string(), left: v.unknown(), right: v.unknown() });
const MetaJson = v.looseObject({ meta: v.looseObject({ key: v.string() }) });
const PayloadJson = v.looseObject({ payload: v.looseObject({ field: v.string() }) });
const PrefixJson = v.looseObject({ prefix: v.looseObject({ addr: v.string(), len: v.number() }) });
const RangeJson = v.looseObject({ range: v.tuple([v.unknown(), v.unknown()]) });
const SetValueJson = v.looseObject({ set: v.array(v.unknown()) });
const TargetJson = v.looseObject({ target: v.string() });

type RuleJson = v.InferOutput<typeof RuleJson>;

const META_FIELDS: Record<string, MatchField> = { iif: "input_interfaces", iifname: "input_interfaces", oif: "output_interfaces", oifname: "output_interfaces" };
const PAYLOAD_FIELDS: Record<string, MatchField> = { saddr: "source_addresses", daddr: "destination_addresses", sport: "source_ports", dport: "destination_ports" };
const VERDICTS: readonly Verdict[] = ["accept", "drop", "jump", "goto", "return", "masquerade"];
/** Statements that end a rule's evaluation but are none of {@link VERDICTS}. */
const OTHER_VERDICTS = new Set(["reject", "vmap", "snat", "dnat", "redirect", "queue"]);

/** nft's right-hand side as label strings: scalars as printed, prefixes `a/len`, ranges `a-b`, anonymous sets flattened. */
function values(right: unknown, depth = 0): string[] {
  if (typeof right === "string") return [right];
  if (typeof right === "number") return [String(right)];
  if (depth > 4) return []; // nft nests at most set → range; deeper is not a label
  if (Array.isArray(right)) return right.flatMap((x) => values(x, depth + 1));
  if (v.is(PrefixJson, right)) return [`${right.prefix.addr}/${right.prefix.len}`];
  if (v.is(RangeJson, right)) return [`${values(right.range[0], depth + 1).join("")}-${values(right.range[1], depth + 1).join("")}`];
  if (v.is(SetValueJson, right)) return right.set.flatMap((x) => values(x, depth + 1));
  return [];
}

function matchOf(statement: Record<string, unknown>): Match | null {
  const m = statement.match;
  if (!v.is(MatchJson, m)) return null;
  let field: MatchField | undefined;
  if (v.is(MetaJson, m.left)) field = META_FIELDS[m.left.meta.key];
  else if (v.is(PayloadJson, m.left)) field = PAYLOAD_FIELDS[m.left.payload.field];
  return field === undefined ? null : { field, op: m.op, values: values(m.right) };
}

function ruleOf(r: RuleJson, named: ReadonlyMap<string, CounterValues>): SnapshotRule {
  let counter: CounterValues | null = null;
  let counterName: string | null = null;
  let verdict: Verdict | null = null;
  let target: string | null = null;
  const matches: Match[] = [];
  for (const s of r.expr ?? []) {
    const match = matchOf(s);
    if (match) matches.push(match);
    if ("counter" in s && counter === null && counterName === null) {
      const c = s.counter;
      if (typeof c === "string") {
        counterName = c;
        counter = named.get(counterKey(r.family, r.table, c)) ?? null;
      } else if (v.is(InlineCounter, c)) counter = { packets: c.packets, bytes: c.bytes };
    }
    if (verdict === null) {
      const found = VERDICTS.find((k) => k in s);
      if (found) {
        verdict = found;
        const t = s[found];
        if ((found === "jump" || found === "goto") && v.is(TargetJson, t)) target = t.target;
      } else if (Object.keys(s).some((k) => OTHER_VERDICTS.has(k))) verdict = "other";
    }
  }
  return { family: r.family, table: r.table, chain: r.chain, handle: r.handle, comment: r.comment ?? null, counter, counterName, verdict: verdict ?? "other", target, matches };
}

const CountedElem = v.looseObject({ elem: v.looseObject({ comment: v.string(), counter: InlineCounter }) });

/** A map's elements with a counter and a comment, summed by comment: one block per verdict and target. */
function countedElements(s: v.InferOutput<typeof SetJson>): ElementSums[] {
  const blocks = new Map<string, { verdict: Verdict; target: string | null; sums: Map<string, { packets: number; bytes: number }> }>();
  for (const e of s.elem ?? []) {
    // A map's element is [key, value]; the key carries the counter and the comment.
    if (!Array.isArray(e) || e.length !== 2 || !v.is(CountedElem, e[0])) continue;
    const { comment, counter } = e[0].elem;
    const value = e[1];
    let verdict: Verdict = "other";
    let target: string | null = null;
    if (value !== null && typeof value === "object") {
      const found = VERDICTS.find((k) => k in value);
      if (found) {
        verdict = found;
        const t = (value as Record<string, unknown>)[found];
        if ((found === "jump" || found === "goto") && v.is(TargetJson, t)) target = t.target;
      }
    }
    const key = `${verdict}\u0000${target ?? ""}`;
    let block = blocks.get(key);
    if (!block) blocks.set(key, (block = { verdict, target, sums: new Map() }));
    const sum = block.sums.get(comment);
    if (sum) {
      sum.packets += counter.packets;
      sum.bytes += counter.bytes;
    } else block.sums.set(comment, { packets: counter.packets, bytes: counter.bytes });
  }
  return [...blocks.values()].map((b) => ({ family: s.family, table: s.table, map: s.name, verdict: b.verdict, target: b.target, ...sumColumns(b.sums) }));
}

/** `b`'s sums added into `a`'s (by comment), as a new block with `a`'s verdict and target. */
function mergedSums(a: ElementSums, b: ElementSums): ElementSums {
  const sums = new Map<string, { packets: number; bytes: number }>();
  for (const e of [a, b]) {
    e.comments.forEach((c, i) => {
      const t = sums.get(c) ?? { packets: 0, bytes: 0 };
      t.packets += e.packets[i] as number;
      t.bytes += e.bytes[i] as number;
      sums.set(c, t);
    });
  }
  return { ...a, ...sumColumns(sums) };
}

const counterKey = (family: string, table: string, name: string) => `${family}\u0000${table}\u0000${name}`;

/**
 * Parses the document `nft -j list ruleset` prints. Pure; never throws.
 *
 * @example
 * ```ts
 * import { parseSnapshot } from "./snapshot.ts";
 * const r = parseSnapshot({ nftables: [{ table: { family: "inet", name: "metal", handle: 1 } }] });
 * console.log(r.ok && r.value.tables); // [ { family: "inet", name: "metal" } ]
 * ```
 */
export function parseSnapshot(json: unknown): ParsedSnapshot {
  const doc = v.safeParse(DocumentJson, json);
  if (!doc.success) return { ok: false, message: `nft -j list ruleset: ${describe(doc.issues)}` };
  const tables: SnapshotTable[] = [];
  const chainJson: v.InferOutput<typeof ChainJson>[] = [];
  const ruleJson: RuleJson[] = [];
  const counters: SnapshotCounter[] = [];
  const sets: SnapshotSet[] = [];
  const elements: ElementSums[] = [];
  for (const [i, raw] of doc.output.nftables.entries()) {
    const e = v.safeParse(EntryJson, raw);
    if (!e.success) return { ok: false, message: `nft -j list ruleset: object ${i}: ${describe(e.issues)}` };
    const o = e.output;
    if (o.table) tables.push({ family: o.table.family, name: o.table.name });
    if (o.chain) chainJson.push(o.chain);
    if (o.rule) ruleJson.push(o.rule);
    if (o.counter) counters.push({ family: o.counter.family, table: o.counter.table, name: o.counter.name, packets: o.counter.packets, bytes: o.counter.bytes });
    for (const kind of ["set", "map"] as const) {
      const s = o[kind];
      if (s) sets.push({ family: s.family, table: s.table, name: s.name, kind, elements: s.elem?.length ?? 0 });
      if (s && kind === "map") elements.push(...countedElements(s));
    }
  }
  // Counters are listed before the rules that name them, but resolving after the loop does not depend on it.
  const named = new Map(counters.map((c) => [counterKey(c.family, c.table, c.name), { packets: c.packets, bytes: c.bytes }]));
  const rules = ruleJson.map((r) => ruleOf(r, named));
  const perChain = new Map<string, number>();
  for (const r of rules) {
    const k = counterKey(r.family, r.table, r.chain);
    perChain.set(k, (perChain.get(k) ?? 0) + 1);
  }
  const chains = chainJson.map((c) => ({ family: c.family, table: c.table, name: c.name, handle: c.handle, rules: perChain.get(counterKey(c.family, c.table, c.name)) ?? 0 }));
  // An element that goes to a chain ending in accept (our accept_log) accepts: grouped as such.
  const lastVerdict = new Map<string, Verdict>();
  for (const r of rules) lastVerdict.set(counterKey(r.family, r.table, r.chain), r.verdict);
  // Blocks that resolve to verdicts the exporter does not tell apart (its action label: accept,
  // drop, masquerade, else policy) are one: their series would otherwise share labels.
  const merged = new Map<string, ElementSums>();
  for (const e of elements) {
    const verdict = (e.verdict === "goto" || e.verdict === "jump") && e.target !== null && lastVerdict.get(counterKey(e.family, e.table, e.target)) === "accept" ? "accept" : e.verdict;
    const action = verdict === "accept" || verdict === "drop" || verdict === "masquerade" ? verdict : "policy";
    const key = `${counterKey(e.family, e.table, e.map)}\u0000${action}`;
    const into = merged.get(key);
    merged.set(key, into ? mergedSums(into, e) : { ...e, verdict });
  }
  const resolved = [...merged.values()];
  return { ok: true, value: { tables, chains, rules, counters, sets, ...(resolved.length > 0 ? { elements: resolved } : {}) } };
}

function describe(issues: readonly v.BaseIssue<unknown>[]): string {
  const first = issues[0];
  if (!first) return "unexpected shape";
  const path = first.path?.map((p) => String(p.key)).join(".") ?? "";
  return `${path ? `${path}: ` : ""}${first.message}`;
}

/**
 * Runs `nft -j list ruleset` through `exec` (with the executor's default timeout) and parses it.
 * Throws {@link FirewallError} `nft_unavailable` when nft fails, times out, prints more than
 * {@link MAX_SNAPSHOT_CHARS} or something that is not its JSON.
 *
 * @example
 * ```ts
 * import { runCommand } from "../exec.ts";
 * import { readSnapshot } from "./snapshot.ts";
 * const s = await readSnapshot("nft", runCommand);
 * console.log(s.counters.find((c) => c.name === "drop_total")?.packets);
 * ```
 */
export async function readSnapshot(nftPath: string, exec: Executor, list: readonly string[] = ["ruleset"]): Promise<Snapshot> {
  // `list` narrows the listing (`["counters"]`, `["table", "inet", "metal"]`): the same parser reads any of them.
  const r = await exec([nftPath, "-j", "list", ...list]);
  const what = `${nftPath} -j list ${list.join(" ")}`;
  if (r.code !== 0) throw new FirewallError("nft_unavailable", `${what} failed: ${r.stderr.trim() || `exit ${r.code}`}`);
  if (r.stdout.length > MAX_SNAPSHOT_CHARS) throw new FirewallError("nft_unavailable", `${what} printed ${r.stdout.length} characters, more than the ${MAX_SNAPSHOT_CHARS} read`);
  let json: unknown;
  try {
    // An empty ruleset prints nothing with some nft versions.
    json = r.stdout.trim() === "" ? { nftables: [] } : JSON.parse(r.stdout);
  } catch (e) {
    throw new FirewallError("nft_unavailable", `${what} printed no JSON: ${(e as Error).message}`);
  }
  const parsed = parseSnapshot(json);
  if (!parsed.ok) throw new FirewallError("nft_unavailable", parsed.message);
  return parsed.value;
}
