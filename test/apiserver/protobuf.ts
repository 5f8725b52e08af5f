/**
 * Decoding of Kubernetes protobuf request bodies
 * (`Content-Type: application/vnd.kubernetes.protobuf`) into JSON objects.
 *
 * Why this exists: kubectl 1.32's typed clients send protobuf, and
 * `kubectl create namespace|secret|configmap|service` use them; client-go
 * does not fall back to JSON when the server answers 415. Everything else
 * (apply, replace, patch, delete, client-node) sends JSON. So only the kinds
 * those `kubectl create` subcommands produce are decoded: Namespace, Secret,
 * ConfigMap and Service. Answers stay JSON, which kubectl accepts as well.
 *
 * Body layout: the 4 bytes `k8s\0`, then a `runtime.Unknown` message whose
 * `typeMeta` names apiVersion/kind and whose `raw` is the object's message.
 * Field numbers are those of the `generated.proto` files of k8s.io/api and
 * k8s.io/apimachinery (stable across releases).
 *
 * @example
 * ```ts
 * import { decodeKubernetesProtobuf } from "./protobuf.ts";
 * // kubectl create namespace firewall sends (abridged) k8s\0 + Unknown{typeMeta{v1, Namespace}, raw{metadata{name}}}:
 * const body = Buffer.from("6b3873000a0f0a02763112094e616d657370616365120c0a0a0a086669726577616c6c", "hex");
 * console.log(decodeKubernetesProtobuf(body)); // { apiVersion: "v1", kind: "Namespace", metadata: { name: "firewall" } }
 * ```
 * @module
 */
import type { JsonMap } from "./types.ts";

type Scalar = "string" | "bytes" | "int" | "bool" | "time" | "intOrString";

/** A field: a scalar, a nested message, or a map with string keys. */
interface Field {
  readonly name: string;
  readonly type: Scalar | Schema;
  readonly repeated?: boolean;
  readonly map?: "string" | "bytes";
}

type Schema = Readonly<Record<number, Field>>;

const f = (name: string, type: Scalar | Schema, extra: Partial<Field> = {}): Field => ({ name, type, ...extra });

const TIME: Scalar = "time";

const OWNER_REFERENCE: Schema = {
  1: f("kind", "string"),
  3: f("name", "string"),
  4: f("uid", "string"),
  5: f("apiVersion", "string"),
  6: f("controller", "bool"),
  7: f("blockOwnerDeletion", "bool"),
};

const OBJECT_META: Schema = {
  1: f("name", "string"),
  2: f("generateName", "string"),
  3: f("namespace", "string"),
  4: f("selfLink", "string"),
  5: f("uid", "string"),
  6: f("resourceVersion", "string"),
  7: f("generation", "int"),
  8: f("creationTimestamp", TIME),
  9: f("deletionTimestamp", TIME),
  10: f("deletionGracePeriodSeconds", "int"),
  11: f("labels", "string", { map: "string" }),
  12: f("annotations", "string", { map: "string" }),
  13: f("ownerReferences", OWNER_REFERENCE, { repeated: true }),
  14: f("finalizers", "string", { repeated: true }),
};

const NAMESPACE: Schema = {
  1: f("metadata", OBJECT_META),
  2: f("spec", { 1: f("finalizers", "string", { repeated: true }) }),
  3: f("status", { 1: f("phase", "string") }),
};

const SECRET: Schema = {
  1: f("metadata", OBJECT_META),
  2: f("data", "bytes", { map: "bytes" }),
  3: f("type", "string"),
  4: f("stringData", "string", { map: "string" }),
  5: f("immutable", "bool"),
};

const CONFIG_MAP: Schema = {
  1: f("metadata", OBJECT_META),
  2: f("data", "string", { map: "string" }),
  3: f("binaryData", "bytes", { map: "bytes" }),
  4: f("immutable", "bool"),
};

const SERVICE_PORT: Schema = {
  1: f("name", "string"),
  2: f("protocol", "string"),
  3: f("port", "int"),
  4: f("targetPort", "intOrString"),
  5: f("nodePort", "int"),
  6: f("appProtocol", "string"),
};

const SERVICE: Schema = {
  1: f("metadata", OBJECT_META),
  2: f("spec", {
    1: f("ports", SERVICE_PORT, { repeated: true }),
    2: f("selector", "string", { map: "string" }),
    3: f("clusterIP", "string"),
    4: f("type", "string"),
    5: f("externalIPs", "string", { repeated: true }),
    7: f("sessionAffinity", "string"),
    8: f("loadBalancerIP", "string"),
    9: f("loadBalancerSourceRanges", "string", { repeated: true }),
    10: f("externalName", "string"),
    11: f("externalTrafficPolicy", "string"),
    12: f("healthCheckNodePort", "int"),
    13: f("publishNotReadyAddresses", "bool"),
    17: f("ipFamilyPolicy", "string"),
    18: f("clusterIPs", "string", { repeated: true }),
    19: f("ipFamilies", "string", { repeated: true }),
    20: f("allocateLoadBalancerNodePorts", "bool"),
    21: f("loadBalancerClass", "string"),
    22: f("internalTrafficPolicy", "string"),
  }),
  3: f("status", { 1: f("loadBalancer", { 1: f("ingress", { 1: f("ip", "string"), 2: f("hostname", "string"), 3: f("ipMode", "string") }, { repeated: true }) }) }),
};

