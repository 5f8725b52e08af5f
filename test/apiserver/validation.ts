/**
 * Validation of custom resources against their CRD version's structural
 * schema, as the real apiextensions-apiserver does after pruning and
 * defaulting: first the OpenAPI v3 keywords (kube-openapi), then, unless one
 * of those errors is "blocking", the CEL rules (`x-kubernetes-validations`).
 *
 * OpenAPI: `type` (and `nullable`, `x-kubernetes-int-or-string`), `enum`,
 * `required`, `minimum`/`maximum` (+ `exclusiveMinimum`/`exclusiveMaximum`),
 * `multipleOf`, `minLength`/`maxLength` (in characters), `pattern`,
 * `minItems`/`maxItems`, `uniqueItems`, `minProperties`/`maxProperties`,
 * `format` (`date-time`, `date`, `ipv4`, `ipv6`, `cidr`, `uuid`; the integer
 * formats `int32`/`int64` are not checked, as on a cluster), duplicate keys of
 * `x-kubernetes-list-type: map|set` lists. `metadata` is not checked here
 * (the REST layer checks names). Messages and causes are worded as the real
 * ones (`spec.x: Invalid value: 0: spec.x in body should be greater than or
 * equal to 1`, `Unsupported value: "ICMP": supported values: "TCP", ...`,
 * `Required value`, `Too long: may not be more than 64 bytes`, `Too many: 33:
 * must have at most 32 items`).
 *
 * CEL: each rule is compiled once, when the CRD is registered
 * ({@link compileSchema}); a rule that does not compile makes the CRD
 * invalid. `self` is the value typed by its schema (integers are CEL `int`,
 * `date-time` strings are timestamps, the root sees `apiVersion`, `kind`,
 * `metadata.name` and `metadata.generateName`). A false rule is reported at
 * its node (plus `fieldPath`) with the node's *type* as the value, exactly as
 * the real server does: `spec.egress[0].to[0].cidr: Invalid value: "string":
 * <message>`; `messageExpression` replaces `message` when it evaluates to a
 * non-empty single-line string; `reason` picks FieldValueForbidden/Required/
 * Duplicate. Rules that use `oldSelf` (transition rules) run only on updates
 * and only where an old value correlates (object properties, `map` list
 * entries by key, `set` list entries by value), as on a cluster.
 *
 * Ratcheting (CRDValidationRatcheting, on by default since 1.30): on an
 * update, a correlated subtree that did not change is not validated again, so
 * a `/status` write is checked on its status part and an object stored
 * before a stricter schema can still be written. Simplification: rules using
 * `oldSelf` inside an unchanged subtree are skipped too (a cluster runs them).
 * Not done: CEL cost budgets, `optionalOldSelf`, `allOf`/`anyOf`/`oneOf`/`not`.
 *
 * @example
 * ```ts
 * import { compileSchema } from "./validation.ts";
 * const v = compileSchema({ type: "object", properties: { spec: { type: "object", properties: {
 *   port: { type: "integer", minimum: 1, "x-kubernetes-validations": [{ rule: "self != 22", message: "not ssh" }] } } } } });
 * console.log(v.validate({ metadata: { name: "x" }, spec: { port: 22 } }));
 * // [{ reason: "FieldValueInvalid", field: "spec.port", message: 'Invalid value: "integer": not ssh' }]
 * ```
 * @module
 */
import { Environment } from "@marcbachmann/cel-js";
import { parseCIDR, parseIP, registerNetLibrary } from "./cel_net.ts";
import type { StatusCause } from "./status.ts";
import { deepEqual, isRecord, type JsonMap, type KubeObject } from "./types.ts";

/** The CEL environment: standard library, macros, and the Kubernetes IP/CIDR library. Built once per process. */
const celEnv: Environment = registerNetLibrary(new Environment({ homogeneousAggregateLiterals: false }))
  .registerVariable("self", "dyn")
  .registerVariable("oldSelf", "dyn");

type Program = (context: Record<string, unknown>) => unknown;

interface CompiledRule {
  readonly rule: string;
  readonly program: Program;
  readonly message?: string;
  readonly messageExpression?: Program;
  readonly fieldPath: readonly string[];
  readonly reason?: string;
  readonly usesOldSelf: boolean;
}

