/**
 * One manifest file's text → the objects in it, in time linear in the text.
 * Multi-document files, `kind: List` expanded, empty documents skipped; each
 * object keeps where it came from (`file#N`, N counted from 0).
 *
 * The yaml library only builds the syntax tree here (with its `uniqueKeys`
 * off: its check compares every key with every other, 11 s for a 40,000-key
 * map, and never ends at 300,000). This module turns the tree into plain
 * values itself, which is where it checks, in one pass:
 * - duplicate keys, with a Set per mapping (kubectl refuses them too: the
 *   later value would silently replace the first);
 * - aliases: at most {@link MAX_ALIASES} per document, and at most
 *   {@link MAX_ALIAS_NODES} nodes reached through them (an "alias bomb" of a
 *   few lines would otherwise expand to billions of nodes for every consumer
 *   that walks the value; the library's own alias resolution also rescans the
 *   document per alias);
 * - nesting: at most {@link MAX_DEPTH} levels, aliases counted as expanded.
 * Every message names the file and the document, escaped (SPEC §8).
 *
 * @example
 * ```ts
 * import { parseManifestText } from "./parse.ts";
 * const objs = parseManifestText("kind: A\nmetadata: {name: a}\n---\nkind: B\n", "x.yaml");
 * console.log(objs.map((o) => o.source)); // ["x.yaml#0", "x.yaml#1"]
 * ```
 * @module
 */
import { type Document, isAlias, isMap, isPair, isScalar, isSeq, LineCounter, type Node, parseAllDocuments } from "yaml";
import { issuePath, show } from "../api/problem.ts";
import { FirewallError } from "../errors.ts";
import { escapeText, groupDigits } from "../escape.ts";

export interface SourcedObject {
  readonly object: unknown;
  /** `file.yaml#2` (the third document), escaped for messages. */
  readonly source: string;
}

/** Aliases (`*name`) allowed in one document; Kubernetes manifests rarely use any. */
export const MAX_ALIASES = 100;
/** Nodes one document may reach through aliases, counted as expanded. */
export const MAX_ALIAS_NODES = 100_000;
/** Nesting levels of one document's value; Kubernetes objects need a few dozen. */
export const MAX_DEPTH = 256;

/** File names in messages are cut only past PATH_MAX, so a real path is always shown whole. */
export const FILE_NAME_MAX = 4096;

const fail = (message: string) => new FirewallError("input_unreadable", message);

/** A converted node: its value, how many nodes it stands for when expanded, and its height. */
interface Converted {
  readonly value: unknown;
  readonly size: number;
  readonly height: number;
}

/** Converts one document's tree to plain values, checking as it goes (see the module doc). */
class DocumentReader {
  readonly #where: string;
  readonly #lines: LineCounter;
  readonly #anchors = new Map<string, Converted>();
  // Anchors whose node is being converted: an alias to one of them would make a cycle.
  readonly #open = new Map<string, number>();
  readonly #path: (string | number)[] = [];
  #aliases = 0;
  #aliasNodes = 0;

  constructor(where: string, lines: LineCounter) {
    this.#where = where;
    this.#lines = lines;
  }

