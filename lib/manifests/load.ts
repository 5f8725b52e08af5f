/**
 * Reads Kubernetes objects from a YAML/JSON file or a directory of them
 * (`--manifests`). Which files, and how they are read without stalling, is
 * `files.ts` (regular files only; caps of 16 MiB per file and 64 MiB in all);
 * how their text becomes objects in linear time is `parse.ts` (duplicate keys
 * are errors, as for kubectl; aliases and nesting are bounded). Every error is
 * `input_unreadable` and names the file (and document), escaped.
 *
 * @example
 * ```ts
 * import { loadManifests } from "./load.ts";
 * const objects = await loadManifests("examples/");
 * console.log(objects.map((o) => o.source));
 * ```
 * @module
 */
import { listManifestFiles, ReadBudget, type ReadLimits, readManifestFile } from "./files.ts";
import { parseManifestText, type SourcedObject } from "./parse.ts";

export { parseManifestText, type SourcedObject } from "./parse.ts";
export { MAX_FILE_BYTES, MAX_TOTAL_BYTES, type ReadLimits } from "./files.ts";
export { MAX_ALIAS_NODES, MAX_ALIASES, MAX_DEPTH } from "./parse.ts";

/**
 * Loads every object under `path`, in sorted file order. `limits` lowers the
 * size caps (tests); the defaults are `MAX_FILE_BYTES` and `MAX_TOTAL_BYTES`.
 */
export async function loadManifests(path: string, limits?: ReadLimits): Promise<SourcedObject[]> {
  const budget = new ReadBudget(limits);
  const out: SourcedObject[] = [];
  for (const file of await listManifestFiles(path)) {
    const text = await readManifestFile(file, budget);
    for (const o of parseManifestText(text, file.name)) out.push(o);
  }
  return out;
}
