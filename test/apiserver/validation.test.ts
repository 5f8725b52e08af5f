/**
 * Schema and CEL validation of custom resources (validation.ts), unit by unit:
 * each OpenAPI keyword and each CEL rule feature, with the real apiserver's
 * wording of causes.
 */
import { describe, expect, test } from "bun:test";
import type { StatusCause } from "./status.ts";
import type { JsonMap, KubeObject } from "./types.ts";
import { celCompilations, compileSchema, SchemaCompileError } from "./validation.ts";

/** A root schema with the given `spec` properties. */
const root = (spec: JsonMap, extra: JsonMap = {}): JsonMap => ({ type: "object", properties: { spec: { type: "object", properties: spec, ...extra } } });
const obj = (spec: unknown): KubeObject => ({ apiVersion: "x.io/v1", kind: "X", metadata: { name: "x" }, spec });
const errs = (schema: JsonMap, spec: unknown, oldSpec?: unknown): StatusCause[] => compileSchema(schema).validate(obj(spec), oldSpec === undefined ? undefined : obj(oldSpec));
const messages = (schema: JsonMap, spec: unknown, oldSpec?: unknown) => errs(schema, spec, oldSpec).map((c) => `${c.field}: ${c.message}`);
const BLOCKED = '<nil>: Invalid value: "null": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation';