  #at(node: { range?: readonly number[] | null } | null | undefined): string {
    const offset = node?.range?.[0];
    if (offset === undefined) return "";
    const { line, col } = this.#lines.linePos(offset);
    return ` (line ${line}, column ${col})`;
  }

  #here(): string {
    return escapeText(issuePath(this.#path.map((key) => ({ key }))), { max: 200 }) || "the top level";
  }

  #error(message: string): FirewallError {
    return fail(`${this.#where}: ${message}`);
  }

  read(node: unknown): unknown {
    return this.#node(node, 0).value;
  }

  #node(node: unknown, depth: number): Converted {
    if (depth >= MAX_DEPTH) throw this.#error(`nested more than ${MAX_DEPTH} levels deep at ${this.#here()}`);
    if (node === null || node === undefined) return { value: null, size: 1, height: 1 };
    if (isAlias(node)) return this.#alias(node, depth);
    const anchor = (node as Node).anchor;
    if (anchor) this.#open.set(anchor, (this.#open.get(anchor) ?? 0) + 1);
    const out = isScalar(node) ? { value: scalarValue(node.value), size: 1, height: 1 } : isMap(node) ? this.#map(node, depth) : isSeq(node) ? this.#seq(node, depth) : undefined;
    if (!out) throw this.#error(`unsupported YAML node at ${this.#here()}${this.#at(node as Node)}`);
    if (anchor) {
      const n = (this.#open.get(anchor) ?? 1) - 1;
      if (n === 0) this.#open.delete(anchor);
      else this.#open.set(anchor, n);
      // The latest node with a name is the one later aliases mean (YAML 1.2, 3.2.2.2).
      this.#anchors.set(anchor, out);
    }
    return out;
  }

  #alias(node: { source: string; range?: readonly number[] | null }, depth: number): Converted {
    const name = show(node.source, 64);
    if (this.#open.has(node.source)) throw this.#error(`alias *${name} at ${this.#here()}${this.#at(node)} is inside the node it names (a cycle)`);
    const target = this.#anchors.get(node.source);
    if (!target) throw this.#error(`alias *${name} at ${this.#here()}${this.#at(node)} names no anchor before it`);
    if (++this.#aliases > MAX_ALIASES) throw this.#error(`more than ${MAX_ALIASES} aliases${this.#at(node)}; refused (a document that expands this much is an attack, not a manifest)`);
    this.#aliasNodes += target.size;
    if (this.#aliasNodes > MAX_ALIAS_NODES) throw this.#error(`aliases expand to more than ${groupDigits(MAX_ALIAS_NODES)} nodes${this.#at(node)}; refused (a YAML alias bomb?)`);
    if (depth + target.height > MAX_DEPTH) throw this.#error(`nested more than ${MAX_DEPTH} levels deep through alias *${name}${this.#at(node)}`);
    return target;
  }

  #seq(node: { items: unknown[] }, depth: number): Converted {
    const value: unknown[] = [];
    let size = 1;
    let height = 1;
    node.items.forEach((item, i) => {
      this.#path.push(i);
      // A pair inside a sequence (`!!omap`, `!!pairs` in YAML 1.1) becomes a one-key mapping.
      const c = isPair(item) ? this.#map({ items: [item] }, depth + 1) : this.#node(item, depth + 1);
      this.#path.pop();
      value.push(c.value);
      size += c.size;
      if (c.height + 1 > height) height = c.height + 1;
    });
    return { value, size, height };
  }

  #map(node: { items: unknown[] }, depth: number): Converted {
    const value: Record<string, unknown> = {};
    const seen = new Set<string>();
    const merges: Converted[] = [];
    let size = 1;
    let height = 1;
    for (const pair of node.items) {
      if (!isPair(pair)) throw this.#error(`unsupported mapping entry at ${this.#here()}`);
      const keyNode = pair.key as Node | null;
      if (isScalar(keyNode) && typeof keyNode.value === "symbol") {
        // `<<: *base` (a merge key, YAML 1.1 documents): merged below, explicit keys win.
        merges.push(this.#node(pair.value, depth + 1));
        continue;
      }
      if (keyNode !== null && !isScalar(keyNode)) throw this.#error(`a key at ${this.#here()}${this.#at(keyNode)} is a ${isAlias(keyNode) ? "alias" : "collection"}; keys must be strings`);
      const key = keyNode === null || keyNode.value === null || keyNode.value === undefined ? "" : String(scalarValue(keyNode.value));
      if (seen.has(key)) throw this.#error(`duplicate key ${show(key, 64)} in ${this.#here()}${this.#at(keyNode)} (a later value would silently replace the first; remove one)`);
      seen.add(key);
      this.#path.push(key);
      const c = this.#node(pair.value, depth + 1);
      this.#path.pop();
      setKey(value, key, c.value);
      size += c.size;
      if (c.height + 1 > height) height = c.height + 1;
    }
    for (const m of merges) {
      const sources = Array.isArray(m.value) ? m.value : [m.value];
      for (const source of sources) {
        if (typeof source !== "object" || source === null || Array.isArray(source)) throw this.#error(`merge key << at ${this.#here()} needs a mapping or a list of mappings`);
        for (const [k, x] of Object.entries(source)) {
          if (seen.has(k)) continue;
          seen.add(k);
          setKey(value, k, x);
        }
      }
      size += m.size;
      if (m.height + 1 > height) height = m.height + 1;
    }
    return { value, size, height };
  }
}

// `obj["__proto__"] = x` would set the prototype; the key must be an own property, as JSON.parse makes it.
function setKey(obj: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
  else obj[key] = value;
}

/** JSON-like values only: what YAML 1.1 tags build (dates, bytes, big integers) becomes text or a number. */
function scalarValue(x: unknown): unknown {
  if (x === null || typeof x === "string" || typeof x === "number" || typeof x === "boolean") return x;
  if (typeof x === "bigint") return Number(x);
  if (x instanceof Date) return Number.isNaN(x.getTime()) ? String(x) : x.toISOString();
  return String(x);
}

/**
 * Parses one file's text; `file` is the name for messages (escaped here).
 * Syntax errors name the file, document, line and column.
 */
export function parseManifestText(text: string, file: string): SourcedObject[] {
  const name = escapeText(file, { max: FILE_NAME_MAX });
  const lines = new LineCounter();
  let docs: Document.Parsed[];
  try {
    // prettyErrors off: it formats every error with its context (1,000,000 errors: seconds); only the first is shown.
    const parsed = parseAllDocuments(text, { prettyErrors: false, uniqueKeys: false, lineCounter: lines });
    docs = Array.isArray(parsed) ? parsed : [parsed as unknown as Document.Parsed];
  } catch (e) {
    // The library recurses per nesting level: a document nested 100,000 deep ends here (a RangeError).
    throw fail(`${name}: not valid YAML: ${escapeText(e instanceof Error ? e.message : String(e))}`);
  }
  const out: SourcedObject[] = [];
  docs.forEach((doc, i) => {
    const where = `${name}#${i}`;
    const e = doc.errors[0];
    if (e) {
      const { line, col } = lines.linePos(e.pos[0]);
      // The message may quote the input (a tag, an alias name): escaped like any input.
      throw fail(`${where}: not valid YAML: ${escapeText(e.message)} at line ${line}, column ${col}`);
    }
    const value = new DocumentReader(where, lines).read(doc.contents);
    if (value === null || value === undefined) return;
    const list = value as { kind?: unknown; items?: unknown };
    if (list.kind === "List" && Array.isArray(list.items)) {
      list.items.forEach((object, j) => out.push({ object, source: `${where}.items[${j}]` }));
    } else {
      out.push({ object: value, source: where });
    }
  });
  return out;
}
