/**
 * An in-memory nf_tables for tests: an {@link NftClient} that applies the scripts this program
 * writes to tables held in memory, atomically (a script it refuses changes nothing and moves no
 * generation), and dumps them as canonical text. Applier and controller logic run against it
 * without root; the real-kernel tests stay the truth for what nft and the kernel accept.
 *
 * It understands the nft subset the renderer and the applier produce: `add|flush|delete table`,
 * `table inet T { … }` blocks with counters, sets, maps (with elements) and chains (with rules),
 * `add|delete|flush chain`, `add|delete map|set|counter`, `add|delete element`, `add rule`.
 * Anything else is refused as unsupported. It is stricter than nft in one way (adding an element
 * whose key exists with other data is refused) and looser in another (interval overlaps are not
 * checked: keys are compared as text).
 *
 * @example
 * ```ts
 * import { FakeNft } from "./fake.ts";
 * const nft = new FakeNft();
 * await nft.run("table inet t {\n\tchain c {\n\t\tcounter accept\n\t}\n}\n");
 * console.log(nft.dump("t")); // "table inet t\nchain c\n  counter accept\n"
 * console.log(await nft.generation()); // 1
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import type { CommandResult } from "../exec.ts";
import { FirewallError } from "../errors.ts";
import type { ElementCount, NftClient, TableInventory } from "./client.ts";

interface Element {
  readonly comment: string | null;
  readonly verdict: string | null;
  packets: number;
  bytes: number;
}

interface Table {
  readonly counters: Map<string, { packets: number; bytes: number }>;
  readonly sets: Map<string, { type: string; elements: Map<string, Element> }>;
  readonly maps: Map<string, { type: string; elements: Map<string, Element> }>;
  readonly chains: Map<string, string[]>;
}

/** A refusal, as nft words it (the errno name, then what). */
class Refused extends Error {}

/** A base chain's declaration (type, hook, policy), kept as its first line: flushing keeps it. */
const isBase = (line: string) => line.startsWith("type ");
const flush = (rules: string[]) => rules.splice(rules[0] !== undefined && isBase(rules[0]) ? 1 : 0);

const emptyTable = (): Table => ({ counters: new Map(), sets: new Map(), maps: new Map(), chains: new Map() });

function cloneTable(t: Table): Table {
  const elems = (m: Map<string, Element>) => new Map([...m].map(([k, e]) => [k, { ...e }]));
  return {
    counters: new Map([...t.counters].map(([k, c]) => [k, { ...c }])),
    sets: new Map([...t.sets].map(([k, s]) => [k, { type: s.type, elements: elems(s.elements) }])),
    maps: new Map([...t.maps].map(([k, s]) => [k, { type: s.type, elements: elems(s.elements) }])),
    chains: new Map([...t.chains].map(([k, r]) => [k, [...r]])),
  };
}

/** Splits text into statements at newlines (and `;` when asked) outside braces and quotes; drops `#` comments. */
function statements(text: string, semicolons = false): string[] {
  const out: string[] = [];
  let depth = 0;
  let quoted = false;
  let cur = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quoted) {
      cur += c;
      if (c === '"') quoted = false;
      continue;
    }
    if (c === "#" && depth === 0 && cur.trim() === "") {
      while (i < text.length && text[i] !== "\n") i++;
      continue;
    }
    if (c === '"') quoted = true;
    if (c === "{") depth++;
    if (c === "}") depth--;
    if (depth < 0) throw new Refused("syntax error, unexpected '}'");
    if (depth === 0 && (c === "\n" || (semicolons && c === ";"))) {
      if (cur.trim() !== "") out.push(cur.trim());
      cur = "";
      continue;
    }
    cur += c;
  }
  if (depth !== 0 || quoted) throw new Refused("syntax error, unexpected end of file");
  if (cur.trim() !== "") out.push(cur.trim());
  return out;
}

/** The text between the first `{` and its matching `}` of a statement, and what came before. */
function block(s: string): { head: string; body: string } {
  const open = s.indexOf("{");
  if (open < 0 || !s.endsWith("}")) throw new Refused(`syntax error in ${JSON.stringify(s.slice(0, 80))}`);
  return { head: s.slice(0, open).trim(), body: s.slice(open + 1, -1) };
}

