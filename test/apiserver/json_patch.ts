/**
 * JSON patch (RFC 6902), `application/json-patch+json`: a list of `add`,
 * `remove`, `replace`, `move`, `copy` and `test` operations on JSON pointers
 * (RFC 6901). A failing operation fails the whole patch and changes nothing.
 *
 * @example
 * ```ts
 * import { jsonPatch } from "./json_patch.ts";
 * const r = jsonPatch({ spec: { ports: [80] } }, [
 *   { op: "test", path: "/spec/ports/0", value: 80 },
 *   { op: "add", path: "/spec/ports/-", value: 443 },
 * ]);
 * console.log(r); // { spec: { ports: [80, 443] } }
 * ```
 * @module
 */
import { clone, deepEqual, isRecord } from "./types.ts";

/** Why a patch could not be applied; the server answers 422 with this message (400 for a malformed patch). */
export class JsonPatchError extends Error {
  override readonly name = "JsonPatchError";
  constructor(
    message: string,
    /** The patch document itself is malformed (not an operation failing on this object). */
    readonly malformed = false,
  ) {
    super(message);
  }
}

function parsePointer(pointer: string): string[] {
  if (pointer === "") return [];
  if (!pointer.startsWith("/")) throw new JsonPatchError(`invalid JSON pointer "${pointer}"`, true);
  return pointer
    .slice(1)
    .split("/")
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function arrayIndex(arr: unknown[], token: string, forAdd: boolean, path: string): number {
  if (forAdd && token === "-") return arr.length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new JsonPatchError(`invalid array index "${token}" in "${path}"`);
  const i = Number(token);
  if (i > arr.length || (!forAdd && i === arr.length)) throw new JsonPatchError(`array index ${i} out of bounds in "${path}"`);
  return i;
}

/** The container and last token of a pointer, or throws when the parent is missing. */
function parentOf(doc: unknown, tokens: string[], path: string): { parent: unknown; last: string } {
  let cur = doc;
  for (const t of tokens.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[arrayIndex(cur, t, false, path)];
    else if (isRecord(cur) && Object.hasOwn(cur, t)) cur = cur[t];
    else throw new JsonPatchError(`path "${path}" does not exist`);
  }
  return { parent: cur, last: tokens[tokens.length - 1] ?? "" };
}

function get(doc: unknown, path: string): unknown {
  let cur = doc;
  for (const t of parsePointer(path)) {
    if (Array.isArray(cur)) cur = cur[arrayIndex(cur, t, false, path)];
    else if (isRecord(cur) && Object.hasOwn(cur, t)) cur = cur[t];
    else throw new JsonPatchError(`path "${path}" does not exist`);
  }
  return cur;
}

/** Returns the new document (the root may be replaced). */
function add(doc: unknown, path: string, value: unknown): unknown {
  const tokens = parsePointer(path);
  if (tokens.length === 0) return value;
  const { parent, last } = parentOf(doc, tokens, path);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, true, path), 0, value);
  else if (isRecord(parent)) parent[last] = value;
  else throw new JsonPatchError(`path "${path}" does not exist`);
  return doc;
}

function remove(doc: unknown, path: string): unknown {
  const tokens = parsePointer(path);
  if (tokens.length === 0) throw new JsonPatchError("cannot remove the whole document");
  const { parent, last } = parentOf(doc, tokens, path);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, false, path), 1);
  else if (isRecord(parent) && Object.hasOwn(parent, last)) delete parent[last];
  else throw new JsonPatchError(`path "${path}" does not exist`);
  return doc;
}

/** Applies the operations in order to a copy of `doc`; throws {@link JsonPatchError}. */
export function jsonPatch(doc: unknown, operations: unknown): unknown {
  if (!Array.isArray(operations)) throw new JsonPatchError("a JSON patch must be an array of operations", true);
  let result = clone(doc);
  for (const op of operations) {
    if (!isRecord(op) || typeof op.op !== "string" || typeof op.path !== "string") {
      throw new JsonPatchError(`invalid operation ${JSON.stringify(op)}: needs "op" and "path"`, true);
    }
    const path = op.path;
    const needsValue = op.op === "add" || op.op === "replace" || op.op === "test";
    if (needsValue && !Object.hasOwn(op, "value")) throw new JsonPatchError(`operation "${op.op}" on "${path}" needs "value"`, true);
    const from = typeof op.from === "string" ? op.from : undefined;
    switch (op.op) {
      case "add":
        result = add(result, path, clone(op.value));
        break;
      case "remove":
        result = remove(result, path);
        break;
      case "replace":
        get(result, path); // must exist
        result = parsePointer(path).length === 0 ? clone(op.value) : add(remove(result, path), path, clone(op.value));
        break;
      case "move": {
        if (from === undefined) throw new JsonPatchError(`operation "move" needs "from"`, true);
        if (path.startsWith(`${from}/`)) throw new JsonPatchError(`cannot move "${from}" into its own child "${path}"`);
        const v = get(result, from);
        result = add(remove(result, from), path, v);
        break;
      }
      case "copy": {
        if (from === undefined) throw new JsonPatchError(`operation "copy" needs "from"`, true);
        result = add(result, path, clone(get(result, from)));
        break;
      }
      case "test": {
        const actual = get(result, path);
        if (!deepEqual(actual, op.value)) {
          throw new JsonPatchError(`testing value ${path} failed: have ${JSON.stringify(actual)}, want ${JSON.stringify(op.value)}`);
        }
        break;
      }
      default:
        throw new JsonPatchError(`unknown operation "${op.op}"`, true);
    }
  }
  return result;
}