/** A schema node with its rules compiled and its children resolved. */
interface Node {
  readonly schema: JsonMap;
  readonly type?: string;
  readonly properties: ReadonlyMap<string, Node>;
  readonly additional?: Node;
  readonly items?: Node;
  readonly rules: readonly CompiledRule[];
  readonly pattern?: RegExp;
}

/** A rule that did not compile, with the path of the rule in the CRD's schema (e.g. `properties[spec]...x-kubernetes-validations[0].rule`). */
export interface RuleCompileError {
  readonly path: string;
  readonly rule: string;
  readonly message: string;
}

export interface CompiledSchema {
  /** Errors of the object (nothing when valid). `old` is the stored object on updates (enables transition rules and ratcheting). */
  validate(object: KubeObject, old?: KubeObject): StatusCause[];
}

export class SchemaCompileError extends Error {
  override readonly name = "SchemaCompileError";
  constructor(readonly errors: readonly RuleCompileError[]) {
    super(errors.map((e) => `${e.path}: ${e.message}`).join("; "));
  }
}

const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === "number" ? v : undefined);

/** Parses a CEL expression once; throws with the library's message when it does not parse or type-check. */
function compileExpression(source: string, self?: Node, root = false): Program {
  compileCount++;
  const checked = celEnv.check(source);
  if (!checked.valid) throw new Error(checked.error?.message.split("\n")[0] ?? "invalid expression");
  const parsed = celEnv.parse(source) as unknown as Program & { ast: AstNode };
  if (self) checkSchemaTypes(parsed.ast, self, root);
  return parsed;
}

// ---------------------------------------------------------------------------
// What the real compiler refuses because `self` is typed by its schema (cel-js here sees `self` as dyn).
// apiextensions' SchemaDeclType makes an object with properties (or none) a CEL *object* type whose fields are
// the declared properties, whatever x-kubernetes-preserve-unknown-fields says, and only an additionalProperties
// object a map. So, on a path from `self`/`oldSelf` (through fields, indexes and comprehension variables):
// - a comprehension (all, exists, exists_one, filter, map) over an object is refused: "expression of type
//   'object' cannot be range of a comprehension (must be list, map, or dynamic)";
// - selecting or has()-testing a field an object does not declare is refused: "undefined field 'x'".
// Anything the walk cannot type (int-or-string, function results, ...) is dyn and not checked, as on a cluster.

interface AstNode {
  readonly op: string;
  readonly args: unknown;
  readonly pos?: number;
}

const isAst = (x: unknown): x is AstNode => isRecord(x) && typeof x.op === "string";
const COMPREHENSIONS = new Set(["all", "exists", "exists_one", "filter", "map"]);
/** What the root of a resource always declares (WithTypeAndObjectMeta). */
const ROOT_FIELDS = new Set(["apiVersion", "kind", "metadata"]);

type Typed = { readonly node: Node; readonly root: boolean } | undefined;

const isMap = (n: Node) => n.additional !== undefined;
const isObject = (n: Node) => !isMap(n) && (n.type === "object" || (n.type === undefined && n.properties.size > 0));