/** Comma-separated items outside braces and quotes. */
function items(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let quoted = false;
  let cur = "";
  for (const c of text) {
    if (quoted) {
      cur += c;
      if (c === '"') quoted = false;
      continue;
    }
    if (c === '"') quoted = true;
    if (c === "{") depth++;
    if (c === "}") depth--;
    if (c === "," && depth === 0) {
      if (cur.trim() !== "") out.push(cur.trim());
      cur = "";
      continue;
    }
    cur += c;
  }
  if (cur.trim() !== "") out.push(cur.trim());
  return out;
}

const ELEMENT = /^(.+?)(?: counter packets (\d+) bytes (\d+))?(?: comment "([^"]*)")?(?: : (.+))?$/;

function element(text: string): { key: string; element: Element } {
  const m = ELEMENT.exec(text.replace(/\s+/g, " ").trim());
  if (!m) throw new Refused(`syntax error in element ${JSON.stringify(text)}`);
  return { key: (m[1] as string).trim(), element: { comment: m[4] ?? null, verdict: m[5]?.trim() ?? null, packets: Number(m[2] ?? 0), bytes: Number(m[3] ?? 0) } };
}

export class FakeNft implements NftClient {
  #tables = new Map<string, Table>();
  #generation = 0;
  /** Every script run, refused ones too, for tests that count transactions. */
  readonly scripts: string[] = [];

  async generation(): Promise<number> {
    return this.#generation;
  }

  /** Someone else commits (any table): the generation moves on, as the kernel's does. */
  commitElsewhere(): void {
    this.#generation++;
  }

  /** Traffic: adds to the counter of one element (tests of counts carried across changes). */
  count(table: string, map: string, key: string, packets: number, bytes: number): void {
    const e = this.#tables.get(table)?.maps.get(map)?.elements.get(key);
    if (!e) throw new Error(`fake nft: no element ${key} in map ${map} of table ${table}`);
    e.packets += packets;
    e.bytes += bytes;
  }

  async run(script: string): Promise<CommandResult> {
    return this.#apply(script, true);
  }

  async check(script: string): Promise<CommandResult> {
    return this.#apply(script, false);
  }

