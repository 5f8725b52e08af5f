/**
 * Strategic merge patch, `application/strategic-merge-patch+json`, as far as
 * `kubectl apply` and controllers need it for the built-in kinds served here.
 *
 * Like a JSON merge patch, except that some lists merge element by element by
 * a key (containers by `name`, Service ports by `port`) and that directives
 * steer it: `$patch: replace|delete|merge` on maps and list elements,
 * `$deleteFromPrimitiveList/<field>`, `$retainKeys`. `$setElementOrder/<field>`
 * is accepted and ignored (order of merged lists stays: existing elements in
 * place, new ones appended). Lists without a known merge key are replaced, as
 * in the real implementation for lists without a patch strategy. Custom
 * resources never get here: the server rejects this patch type for them (415),
 * as the real apiserver does.
 *
 * @example
 * ```ts
 * import { strategicMergePatch } from "./strategic_merge_patch.ts";
 * const svc = { spec: { ports: [{ port: 80, name: "http" }, { port: 443, name: "https" }] } };
 * const r = strategicMergePatch(svc, { spec: { ports: [{ port: 443, name: "tls" }] } }, "v1/Service");
 * console.log(r); // { spec: { ports: [{ port: 80, name: "http" }, { port: 443, name: "tls" }] } }
 * ```
 * @module
 */
import { clone, deepEqual, isRecord, type JsonMap } from "./types.ts";

/** How a list at a path merges: by the value of `key` in its elements, or (`key` undefined) as a set of primitives. */
interface ListStrategy {
  readonly key?: string;
}

const metadataLists: Record<string, ListStrategy> = {
  "metadata.ownerReferences": { key: "uid" },
  "metadata.finalizers": {},
};

const podSpec = (prefix: string): Record<string, ListStrategy> => ({
  [`${prefix}.containers`]: { key: "name" },
  [`${prefix}.initContainers`]: { key: "name" },
  [`${prefix}.ephemeralContainers`]: { key: "name" },
  [`${prefix}.volumes`]: { key: "name" },
  [`${prefix}.imagePullSecrets`]: { key: "name" },
  [`${prefix}.hostAliases`]: { key: "ip" },
  [`${prefix}.topologySpreadConstraints`]: { key: "topologyKey" },
  ...Object.fromEntries(
    ["containers", "initContainers", "ephemeralContainers"].flatMap((c) => [
      [`${prefix}.${c}.ports`, { key: "containerPort" }],
      [`${prefix}.${c}.env`, { key: "name" }],
      [`${prefix}.${c}.volumeMounts`, { key: "mountPath" }],
      [`${prefix}.${c}.volumeDevices`, { key: "devicePath" }],
    ]),
  ),
});

/** Merge keys of the built-in kinds, by `apiVersion/Kind`, from their Go struct tags (`patchMergeKey`). */
const STRATEGIES: Record<string, Record<string, ListStrategy>> = {
  "v1/Service": { ...metadataLists, "spec.ports": { key: "port" }, "status.conditions": { key: "type" } },
  "v1/Pod": { ...metadataLists, ...podSpec("spec"), "status.conditions": { key: "type" } },
  "v1/Namespace": { ...metadataLists, "status.conditions": { key: "type" } },
};

const DIRECTIVE = "$patch";

function stripDirectives(v: unknown): unknown {
  if (Array.isArray(v)) return v.filter((x) => !(isRecord(x) && x[DIRECTIVE] !== undefined && Object.keys(x).length === 1)).map(stripDirectives);
  if (!isRecord(v)) return clone(v);
  const out: JsonMap = {};
  for (const [k, x] of Object.entries(v)) {
    if (k === DIRECTIVE || k === "$retainKeys" || k.startsWith("$setElementOrder/") || k.startsWith("$deleteFromPrimitiveList/")) continue;
    out[k] = stripDirectives(x);
  }
  return out;
}

class Merger {
  constructor(private readonly lists: Record<string, ListStrategy>) {}

  /** Merges a map; undefined means the patch deletes it (`$patch: delete`). */
  map(original: JsonMap, patch: JsonMap, path: string): JsonMap | undefined {
    const directive = patch[DIRECTIVE];
    if (directive === "delete") return undefined;
    if (directive === "replace") return stripDirectives(patch) as JsonMap;
    const result = clone(original);
    const retain = patch.$retainKeys;
    if (Array.isArray(retain)) {
      for (const k of Object.keys(result)) if (!retain.includes(k)) delete result[k];
    }
    for (const [k, v] of Object.entries(patch)) {
      if (k === DIRECTIVE || k === "$retainKeys" || k.startsWith("$setElementOrder/")) continue;
      if (k.startsWith("$deleteFromPrimitiveList/")) {
        const field = k.slice("$deleteFromPrimitiveList/".length);
        const current = result[field];
        if (Array.isArray(current) && Array.isArray(v)) result[field] = current.filter((x) => !v.some((d) => deepEqual(d, x)));
        continue;
      }
      const childPath = path === "" ? k : `${path}.${k}`;
      if (v === null) {
        delete result[k];
      } else if (isRecord(v)) {
        const merged = this.map(isRecord(result[k]) ? (result[k] as JsonMap) : {}, v, childPath);
        if (merged === undefined) delete result[k];
        else result[k] = merged;
      } else if (Array.isArray(v)) {
        result[k] = this.list(result[k], v, childPath);
      } else {
        result[k] = v;
      }
    }
    return result;
  }

  list(original: unknown, patch: unknown[], path: string): unknown[] {
    const replace = patch.some((x) => isRecord(x) && x[DIRECTIVE] === "replace");
    const strategy = this.lists[path];
    if (replace || strategy === undefined) return stripDirectives(patch) as unknown[];
    const result = Array.isArray(original) ? clone(original) : [];
    if (strategy.key === undefined) {
      for (const x of patch) if (!result.some((y) => deepEqual(x, y))) result.push(clone(x));
      return result;
    }
    const key = strategy.key;
    let merged = result;
    for (const item of patch) {
      if (!isRecord(item)) continue;
      const id = item[key];
      const at = merged.findIndex((x) => isRecord(x) && deepEqual(x[key], id));
      if (item[DIRECTIVE] === "delete") {
        merged = merged.filter((x) => !(isRecord(x) && deepEqual(x[key], id)));
        continue;
      }
      const existing = merged[at];
      if (at >= 0 && isRecord(existing)) {
        const m = this.map(existing, item, path);
        if (m === undefined) merged.splice(at, 1);
        else merged[at] = m;
      } else {
        const m = this.map({}, item, path);
        if (m !== undefined) merged.push(m);
      }
    }
    return merged;
  }
}

/**
 * Applies a strategic merge patch to `original` (not changed) for the kind
 * named `apiVersion/Kind` (e.g. `v1/Service`). Kinds without merge keys here
 * merge like a JSON merge patch, with directives still honoured.
 */
export function strategicMergePatch(original: JsonMap, patch: JsonMap, apiVersionKind: string): JsonMap {
  const lists = STRATEGIES[apiVersionKind] ?? metadataLists;
  return new Merger(lists).map(original, patch, "") ?? {};
}