describe("OpenAPI keywords", () => {
  test("type: wrong JSON type is FieldValueTypeInvalid and blocks the CEL rules", () => {
    expect(errs(root({ port: { type: "integer" } }), { port: "http" })).toEqual([
      { reason: "FieldValueTypeInvalid", field: "spec.port", message: 'Invalid value: "string": spec.port in body must be of type integer: "string"' },
      { reason: "FieldValueInvalid", field: "<nil>", message: BLOCKED.slice("<nil>: ".length) },
    ]);
    expect(messages(root({ n: { type: "integer" } }), { n: 1.5 })[0]).toBe('spec.n: Invalid value: "number": spec.n in body must be of type integer: "number"');
    expect(messages(root({ n: { type: "number" } }), { n: 2 })).toEqual([]);
  });

  test("nullable and x-kubernetes-int-or-string", () => {
    const s = root({ l: { type: "array", items: { type: "string", nullable: true } }, m: { type: "array", items: { type: "string" } }, p: { "x-kubernetes-int-or-string": true } });
    expect(messages(s, { l: [null], m: ["a"], p: 8080 })).toEqual([]);
    expect(messages(s, { p: "http" })).toEqual([]);
    expect(messages(s, { m: [null] })[0]).toBe('spec.m[0]: Invalid value: "null": spec.m[0] in body must be of type string: "null"');
    expect(messages(s, { p: true })[0]).toBe('spec.p: Invalid value: "boolean": spec.p in body must be of type integer,string: "boolean"');
  });

  test("required, enum", () => {
    const s = root({ proto: { type: "string", enum: ["TCP", "UDP"] } }, { required: ["cidr"] });
    expect(errs(s, { proto: "ICMP" }).slice(0, 2)).toEqual([
      { reason: "FieldValueRequired", field: "spec.cidr", message: "Required value" },
      { reason: "FieldValueNotSupported", field: "spec.proto", message: 'Unsupported value: "ICMP": supported values: "TCP", "UDP"' },
    ]);
  });

  test("minimum/maximum, exclusive too, and multipleOf", () => {
    const s = root({ a: { type: "integer", minimum: 1, maximum: 10 }, b: { type: "integer", minimum: 1, exclusiveMinimum: true, maximum: 10, exclusiveMaximum: true }, c: { type: "integer", multipleOf: 5 } });
    expect(messages(s, { a: 0, b: 10, c: 7 })).toEqual([
      "spec.a: Invalid value: 0: spec.a in body should be greater than or equal to 1",
      "spec.b: Invalid value: 10: spec.b in body should be less than 10",
      "spec.c: Invalid value: 7: spec.c in body should be a multiple of 5",
    ]);
    expect(messages(s, { a: 11, b: 1 })).toEqual(["spec.a: Invalid value: 11: spec.a in body should be less than or equal to 10", "spec.b: Invalid value: 1: spec.b in body should be greater than 1"]);
    expect(messages(s, { a: 1, b: 2, c: 10 })).toEqual([]);
  });

  test("minLength/maxLength (characters), pattern", () => {
    const s = root({ i: { type: "string", minLength: 1, maxLength: 3, pattern: "^[a-z]+$" } });
    expect(messages(s, { i: "" })).toEqual(['spec.i: Invalid value: "": spec.i in body should be at least 1 chars long', `spec.i: Invalid value: "": spec.i in body should match '^[a-z]+$'`]);
    expect(errs(s, { i: "abcd" })[0]).toEqual({ reason: "FieldValueTooLong", field: "spec.i", message: "Too long: may not be more than 3 bytes" });
    expect(messages(root({ d: { type: "string", maxLength: 3 } }), { d: "1µs" })).toEqual([]);
  });

  test("minItems/maxItems, uniqueItems, minProperties/maxProperties", () => {
    const s = root({ l: { type: "array", minItems: 1, maxItems: 2, uniqueItems: true, items: { type: "string" } }, m: { type: "object", minProperties: 1, maxProperties: 1, additionalProperties: { type: "string" } } });
    expect(messages(s, { l: [], m: {} })).toEqual(["spec.l: Invalid value: 0: spec.l in body should have at least 1 items", "spec.m: Invalid value: 1: spec.m in body should have at least 1 properties"]);
    expect(errs(s, { l: ["a", "b", "c"] })[0]).toEqual({ reason: "FieldValueTooMany", field: "spec.l", message: "Too many: 3: must have at most 2 items" });
    expect(messages(s, { l: ["a", "a"] })).toEqual([`spec.l: Invalid value: "": spec.l in body shouldn't contain duplicates`]);
    expect(errs(s, { m: { a: "1", b: "2" } })[0]?.reason).toBe("FieldValueTooMany");
  });

  test("format: date-time is checked, int32/int64 are not (as on a cluster)", () => {
    const s = root({ t: { type: "string", format: "date-time" }, n: { type: "integer", format: "int32" } });
    expect(messages(s, { t: "2026-11-27T08:00:00Z", n: 2 ** 40 })).toEqual([]);
    expect(messages(s, { t: "yesterday" })[0]).toBe('spec.t: Invalid value: "yesterday": spec.t in body must be of type date-time: "yesterday"');
  });

  test("x-kubernetes-list-type map: duplicate keys", () => {
    const s = root({ r: { type: "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["interface"], items: { type: "object", properties: { interface: { type: "string" }, rate: { type: "integer" } } } } });
    expect(errs(s, { r: [{ interface: "a", rate: 1 }, { interface: "a", rate: 2 }] })).toEqual([
      { reason: "FieldValueDuplicate", field: "spec.r[1]", message: 'Duplicate value: map[string]interface {}{"interface":"a"}' },
    ]);
  });
});

describe("CEL rules", () => {
  const rule = (r: JsonMap, type: JsonMap = { type: "string" }) => root({ v: { ...type, "x-kubernetes-validations": [r] } });

  test("a false rule is reported at its node with the node's type as the value (as the real apiserver does)", () => {
    expect(errs(rule({ rule: "isCIDR(self)", message: "must be a CIDR" }), { v: "x" })).toEqual([{ reason: "FieldValueInvalid", field: "spec.v", message: 'Invalid value: "string": must be a CIDR' }]);
    expect(messages(rule({ rule: "self.size() > 1" }), { v: "x" })).toEqual(['spec.v: Invalid value: "string": failed rule: self.size() > 1']);
  });

  test("integers are CEL ints, macros and string functions work", () => {
    const s = root({ v: { type: "object", properties: { p: { type: "integer" }, q: { type: "integer" }, l: { type: "array", items: { type: "integer" } } }, "x-kubernetes-validations": [{ rule: "self.p == 1 && self.l.all(x, x > 0) && self.l.exists(x, x == 2) && self.l.exists_one(x, x == 3) && self.l.map(x, x * 2) == [2, 4, 6] && self.l.filter(x, x > 1).size() == 2 && has(self.p) && !has(self.q) && 'abc'.startsWith('a') && 'a,b'.split(',').size() == 2" }] } });
    expect(messages(s, { v: { p: 1, l: [1, 2, 3] } })).toEqual([]);
  });

  test("messageExpression, fieldPath and reason", () => {
    const s = root({
      v: {
        type: "object",
        properties: { a: { type: "integer" }, b: { type: "integer" } },
        "x-kubernetes-validations": [
          { rule: "self.b >= self.a", messageExpression: "'b ' + string(self.b) + ' < a ' + string(self.a)", fieldPath: ".b" },
          { rule: "self.a != 13", message: "unlucky", reason: "FieldValueForbidden" },
          { rule: "self.a != 13", message: "fallback", messageExpression: "''" },
        ],
      },
    });
    expect(errs(s, { v: { a: 13, b: 2 } })).toEqual([
      { reason: "FieldValueInvalid", field: "spec.v.b", message: 'Invalid value: "object": b 2 < a 13' },
      { reason: "FieldValueForbidden", field: "spec.v", message: "Forbidden: unlucky" },
      { reason: "FieldValueInvalid", field: "spec.v", message: 'Invalid value: "object": fallback' },
    ]);
  });

  test("evaluation errors are reported with the rule", () => {
    expect(messages(rule({ rule: "cidr(self).prefixLength() > 8" }), { v: "x" })[0]).toStartWith('spec.v: Invalid value: "string": network address parse error');
    expect(messages(rule({ rule: "cidr(self).prefixLength() > 8" }), { v: "x" })[0]).toEndWith("evaluating rule: cidr(self).prefixLength() > 8");
  });

  test("transition rules (oldSelf) run only on updates", () => {
    const s = rule({ rule: "self == oldSelf", message: "immutable" });
    expect(messages(s, { v: "a" })).toEqual([]);
    expect(messages(s, { v: "b" }, { v: "a" })).toEqual(['spec.v: Invalid value: "string": immutable']);
    // No old value at this node (the field is new): not evaluated.
    expect(messages(s, { v: "b" }, {})).toEqual([]);
  });

  test("ratcheting: an unchanged invalid value does not fail an update of something else", () => {
    const s = root({ v: { type: "string", "x-kubernetes-validations": [{ rule: "isCIDR(self)" }] }, w: { type: "integer", minimum: 1 }, o: { type: "integer" } });
    expect(messages(s, { v: "x", w: 0, o: 2 }, { v: "x", w: 0, o: 1 })).toEqual([]);
    expect(messages(s, { v: "y", w: 0 }, { v: "x", w: 0 })).toEqual(['spec.v: Invalid value: "string": failed rule: isCIDR(self)']);
  });

  test("the root sees apiVersion, kind and metadata.name only", () => {
    const s: JsonMap = { type: "object", "x-kubernetes-validations": [{ rule: "self.metadata.name == 'x' && self.kind == 'X' && !has(self.metadata.uid)" }] };
    expect(compileSchema(s).validate({ apiVersion: "x.io/v1", kind: "X", metadata: { name: "x", uid: "u" } })).toEqual([]);
  });

  test("rules are compiled once per schema; a rule that does not compile is an error naming its place", () => {
    const s = rule({ rule: "self.size() > 0" });
    compileSchema(s);
    const before = celCompilations();
    for (let i = 0; i < 20; i++) compileSchema(s).validate(obj({ v: "x" }));
    expect(celCompilations()).toBe(before);
    let error: unknown;
    try {
      compileSchema(rule({ rule: "isCIDRR(self)" }));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SchemaCompileError);
    expect((error as SchemaCompileError).errors[0]?.path).toBe("openAPIV3Schema.properties[spec].properties[v].x-kubernetes-validations[0].rule");
    expect((error as SchemaCompileError).errors[0]?.message).toStartWith("compilation failed: ");
  });
});

/**
 * `self` is typed by its schema on a real apiserver (apiextensions' SchemaDeclType): an object with properties is
 * an object type whose fields are the declared properties only, x-kubernetes-preserve-unknown-fields or not.
 * So a rule cannot list an object's keys, and preserved unknown fields are invisible to CEL.
 */
describe("CEL and x-kubernetes-preserve-unknown-fields", () => {
  const port = (rule: string, extra: JsonMap = {}) =>
    root({ p: { type: "object", "x-kubernetes-preserve-unknown-fields": true, properties: { protocol: { type: "string" }, port: { type: "integer" } }, ...extra, "x-kubernetes-validations": [{ rule }] } });
  const compileError = (schema: JsonMap): string => {
    try {
      compileSchema(schema);
    } catch (e) {
      if (e instanceof SchemaCompileError) return e.message;
      throw e;
    }
    return "compiled";
  };

  test("a comprehension over an object's keys does not compile (objects are not maps), preserve-unknown-fields or not", () => {
    expect(compileError(port("self.all(k, k in ['protocol', 'port'])"))).toBe(
      "openAPIV3Schema.properties[spec].properties[p].x-kubernetes-validations[0].rule: compilation failed: ERROR: <input>:1:1: expression of type 'object' cannot be range of a comprehension (must be list, map, or dynamic)",
    );
    expect(compileError(port("self.exists(k, k == 'prot')"))).toContain("cannot be range of a comprehension");
    // Reached through a list and a comprehension variable, too.
    const list = root({ l: { type: "array", items: { type: "object", properties: { a: { type: "integer" } } }, "x-kubernetes-validations": [{ rule: "self.all(i, i.all(k, k == 'a'))" }] } });
    expect(compileError(list)).toContain("cannot be range of a comprehension");
  });

  test("a field the object does not declare cannot be selected or has()-tested", () => {
    expect(compileError(port("!has(self.prot)"))).toContain("undefined field 'prot'");
    expect(compileError(port("self.prot == 22"))).toContain("undefined field 'prot'");
    const list = root({ l: { type: "array", items: { type: "object", properties: { a: { type: "integer" } } }, "x-kubernetes-validations": [{ rule: "self.all(i, !has(i.b))" }] } });
    expect(compileError(list)).toContain("undefined field 'b'");
  });

  test("maps (additionalProperties) are maps: their keys can be listed", () => {
    const map = root({ m: { type: "object", additionalProperties: { type: "integer" }, "x-kubernetes-validations": [{ rule: "self.all(k, k in ['a', 'b'])", messageExpression: "'unknown key(s) ' + self.filter(k, !(k in ['a', 'b'])).join(', ')" }] } });
    expect(messages(map, { m: { a: 1, c: 2, d: 3 } })).toEqual(['spec.m: Invalid value: "object": unknown key(s) c, d']);
    expect(messages(map, { m: { a: 1 } })).toEqual([]);
  });

  test("preserved unknown fields are invisible to the rules that do compile", () => {
    // size() of a list of ports cannot see them either; a rule over declared fields sees only those.
    const s = port("self.port == 22 || !has(self.port)");
    expect(messages(s, { p: { prot: 22 } })).toEqual([]);
    expect(messages(s, { p: { port: 23, prot: 22 } })).toEqual(['spec.p: Invalid value: "object": failed rule: self.port == 22 || !has(self.port)']);
  });

  test("the root still declares apiVersion, kind and metadata", () => {
    const s = { type: "object", properties: { spec: { type: "object" } }, "x-kubernetes-validations": [{ rule: "self.metadata.name != 'bad' && self.kind == 'X' && has(self.apiVersion)" }] };
    expect(compileError(s)).toBe("compiled");
  });
});