  #apply(script: string, commit: boolean): CommandResult {
    this.scripts.push(script);
    const next = new Map([...this.#tables].map(([k, t]) => [k, cloneTable(t)]));
    try {
      for (const s of statements(script)) this.#statement(next, s);
    } catch (e) {
      if (e instanceof Refused) return { code: 1, stdout: "", stderr: `Error: ${e.message}\n` };
      throw e;
    }
    if (commit) {
      this.#tables = next;
      this.#generation++;
    }
    return { code: 0, stdout: "", stderr: "" };
  }

  #statement(tables: Map<string, Table>, s: string): void {
    const w = s.split(/\s+/);
    const table = (name: string | undefined, create = false): Table => {
      if (w[2] !== "inet" && w[1] !== "inet") throw new Refused(`fake nft: only the inet family is supported: ${s}`);
      let t = tables.get(name ?? "");
      if (!t && create) tables.set(name as string, (t = emptyTable()));
      if (!t) throw new Refused(`No such file or directory; table inet ${name}`);
      return t;
    };
    if (w[0] === "table") {
      const t = table(w[2], true);
      if (s.includes("{")) for (const x of statements(block(s).body)) this.#declare(t, x);
      return;
    }
    const [verb, kind, , tname, name] = w;
    if (kind === "table") {
      if (verb === "add") table(tname, true);
      else if (verb === "flush") {
        const t = table(tname);
        for (const r of t.chains.values()) flush(r);
        for (const x of [...t.sets.values(), ...t.maps.values()]) x.elements.clear();
      } else if (verb === "delete") {
        table(tname);
        tables.delete(tname as string);
      } else throw new Refused(`fake nft: unsupported ${s}`);
      return;
    }
    const t = table(tname);
    const n = name as string;
    switch (`${verb} ${kind}`) {
      case "add chain":
        if (!t.chains.has(n)) t.chains.set(n, []);
        return;
      case "delete chain": {
        const rules = t.chains.get(n);
        if (!rules) throw new Refused(`No such file or directory; chain inet ${tname} ${n}`);
        if (rules.some((r) => !isBase(r)) || this.#referenced(t, new RegExp(`\\b(goto|jump) ${n}$|\\b(goto|jump) ${n}\\b`))) throw new Refused(`Device or resource busy; chain inet ${tname} ${n}`);
        t.chains.delete(n);
        return;
      }
      case "flush chain": {
        const rules = t.chains.get(n);
        if (!rules) throw new Refused(`No such file or directory; chain inet ${tname} ${n}`);
        flush(rules);
        return;
      }
      case "add rule": {
        const rules = t.chains.get(n);
        if (!rules) throw new Refused(`No such file or directory; chain inet ${tname} ${n}`);
        const rule = s.slice(s.indexOf(n, s.indexOf(tname as string) + (tname as string).length) + n.length).trim();
        this.#checkRule(t, rule);
        rules.push(rule);
        return;
      }
      case "add map": {
        if (t.maps.has(n)) return;
        const type = /type ([^:;]+?) : verdict/.exec(block(s).body)?.[1];
        if (!type) throw new Refused(`fake nft: a map needs "type … : verdict": ${s}`);
        t.maps.set(n, { type: type.trim(), elements: new Map() });
        return;
      }
      case "delete map":
      case "delete set": {
        const where = kind === "map" ? t.maps : t.sets;
        if (!where.has(n)) throw new Refused(`No such file or directory; ${kind} inet ${tname} ${n}`);
        if (this.#referenced(t, new RegExp(`@${n}\\b`))) throw new Refused(`Device or resource busy; ${kind} inet ${tname} ${n}`);
        where.delete(n);
        return;
      }
      case "delete counter":
        if (!t.counters.has(n)) throw new Refused(`No such file or directory; counter inet ${tname} ${n}`);
        if (this.#referenced(t, new RegExp(`counter name "${n}"`))) throw new Refused(`Device or resource busy; counter inet ${tname} ${n}`);
        t.counters.delete(n);
        return;
      case "add element":
      case "delete element": {
        const target = t.maps.get(n) ?? t.sets.get(n);
        if (!target) throw new Refused(`No such file or directory; set inet ${tname} ${n}`);
        for (const item of items(block(s).body)) {
          const { key, element: e } = element(item);
          if (verb === "add") this.#addElement(target.elements, key, e, n);
          else if (!target.elements.delete(key)) throw new Refused(`No such file or directory; element ${key} in ${n}`);
        }
        return;
      }
      default:
        throw new Refused(`fake nft: unsupported ${s}`);
    }
  }

  /** A declaration inside `table inet T { … }`. */
  #declare(t: Table, s: string): void {
    const { head, body } = block(s);
    const [kind, name] = head.split(/\s+/) as [string, string];
    if (kind === "counter") {
      if (!t.counters.has(name)) {
        const v = /packets (\d+) bytes (\d+)/.exec(body);
        t.counters.set(name, { packets: Number(v?.[1] ?? 0), bytes: Number(v?.[2] ?? 0) });
      }
      return;
    }
    if (kind === "set" || kind === "map") {
      const parts = statements(body, true);
      const type = parts.find((p) => p.startsWith("type "))?.slice(5).replace(/ : verdict$/, "").trim();
      if (!type) throw new Refused(`fake nft: ${kind} ${name} has no type`);
      const where = kind === "map" ? t.maps : t.sets;
      let x = where.get(name);
      if (!x) where.set(name, (x = { type, elements: new Map() }));
      const elements = parts.find((p) => p.startsWith("elements"));
      if (elements) for (const item of items(block(elements).body)) {
        const { key, element: e } = element(item);
        this.#addElement(x.elements, key, e, name);
      }
      return;
    }
    if (kind === "chain") {
      let rules = t.chains.get(name);
      if (!rules) t.chains.set(name, (rules = []));
      for (const r of statements(body)) {
        // The base chain's declaration (type, hook, policy) is kept as its first line.
        if (isBase(r)) {
          if (!rules.some(isBase)) rules.unshift(r);
          continue;
        }
        this.#checkRule(t, r);
        rules.push(r);
      }
      return;
    }
    throw new Refused(`fake nft: unsupported declaration ${head}`);
  }

  #addElement(elements: Map<string, Element>, key: string, e: Element, set: string): void {
    const had = elements.get(key);
    if (had && (had.verdict !== e.verdict || had.comment !== e.comment)) throw new Refused(`File exists; element ${key} in ${set}`);
    if (!had) elements.set(key, e);
  }

  /** A rule may only name counters, sets and maps that exist (as nft checks). */
  #checkRule(t: Table, rule: string): void {
    for (const m of rule.matchAll(/counter name "([^"]+)"/g)) if (!t.counters.has(m[1] as string)) throw new Refused(`No such file or directory; counter ${m[1]}`);
    for (const m of rule.matchAll(/@([A-Za-z0-9_]+)/g)) if (!t.sets.has(m[1] as string) && !t.maps.has(m[1] as string)) throw new Refused(`No such file or directory; set ${m[1]}`);
  }

