/**
 * What the real apiserver does with a custom resource's structural schema on
 * every write: drop fields the schema does not know (pruning) and fill in
 * `default`s. Clients of this server therefore see custom resources as they
 * would on a cluster. Validation against the schema is validation.ts's.
 *
 * @example
 * ```ts
 * import { pruneAndDefault } from "./structural.ts";
 * const schema = { type: "object", properties: { spec: { type: "object", properties: {
 *   protocol: { type: "string", default: "TCP" } } } } };
 * console.log(pruneAndDefault({ metadata: { name: "x" }, spec: { junk: 1 } }, schema));
 * // { metadata: { name: "x" }, spec: { protocol: "TCP" } }
 * ```
 *
 * {@link unknownFieldPaths} lists what pruning drops, in the real server's notation
 * (`spec.ingress[0].ports[0].prot`), for `fieldValidation=Strict|Warn`. Fields under an
 * object with `x-kubernetes-preserve-unknown-fields: true` are kept, so they are not unknown.
 * @module
 */
import { clone, isRecord, type JsonMap, type KubeObject } from "./types.ts";

const PRESERVE = "x-kubernetes-preserve-unknown-fields";

function walk(value: unknown, schema: JsonMap): unknown {
  if (Array.isArray(value)) {
    const items = schema.items;
    return isRecord(items) ? value.map((v) => walk(v, items)) : value;
  }
  if (!isRecord(value)) return value;
  const properties = isRecord(schema.properties) ? schema.properties : undefined;
  const additional = schema.additionalProperties;
  const preserve = schema[PRESERVE] === true;
  const out: JsonMap = {};
  for (const [k, v] of Object.entries(value)) {
    const known = properties?.[k];
    if (isRecord(known)) {
      // A null for a non-nullable field is dropped, so the default (if any) applies, as on a cluster.
      if (v === null && known.nullable !== true) continue;
      out[k] = walk(v, known);
    } else if (isRecord(additional)) out[k] = walk(v, additional);
    else if (additional === true || preserve) out[k] = v;
  }
  if (properties) {
    for (const [k, s] of Object.entries(properties)) {
      if (isRecord(s) && s.default !== undefined && out[k] === undefined) out[k] = walk(clone(s.default), s);
    }
  }
  return out;
}

/**
 * Prunes and defaults a custom resource by its version's `openAPIV3Schema`.
 * `apiVersion`, `kind` and `metadata` are the apiserver's and left as they are.
 */
export function pruneAndDefault(object: KubeObject, schema: JsonMap): KubeObject {
  const { apiVersion, kind, metadata, ...rest } = object;
  const body = walk(rest, schema) as JsonMap;
  return { ...(apiVersion !== undefined ? { apiVersion } : {}), ...(kind !== undefined ? { kind } : {}), metadata, ...body };
}

function unknownWalk(value: unknown, schema: JsonMap, path: string, out: string[]): void {
  if (Array.isArray(value)) {
    const items = schema.items;
    if (isRecord(items)) value.forEach((v, i) => unknownWalk(v, items, `${path}[${i}]`, out));
    return;
  }
  if (!isRecord(value)) return;
  const properties = isRecord(schema.properties) ? schema.properties : undefined;
  const additional = schema.additionalProperties;
  const preserve = schema[PRESERVE] === true;
  for (const [k, v] of Object.entries(value)) {
    const at = path === "" ? k : `${path}.${k}`;
    const known = properties?.[k];
    if (isRecord(known)) unknownWalk(v, known, at, out);
    else if (isRecord(additional)) unknownWalk(v, additional, at, out);
    else if (!(additional === true || preserve)) out.push(at);
  }
}

/**
 * The fields of a custom resource that pruning by `schema` drops (`apiVersion`, `kind` and `metadata` aside),
 * as apiextensions-apiserver reports them for strict field validation: `spec.ingress[0].ports[0].prot`.
 */
export function unknownFieldPaths(object: JsonMap, schema: JsonMap): string[] {
  const { apiVersion: _a, kind: _k, metadata: _m, ...rest } = object;
  const out: string[] = [];
  unknownWalk(rest, schema, "", out);
  return out;
}