function checkSchemaTypes(ast: AstNode, self: Node, root: boolean): void {
  const fail = (n: AstNode, message: string): never => {
    throw new Error(`ERROR: <input>:1:${(n.pos ?? 0) + 1}: ${message}`);
  };
  const field = (n: AstNode, t: Typed, name: string): Typed => {
    if (!t) return undefined;
    if (isMap(t.node)) return t.node.additional ? { node: t.node.additional, root: false } : undefined;
    if (!isObject(t.node)) return undefined;
    const sub = t.node.properties.get(name);
    if (sub) return t.root && name === "metadata" ? undefined : { node: sub, root: false };
    if (t.root && ROOT_FIELDS.has(name)) return undefined;
    return fail(n, `undefined field '${name}'`);
  };
  const walk = (n: unknown, scope: ReadonlyMap<string, Typed>): Typed => {
    if (Array.isArray(n)) {
      for (const x of n) walk(x, scope);
      return undefined;
    }
    if (!isAst(n)) return undefined;
    const a = n.args;
    switch (n.op) {
      case "id":
        return typeof a === "string" ? scope.get(a) : undefined;
      case ".":
      case ".?": {
        const [recv, name] = a as [AstNode, string];
        return field(n, walk(recv, scope), name);
      }
      case "[]":
      case "[?]": {
        const [recv, idx] = a as [AstNode, AstNode];
        const t = walk(recv, scope);
        walk(idx, scope);
        if (!t) return undefined;
        if (t.node.type === "array" && t.node.items) return { node: t.node.items, root: false };
        if (isMap(t.node) && t.node.additional) return { node: t.node.additional, root: false };
        return undefined;
      }
      case "call": {
        const [name, args] = a as [string, AstNode[]];
        // has(x.f): f must be a declared field of x's object type.
        if (name === "has" && args.length === 1 && isAst(args[0]) && args[0].op === ".") {
          walk(args[0], scope);
          return undefined;
        }
        walk(args, scope);
        return undefined;
      }
      case "rcall": {
        const [name, recv, args] = a as [string, AstNode, AstNode[]];
        const t = walk(recv, scope);
        const v = args[0];
        if (COMPREHENSIONS.has(name) && isAst(v) && v.op === "id" && typeof v.args === "string") {
          if (t && isObject(t.node)) fail(recv, "expression of type 'object' cannot be range of a comprehension (must be list, map, or dynamic)");
          // A list's variable is its item; a map's variable is a key (a string).
          const bound: Typed = t && t.node.type === "array" && t.node.items ? { node: t.node.items, root: false } : undefined;
          const inner = new Map(scope).set(v.args, bound);
          for (const x of args.slice(1)) walk(x, inner);
          return undefined;
        }
        walk(args, scope);
        return undefined;
      }
      default:
        walk(a, scope);
        return undefined;
    }
  };
  const top: Typed = { node: self, root };
  walk(ast, new Map([["self", top], ["oldSelf", top]]));
}

/** `.a.b` or `.a['b']` of a rule's fieldPath, as path segments. */
function parseFieldPath(p: string): string[] {
  const out: string[] = [];
  const re = /\.([^.[\]]+)|\['((?:[^'\\]|\\.)*)'\]/gy;
  let m: RegExpExecArray | null;
  let at = 0;
  while ((m = re.exec(p)) !== null) {
    out.push(m[1] ?? (m[2] ?? "").replace(/\\(.)/g, "$1"));
    at = re.lastIndex;
  }
  if (at !== p.length || out.length === 0) throw new Error(`fieldPath ${JSON.stringify(p)} is not a valid JSON path (.a.b or .a['b'])`);
  return out;
}

function compileNode(schema: JsonMap, path: string, errors: RuleCompileError[], root = false): Node {
  const properties = new Map<string, Node>();
  if (isRecord(schema.properties)) {
    for (const [k, v] of Object.entries(schema.properties)) if (isRecord(v)) properties.set(k, compileNode(v, `${path}.properties[${k}]`, errors));
  }
  const additional = isRecord(schema.additionalProperties) ? compileNode(schema.additionalProperties, `${path}.additionalProperties`, errors) : undefined;
  const items = isRecord(schema.items) ? compileNode(schema.items, `${path}.items`, errors) : undefined;
  const rules: CompiledRule[] = [];
  const pattern = str(schema.pattern);
  const node: Node = {
    schema,
    ...(str(schema.type) !== undefined ? { type: str(schema.type) } : {}),
    properties,
    ...(additional ? { additional } : {}),
    ...(items ? { items } : {}),
    rules,
    // OpenAPI patterns are ECMA 262 regular expressions; "u" so that µ counts as one character.
    ...(pattern !== undefined ? { pattern: new RegExp(pattern, "u") } : {}),
  };
  const list = Array.isArray(schema["x-kubernetes-validations"]) ? schema["x-kubernetes-validations"] : [];
  for (const [i, r] of list.entries()) {
    if (!isRecord(r)) continue;
    const rule = str(r.rule) ?? "";
    const at = `${path}.x-kubernetes-validations[${i}]`;
    try {
      const message = str(r.message);
      const messageExpression = str(r.messageExpression);
      const fieldPath = str(r.fieldPath);
      const reason = str(r.reason);
      rules.push({
        rule,
        program: compileExpression(rule, node, root),
        ...(message !== undefined ? { message } : {}),
        ...(messageExpression !== undefined ? { messageExpression: compileExpression(messageExpression, node, root) } : {}),
        fieldPath: fieldPath ? parseFieldPath(fieldPath) : [],
        ...(reason !== undefined ? { reason } : {}),
        usesOldSelf: /\boldSelf\b/.test(rule),
      });
    } catch (e) {
      errors.push({ path: `${at}.rule`, rule, message: `compilation failed: ${e instanceof Error ? e.message : String(e)}` });
    }
  }
  return node;
}