  #referenced(t: Table, pattern: RegExp): boolean {
    for (const rules of t.chains.values()) if (rules.some((r) => pattern.test(r))) return true;
    for (const m of t.maps.values()) for (const e of m.elements.values()) if (e.verdict !== null && pattern.test(e.verdict)) return true;
    return false;
  }

  async inventory(table: string): Promise<TableInventory | null> {
    const t = this.#tables.get(table);
    if (!t) return null;
    const inv = { chains: [...t.chains.keys()], sets: [...t.sets.keys()], maps: [...t.maps.keys()] };
    return inv.chains.length + inv.sets.length + inv.maps.length === 0 ? null : inv;
  }

  async counters(table: string): Promise<Map<string, { packets: number; bytes: number }>> {
    return new Map([...(this.#tables.get(table)?.counters ?? new Map())].map(([k, c]) => [k, { ...c }]));
  }

  async elementCounters(table: string, map: string): Promise<readonly ElementCount[]> {
    const m = this.#tables.get(table)?.maps.get(map);
    if (!m) throw new FirewallError("nft_unavailable", `fake nft: no map ${map} in table inet ${table}`);
    return [...m.elements.values()].map((e) => ({ comment: e.comment, packets: e.packets, bytes: e.bytes }));
  }

  async fingerprint(table: string, ignorePrefix: string): Promise<string> {
    return createHash("sha256").update(this.dump(table, { values: false, ignorePrefix })).digest("hex").slice(0, 16);
  }

  async json(args: readonly string[]): Promise<unknown> {
    throw new FirewallError("nft_unavailable", `fake nft: JSON listings are not supported (nft -j ${args.join(" ")})`);
  }

  /**
   * The table as canonical text: objects and elements sorted by name and key (the kernel keeps its
   * own order), chains with their rules in order; counter values unless `values: false`.
   */
  dump(table: string, options: { values?: boolean; ignorePrefix?: string } = {}): string {
    const t = this.#tables.get(table);
    if (!t) return "";
    const values = options.values ?? true;
    const sorted = <T>(m: Map<string, T>) => [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const counted = (e: Element) => (values && (e.packets > 0 || e.bytes > 0) ? ` counter packets ${e.packets} bytes ${e.bytes}` : "");
    const lines = [`table inet ${table}`];
    for (const [name, c] of sorted(t.counters)) lines.push(`counter ${name}${values ? ` packets ${c.packets} bytes ${c.bytes}` : ""}`);
    for (const [kind, where] of [["set", t.sets], ["map", t.maps]] as const) {
      for (const [name, x] of sorted(where)) {
        lines.push(`${kind} ${name} type ${x.type}`);
        for (const [key, e] of sorted(x.elements)) lines.push(`  ${key}${counted(e)}${e.comment === null ? "" : ` comment "${e.comment}"`}${e.verdict === null ? "" : ` : ${e.verdict}`}`);
      }
    }
    for (const [name, rules] of sorted(t.chains)) {
      if (options.ignorePrefix && name.startsWith(options.ignorePrefix)) continue;
      lines.push(`chain ${name}`, ...rules.map((r) => `  ${r}`));
    }
    return `${lines.join("\n")}\n`;
  }
}
