/**
 * JSON merge patch (RFC 7386), `application/merge-patch+json`: objects merge
 * recursively, `null` deletes a key, anything else (arrays included) replaces.
 *
 * @example
 * ```ts
 * import { mergePatch } from "./merge_patch.ts";
 * console.log(mergePatch({ a: 1, b: { c: 2 } }, { a: null, b: { d: 3 } })); // { b: { c: 2, d: 3 } }
 * ```
 * @module
 */
import { clone, isRecord } from "./types.ts";

/** Applies `patch` to `target` and returns the result; neither argument is changed. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isRecord(patch)) return clone(patch);
  const result = isRecord(target) ? clone(target) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete result[k];
    else result[k] = mergePatch(result[k], v);
  }
  return result;
}
