/**
 * Reads Kubernetes objects from a YAML/JSON file or a directory of them
 * (`--manifests`): multi-document files, `kind: List` expanded, empty
 * documents skipped. Each object keeps where it came from, for messages.
 *
 * @example
 * ```ts
 * import { loadManifests } from "./load.ts";
 * const objects = await loadManifests("examples/");
 * console.log(objects.map((o) => o.source));
 * ```
 * @module
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { FirewallError } from "../errors.ts";

export interface SourcedObject {
  readonly object: unknown;
  /** `file.yaml#2` (the third document). */
  readonly source: string;
}

const EXTENSIONS = /\.(ya?ml|json)$/i;

async function filesOf(path: string): Promise<string[]> {
  const s = await stat(path).catch((e: NodeJS.ErrnoException) => {
    throw new FirewallError("input_unreadable", `--manifests ${path}: cannot read (${e.code ?? e.message})`);
  });
  if (!s.isDirectory()) return [path];
  const entries = await readdir(path, { withFileTypes: true, recursive: true });
  return entries
    .filter((e) => e.isFile() && EXTENSIONS.test(e.name) && !e.name.startsWith("."))
    .map((e) => join(e.parentPath ?? path, e.name))
    .sort();
}

/** Parses one file's text; YAML errors name the file, line and column. */
export function parseManifestText(text: string, file: string): SourcedObject[] {
  const docs = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: false });
  const out: SourcedObject[] = [];
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((doc, i) => {
    if (doc.errors.length > 0) {
      const e = doc.errors[0];
      throw new FirewallError("input_unreadable", `${file}: document ${i + 1} is not valid YAML: ${e?.message.split("\n")[0]}`);
    }
    const value = doc.toJS({ maxAliasCount: 100 }) as unknown;
    if (value === null || value === undefined) return;
    const items = (value as { kind?: unknown; items?: unknown }).kind === "List" && Array.isArray((value as { items?: unknown }).items)
      ? ((value as { items: unknown[] }).items)
      : [value];
    const isList = items[0] !== value || items.length !== 1;
    items.forEach((object, j) => out.push({ object, source: isList ? `${file}#${i}.items[${j}]` : `${file}#${i}` }));
  });
  return out;
}

/** Loads every object under `path`; unreadable files and YAML syntax errors are `input_unreadable`. */
export async function loadManifests(path: string): Promise<SourcedObject[]> {
  const out: SourcedObject[] = [];
  for (const file of await filesOf(path)) {
    const text = await readFile(file, "utf8").catch((e: NodeJS.ErrnoException) => {
      throw new FirewallError("input_unreadable", `${file}: cannot read (${e.code ?? e.message})`);
    });
    out.push(...parseManifestText(text, file));
  }
  return out;
}