/**
 * Compiles a CRD version's `openAPIV3Schema`: resolves the tree and compiles
 * every CEL rule once. Throws {@link SchemaCompileError} listing rules that do
 * not compile.
 */
export function compileSchema(schema: JsonMap): CompiledSchema {
  // A CRD write both checks (crd.ts validateCrd) and registers its schemas: compile each distinct schema once.
  const key = JSON.stringify(schema);
  let compiled = compiledSchemas.get(key);
  if (!compiled) {
    const errors: RuleCompileError[] = [];
    const root = compileNode(schema, "openAPIV3Schema", errors, true);
    compiled = errors.length > 0 ? new SchemaCompileError(errors) : { validate: (object, old) => validateObject(root, object, old) };
    if (compiledSchemas.size >= 256) compiledSchemas.clear();
    compiledSchemas.set(key, compiled);
  }
  if (compiled instanceof SchemaCompileError) throw compiled;
  return compiled;
}

const compiledSchemas = new Map<string, CompiledSchema | SchemaCompileError>();

/** How many CEL expressions have been compiled in this process (tests check that requests compile none). */
export function celCompilations(): number {
  return compileCount;
}

let compileCount = 0;

// ---------------------------------------------------------------------------
// Paths and messages, as k8s.io/apimachinery's field.Path and field.Error print them.

type Path = readonly string[];
const child = (p: Path, name: string): Path => [...p, p.length === 0 ? name : `.${name}`];
const index = (p: Path, i: number | string): Path => [...p, `[${i}]`];
const show = (p: Path): string => (p.length === 0 ? "<nil>" : p.join(""));