/** Kinds whose protobuf encoding is understood, by `apiVersion/kind`. */
const KINDS: Readonly<Record<string, Schema>> = {
  "v1/Namespace": NAMESPACE,
  "v1/Secret": SECRET,
  "v1/ConfigMap": CONFIG_MAP,
  "v1/Service": SERVICE,
};

/** A body this decoder cannot read (the server answers 415). */
export class ProtobufError extends Error {
  override readonly name = "ProtobufError";
}

const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const b = this.buf[this.pos++];
      if (b === undefined) throw new ProtobufError("truncated varint");
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
    }
  }

  bytes(): Buffer {
    const n = Number(this.varint());
    if (this.pos + n > this.buf.length) throw new ProtobufError("truncated field");
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.pos += 4;
    else throw new ProtobufError(`unsupported wire type ${wire}`);
  }

  /** Each (field number, wire type) in order; the callback reads or skips the value. */
  fields(each: (no: number, wire: number) => void): void {
    while (!this.done) {
      const tag = Number(this.varint());
      each(tag >>> 3, tag & 7);
    }
  }
}

function decodeTime(buf: Buffer): string | undefined {
  let seconds = 0n;
  const r = new Reader(buf);
  r.fields((no, wire) => (no === 1 && wire === 0 ? (seconds = r.varint()) : r.skip(wire)));
  if (seconds === 0n) return undefined;
  return new Date(Number(seconds) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

function decodeIntOrString(buf: Buffer): number | string {
  let type = 0n;
  let intVal = 0n;
  let strVal = "";
  const r = new Reader(buf);
  r.fields((no, wire) => {
    if (no === 1 && wire === 0) type = r.varint();
    else if (no === 2 && wire === 0) intVal = BigInt.asIntN(32, r.varint());
    else if (no === 3 && wire === 2) strVal = r.bytes().toString("utf8");
    else r.skip(wire);
  });
  return type === 1n ? strVal : Number(intVal);
}

function decodeMapEntry(buf: Buffer, valueType: "string" | "bytes"): [string, string] {
  let key = "";
  let value = "";
  const r = new Reader(buf);
  r.fields((no, wire) => {
    if (no === 1 && wire === 2) key = r.bytes().toString("utf8");
    else if (no === 2 && wire === 2) {
      const b = r.bytes();
      value = valueType === "bytes" ? b.toString("base64") : b.toString("utf8");
    } else r.skip(wire);
  });
  return [key, value];
}

/** Decodes a message; zero values are left out, as Go's JSON encoding (omitempty) would. */
function decodeMessage(buf: Buffer, schema: Schema): JsonMap {
  const out: JsonMap = {};
  const r = new Reader(buf);
  r.fields((no, wire) => {
    const field = schema[no];
    if (!field) return r.skip(wire);
    let value: unknown;
    if (field.map) {
      const [k, v] = decodeMapEntry(r.bytes(), field.map);
      const m = (out[field.name] ?? {}) as Record<string, string>;
      m[k] = v;
      out[field.name] = m;
      return;
    }
    if (typeof field.type === "object") value = decodeMessage(r.bytes(), field.type);
    else if (field.type === "string") value = r.bytes().toString("utf8");
    else if (field.type === "bytes") value = r.bytes().toString("base64");
    else if (field.type === "int") value = Number(BigInt.asIntN(64, r.varint()));
    else if (field.type === "bool") value = r.varint() !== 0n;
    else if (field.type === "time") value = decodeTime(r.bytes());
    else value = decodeIntOrString(r.bytes());
    if (field.repeated) {
      const list = (out[field.name] ?? []) as unknown[];
      list.push(value);
      out[field.name] = list;
    } else if (value !== undefined && value !== "" && value !== 0 && value !== false) {
      out[field.name] = value;
    }
  });
  return out;
}

/** Decodes a `k8s\0`-prefixed body into the JSON form of the object; throws {@link ProtobufError}. */
export function decodeKubernetesProtobuf(body: Buffer): JsonMap {
  if (body.length < 4 || !body.subarray(0, 4).equals(MAGIC)) throw new ProtobufError("not a Kubernetes protobuf body (no k8s\\0 prefix)");
  let apiVersion = "";
  let kind = "";
  let raw: Buffer | undefined;
  const r = new Reader(body.subarray(4));
  r.fields((no, wire) => {
    if (no === 1 && wire === 2) {
      const tm = new Reader(r.bytes());
      tm.fields((n, w) => {
        if (n === 1 && w === 2) apiVersion = tm.bytes().toString("utf8");
        else if (n === 2 && w === 2) kind = tm.bytes().toString("utf8");
        else tm.skip(w);
      });
    } else if (no === 2 && wire === 2) raw = r.bytes();
    else r.skip(wire);
  });
  const schema = KINDS[`${apiVersion}/${kind}`];
  if (!schema) {
    throw new ProtobufError(
      `this test server decodes protobuf only for ${Object.keys(KINDS).join(", ")} (got ${apiVersion}/${kind}); send application/json`,
    );
  }
  return { apiVersion, kind, ...decodeMessage(raw ?? Buffer.alloc(0), schema) };
}
