/**
 * Reads Kubernetes objects from a YAML/JSON file or a directory of them
 * (`--manifests`): multi-document files, `kind: List` expanded, empty
 * documents skipped. Each object keeps where it came from (`file#N`, N counted
 * from 0), for messages. Duplicate keys are errors, as for kubectl.
 *
 * @example
 * ```ts
 * import { loadManifests } from "./load.ts";
 * const objects = await loadManifests("examples/");
 * console.log(objects.map((o) => o.source));
 * ```
 * @module
 */
import { readdir, readFile, realpath, stat } from "node:fs/promises";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { FirewallError } from "../errors.ts";

export interface SourcedObject {
  readonly object: unknown;
  /** `file.yaml#2` (the third document). */
  readonly source: string;
}

const EXTENSIONS = /\.(ya?ml|json)$/i;

const unreadable = (path: string, e: unknown) =>
  new FirewallError("input_unreadable", `${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);

/**
 * The manifest files under `path`, sorted. Symlinks are followed (a ConfigMap
 * volume is all symlinks), hidden entries are skipped (a ConfigMap volume's
 * `..data` would give every object twice), and a directory reached twice
 * (a symlink loop) is read once.
 */
async function filesOf(path: string): Promise<string[]> {
  const s = await stat(path).catch((e) => {
    throw unreadable(path, e);
  });
  if (!s.isDirectory()) return [path];
  const out: string[] = [];
  const seen = new Set<string>();
  const walk = async (dir: string): Promise<void> => {
    const real = await realpath(dir).catch((e) => {
      throw unreadable(dir, e);
    });
    if (seen.has(real)) return;
    seen.add(real);
    const names = (await readdir(dir).catch((e) => {
      throw unreadable(dir, e);
    })).sort();
    for (const name of names) {
      if (name.startsWith(".")) continue;
      const full = join(dir, name);
      const st = await stat(full).catch((e) => {
        throw unreadable(full, e);
      });
      if (st.isDirectory()) await walk(full);
      else if (st.isFile() && EXTENSIONS.test(name)) out.push(full);
    }
  };
  await walk(path);
  return out;
}

/** Parses one file's text; YAML errors name the file, line and column. */
export function parseManifestText(text: string, file: string): SourcedObject[] {
  const docs = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: true });
  const out: SourcedObject[] = [];
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((doc, i) => {
    if (doc.errors.length > 0) {
      const e = doc.errors[0];
      throw new FirewallError("input_unreadable", `${file}#${i}: not valid YAML: ${e?.message.split("\n")[0]}`);
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
    const text = await readFile(file, "utf8").catch((e) => {
      throw unreadable(file, e);
    });
    out.push(...parseManifestText(text, file));
  }
  return out;
}