/** Go's `%#v` of a JSON value (used for non-scalar bad values). */
function goSyntax(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (v === null || v === undefined) return "interface {}(nil)";
  if (Array.isArray(v)) return `[]interface {}{${v.map(goSyntax).join(", ")}}`;
  if (isRecord(v)) {
    return `map[string]interface {}{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${goSyntax(v[k])}`)
      .join(", ")}}`;
  }
  return String(v);
}

/** `field.Error.ErrorBody()`'s rendering of a bad value. */
function badValue(v: unknown): string {
  if (v === null || v === undefined) return '"null"';
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return String(v);
  return goSyntax(v);
}

type Cause = StatusCause & { readonly blocking: boolean };

const cause = (reason: string, path: Path, message: string, blocking = false): Cause => ({ reason, field: show(path), message, blocking });
const invalid = (path: Path, value: unknown, detail: string) => cause("FieldValueInvalid", path, `Invalid value: ${badValue(value)}: ${detail}`);
const typeInvalid = (path: Path, value: unknown, detail: string) => cause("FieldValueTypeInvalid", path, `Invalid value: ${badValue(value)}: ${detail}`, true);

// ---------------------------------------------------------------------------
// OpenAPI keywords (kube-openapi's validators, converted to field errors by apiextensions-apiserver).

/** The JSON type name kube-openapi reports for a value. */
function jsonType(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  if (typeof v === "boolean") return "boolean";
  if (typeof v === "string") return "string";
  return "object";
}

function succeeds(f: () => unknown): boolean {
  try {
    f();
    return true;
  } catch {
    return false;
  }
}

const FORMATS: Record<string, (s: string) => boolean> = {
  "date-time": (s) => /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.test(s) && !Number.isNaN(Date.parse(s.replace(" ", "T"))),
  date: (s) => /^\d{4}-\d{2}-\d{2}$/.test(s) && !Number.isNaN(Date.parse(s)),
  ipv4: (s) => /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/.test(s),
  ipv6: (s) => s.includes(":") && succeeds(() => parseIP(s)),
  cidr: (s) => succeeds(() => parseCIDR(s)),
  uuid: (s) => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s),
};

function schemaErrors(node: Node, value: unknown, old: unknown, hasOld: boolean, path: Path, out: Cause[]): void {
  // Ratcheting: an unchanged, correlated value is not validated again.
  if (hasOld && deepEqual(value, old)) return;
  const s = node.schema;
  const name = path.join("");
  if (value === null) {
    if (s.nullable !== true && node.type !== undefined) out.push(typeInvalid(path, "null", `${name} in body must be of type ${node.type}: "null"`));
    return;
  }
  const actual = jsonType(value);
  if (s["x-kubernetes-int-or-string"] === true) {
    if (actual !== "integer" && actual !== "string") out.push(typeInvalid(path, actual, `${name} in body must be of type integer,string: ${JSON.stringify(actual)}`));
  } else if (node.type !== undefined && node.type !== actual && !(node.type === "number" && actual === "integer")) {
    out.push(typeInvalid(path, actual, `${name} in body must be of type ${node.type}: ${JSON.stringify(actual)}`));
    return;
  }
  if (typeof value === "string") {
    const format = str(s.format);
    const check = format !== undefined ? FORMATS[format] : undefined;
    if (check && !check(value)) out.push(typeInvalid(path, value, `${name} in body must be of type ${format}: ${JSON.stringify(value)}`));
    const length = [...value].length;
    const maxLength = num(s.maxLength);
    if (maxLength !== undefined && length > maxLength) {
      out.push(cause("FieldValueTooLong", path, `Too long: may not be more than ${maxLength} byte${maxLength === 1 ? "" : "s"}`, true));
    }
    const minLength = num(s.minLength);
    if (minLength !== undefined && length < minLength) out.push(invalid(path, value, `${name} in body should be at least ${minLength} chars long`));
    if (node.pattern && !node.pattern.test(value)) out.push(invalid(path, value, `${name} in body should match '${String(s.pattern)}'`));
  }
  if (typeof value === "number") {
    const multipleOf = num(s.multipleOf);
    if (multipleOf !== undefined && multipleOf > 0 && !Number.isInteger(value / multipleOf)) out.push(invalid(path, value, `${name} in body should be a multiple of ${multipleOf}`));
    const maximum = num(s.maximum);
    if (maximum !== undefined && (s.exclusiveMaximum === true ? value >= maximum : value > maximum)) {
      out.push(invalid(path, value, `${name} in body should be less than ${s.exclusiveMaximum === true ? "" : "or equal to "}${maximum}`));
    }
    const minimum = num(s.minimum);
    if (minimum !== undefined && (s.exclusiveMinimum === true ? value <= minimum : value < minimum)) {
      out.push(invalid(path, value, `${name} in body should be greater than ${s.exclusiveMinimum === true ? "" : "or equal to "}${minimum}`));
    }
  }
  if (Array.isArray(s.enum) && !s.enum.some((e) => deepEqual(e, value))) {
    const supported = s.enum.map((e) => JSON.stringify(typeof e === "string" ? e : JSON.stringify(e))).join(", ");
    out.push(cause("FieldValueNotSupported", path, `Unsupported value: ${badValue(value)}: supported values: ${supported}`, true));
  }
  if (Array.isArray(value)) arrayErrors(node, value, old, hasOld, path, out);
  else if (isRecord(value)) objectErrors(node, value, old, hasOld, path, out);
}

/** The old list entry that correlates with `item` (map lists by their keys, set lists by value), if any. */
function correlate(node: Node, item: unknown, old: unknown): { found: boolean; value?: unknown } {
  if (!Array.isArray(old)) return { found: false };
  const listType = node.schema["x-kubernetes-list-type"];
  if (listType === "set") return old.some((o) => deepEqual(o, item)) ? { found: true, value: item } : { found: false };
  if (listType !== "map" || !isRecord(item)) return { found: false };
  const keys = Array.isArray(node.schema["x-kubernetes-list-map-keys"]) ? node.schema["x-kubernetes-list-map-keys"].filter((k): k is string => typeof k === "string") : [];
  const match = old.find((o) => isRecord(o) && keys.every((k) => deepEqual(o[k], item[k])));
  return match === undefined ? { found: false } : { found: true, value: match };
}

function arrayErrors(node: Node, value: unknown[], old: unknown, hasOld: boolean, path: Path, out: Cause[]): void {
  const s = node.schema;
  if (node.items) {
    for (const [i, item] of value.entries()) {
      const c = hasOld ? correlate(node, item, old) : { found: false };
      schemaErrors(node.items, item, c.value, c.found, index(path, i), out);
    }
  }
  const name = path.join("");
  const minItems = num(s.minItems);
  if (minItems !== undefined && value.length < minItems) out.push(invalid(path, value.length, `${name} in body should have at least ${minItems} items`));
  const maxItems = num(s.maxItems);
  if (maxItems !== undefined && value.length > maxItems) {
    out.push(cause("FieldValueTooMany", path, `Too many: ${value.length}: must have at most ${maxItems} item${maxItems === 1 ? "" : "s"}`, true));
  }
  if (s.uniqueItems === true && value.some((v, i) => value.findIndex((w) => deepEqual(v, w)) !== i)) out.push(invalid(path, "", `${name} in body shouldn't contain duplicates`));
  // structurallisttype.ValidateListSetsAndMaps: entries of map lists are unique by key, of set lists by value.
  const listType = s["x-kubernetes-list-type"];
  if (listType === "map" || listType === "set") {
    const keys = Array.isArray(s["x-kubernetes-list-map-keys"]) ? s["x-kubernetes-list-map-keys"].filter((k): k is string => typeof k === "string") : [];
    const seen: unknown[] = [];
    for (const [i, item] of value.entries()) {
      const key = listType === "map" && isRecord(item) ? Object.fromEntries(keys.filter((k) => item[k] !== undefined).map((k) => [k, item[k]])) : item;
      if (seen.some((k) => deepEqual(k, key))) out.push(cause("FieldValueDuplicate", index(path, i), `Duplicate value: ${badValue(key)}`));
      else seen.push(key);
    }
  }
}

function objectErrors(node: Node, value: JsonMap, old: unknown, hasOld: boolean, path: Path, out: Cause[]): void {
  const s = node.schema;
  const name = path.join("");
  const count = Object.keys(value).length;
  const minProperties = num(s.minProperties);
  if (minProperties !== undefined && count < minProperties) out.push(invalid(path, minProperties, `${name} in body should have at least ${minProperties} properties`));
  const maxProperties = num(s.maxProperties);
  if (maxProperties !== undefined && count > maxProperties) {
    out.push(cause("FieldValueTooMany", path, `Too many: ${maxProperties}: must have at most ${maxProperties} item${maxProperties === 1 ? "" : "s"}`, true));
  }
  const required = Array.isArray(s.required) ? s.required.filter((k): k is string => typeof k === "string") : [];
  for (const k of required) if (value[k] === undefined) out.push(cause("FieldValueRequired", child(path, k), "Required value", true));
  const oldMap = hasOld && isRecord(old) ? old : undefined;
  for (const [k, v] of Object.entries(value)) {
    // The apiserver checks metadata itself (names, labels), not through the schema.
    if (path.length === 0 && (k === "metadata" || k === "apiVersion" || k === "kind")) continue;
    const sub = node.properties.get(k) ?? node.additional;
    if (!sub) continue;
    const p = node.properties.has(k) ? child(path, k) : index(path, k);
    schemaErrors(sub, v, oldMap?.[k], oldMap !== undefined && Object.hasOwn(oldMap, k), p, out);
  }
}

// ---------------------------------------------------------------------------
// CEL rules.

/** A JSON value as CEL sees it under its schema: integers are `int` (BigInt), date-time strings timestamps. */
function toCel(value: unknown, node: Node | undefined, root = false): unknown {
  if (value === null || value === undefined) return null;
  if (typeof value === "number") {
    if (node?.type === "number") return value;
    return Number.isInteger(value) ? BigInt(value) : value;
  }
  if (typeof value === "string") {
    if (node?.schema.format === "date-time" || node?.schema.format === "date") {
      const d = new Date(value);
      return Number.isNaN(d.getTime()) ? value : d;
    }
    return value;
  }
  if (Array.isArray(value)) return value.map((v) => toCel(v, node?.items));
  if (isRecord(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (root && ROOT_FIELDS.has(k)) out[k] = k === "metadata" ? v : toCel(v, node?.properties.get(k));
      else if (node?.additional) out[k] = toCel(v, node.additional);
      else if (!node || !isObject(node)) out[k] = toCel(v, undefined);
      else {
        // Only declared fields are visible: unknown fields kept by x-kubernetes-preserve-unknown-fields are not
        // accessible in CEL, nor are fields of an "unknown type" (no type, preserve-unknown-fields).
        const sub = node.properties.get(k);
        if (sub && (sub.type !== undefined || sub.schema["x-kubernetes-int-or-string"] === true)) out[k] = toCel(v, sub);
      }
    }
    return out;
  }
  return value;
}

/** The root `self`: the object with metadata reduced to what Kubernetes exposes to CEL (name, generateName). */
function rootView(object: KubeObject): JsonMap {
  const { metadata, ...rest } = object;
  const meta: JsonMap = {};
  if (metadata.name !== undefined) meta.name = metadata.name;
  if (metadata.generateName !== undefined) meta.generateName = metadata.generateName;
  return { ...rest, metadata: meta };
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0] ?? "";
}

function ruleErrorString(r: CompiledRule): string {
  return r.message !== undefined && r.message.trim() !== "" ? r.message.trim() : r.rule.trim();
}

function ruleErrors(node: Node, value: unknown, old: unknown, hasOld: boolean, path: Path, out: Cause[]): void {
  if (value === null || value === undefined) return;
  if (hasOld && deepEqual(value, old)) return;
  const typeName = node.type ?? (node.schema["x-kubernetes-int-or-string"] === true ? "" : "object");
  if (node.rules.length > 0) {
    const top = path.length === 0;
    const context = { self: toCel(value, node, top), ...(hasOld ? { oldSelf: toCel(old, node, top) } : {}) };
    for (const r of node.rules) {
      if (r.usesOldSelf && !hasOld) continue; // transition rules need a correlated old value
      let result: unknown;
      try {
        result = r.program(context);
      } catch (e) {
        const msg = firstLine(e);
        out.push(invalid(path, typeName, msg.startsWith("no such overload") ? `'${msg}': call arguments did not match a supported operator, function or macro signature for rule: ${ruleErrorString(r)}` : `${msg} evaluating rule: ${ruleErrorString(r)}`));
        continue;
      }
      if (result === true) continue;
      const at = r.fieldPath.reduce((p, seg) => child(p, seg), path);
      let detail: string | undefined;
      if (r.messageExpression) {
        try {
          const m = r.messageExpression(context);
          if (typeof m === "string" && m.trim() !== "" && !/[\r\n]/.test(m.trim())) detail = m.trim();
        } catch {
          // As on a cluster: a failing messageExpression falls back to message (the apiserver only logs it).
        }
      }
      detail ??= r.message !== undefined && r.message.trim() !== "" ? r.message.trim() : `failed rule: ${r.rule.trim()}`;
      switch (r.reason) {
        case "FieldValueForbidden":
          out.push(cause("FieldValueForbidden", at, `Forbidden: ${detail}`));
          break;
        case "FieldValueRequired":
          out.push(cause("FieldValueRequired", at, `Required value: ${detail}`));
          break;
        case "FieldValueDuplicate":
          out.push(cause("FieldValueDuplicate", at, `Duplicate value: ${JSON.stringify(typeName)}`));
          break;
        default:
          out.push(invalid(at, typeName, detail));
      }
    }
  }
  if (Array.isArray(value) && node.items) {
    for (const [i, item] of value.entries()) {
      const c = hasOld ? correlate(node, item, old) : { found: false };
      ruleErrors(node.items, item, c.value, c.found, index(path, i), out);
    }
  } else if (isRecord(value)) {
    const oldMap = hasOld && isRecord(old) ? old : undefined;
    for (const [k, v] of Object.entries(value)) {
      if (path.length === 0 && k === "metadata") continue;
      const sub = node.properties.get(k) ?? node.additional;
      if (!sub) continue;
      const p = node.properties.has(k) ? child(path, k) : index(path, k);
      ruleErrors(sub, v, oldMap?.[k], oldMap !== undefined && Object.hasOwn(oldMap, k), p, out);
    }
  }
}

function validateObject(root: Node, object: KubeObject, old: KubeObject | undefined): StatusCause[] {
  const out: Cause[] = [];
  schemaErrors(root, object, old, old !== undefined, [], out);
  if (out.some((c) => c.blocking)) {
    // apiextensions-apiserver's hasBlockingErr: CEL rules are not run on an object of the wrong shape.
    out.push(cause("FieldValueInvalid", [], 'Invalid value: "null": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation'));
  } else if (old === undefined) {
    ruleErrors(root, rootView(object), undefined, false, [], out);
  } else {
    ruleErrors(root, rootView(object), rootView(old), true, [], out);
  }
  return out.map(({ blocking: _b, ...c }) => c);
}
