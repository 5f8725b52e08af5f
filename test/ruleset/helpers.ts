/**
 * Builders for ruleset tests and a tiny reader of the rendered text: it finds
 * a map's elements and looks a key up the way the kernel would (the element
 * whose ranges contain the key), so tests can ask "where does this packet go?".
 */
import ipaddr from "ipaddr.js";
import { type Cidr, parseCidr } from "../../lib/api/address.ts";
import { parsePolicy, type Policy } from "../../lib/api/policy.ts";
import { formatProblems } from "../../lib/api/problem.ts";
import { type LoadBalancer, parseService } from "../../lib/api/service.ts";
import type { DesiredState } from "../../lib/ruleset/render.ts";

export function cidr(text: string): Cidr {
  const r = parseCidr(text);
  if (!r.ok) throw new Error(`test setup: ${r.message}`);
  return r.value;
}

export const cwnpObject = (name: string, spec: unknown) => ({
  apiVersion: "metal-stack.io/v1",
  kind: "ClusterwideNetworkPolicy",
  metadata: { name, namespace: "firewall" },
  spec,
});

export function policy(name: string, spec: unknown): Policy {
  const r = parsePolicy(cwnpObject(name, spec));
  if (!r.ok) throw new Error(`test setup: policy ${name}: ${formatProblems(r.problems)}`);
  return r.value;
}

export const serviceObject = (namespace: string, name: string, spec: Record<string, unknown>, ips: string[] = []) => ({
  apiVersion: "v1",
  kind: "Service",
  metadata: { name, namespace },
  spec: { type: "LoadBalancer", ...spec },
  status: { loadBalancer: { ingress: ips.map((ip) => ({ ip })) } },
});

export function service(namespace: string, name: string, spec: Record<string, unknown>, ips: string[] = []): LoadBalancer {
  const r = parseService(serviceObject(namespace, name, spec, ips));
  if (!r.ok) throw new Error(`test setup: service ${namespace}/${name}: ${formatProblems(r.problems)}`);
  return r.value;
}

export function state(parts: Partial<DesiredState> = {}): DesiredState {
  return {
    policies: [],
    services: [],
    clusterPrefixes: [cidr("10.0.0.0/8"), cidr("fd00::/8")],
    internalPrefixes: [],
    privateVrf: 42,
    ...parts,
  };
}

/** The body of `<kind> <name> {` ... matching `}` at one tab of indentation. */
export function section(text: string, kind: "map" | "set" | "chain" | "counter", name: string): string {
  const lines = text.split("\n");
  const start = lines.indexOf(`\t${kind} ${name} {`);
  if (start < 0) throw new Error(`no ${kind} ${name} in the ruleset`);
  const end = lines.indexOf("\t}", start);
  return lines.slice(start + 1, end).join("\n");
}

/** The rules of a chain, one per line, without indentation. */
export const chainRules = (text: string, name: string): string[] =>
  section(text, "chain", name)
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "");

type Field = "addr" | "proto" | "port";

export interface Element {
  readonly keys: readonly (readonly [bigint, bigint])[];
  /** The owner's comment the element carries (the kernel's record of which policy or service it belongs to). */
  readonly comment: string;
  /** Where the element's counter starts (zero unless given). */
  readonly counter: { readonly packets: number; readonly bytes: number };
  /** `accept`, or `goto accept_log` with accept logging. */
  readonly verdict: string;
}

const PROTO: Record<string, bigint> = { tcp: 6n, udp: 17n, sctp: 132n, icmp: 1n, icmpv6: 58n };

export function addressValue(text: string): bigint {
  let n = 0n;
  for (const b of ipaddr.parse(text).toByteArray()) n = (n << 8n) | BigInt(b);
  return n;
}

function addressSpan(text: string): [bigint, bigint] {
  if (text.includes("/")) {
    const [a, p] = text.split("/") as [string, string];
    const bits = a.includes(":") ? 128 : 32;
    const first = addressValue(a);
    return [first, first | ((1n << BigInt(bits - Number(p))) - 1n)];
  }
  if (text.includes("-")) {
    const [a, b] = text.split("-") as [string, string];
    return [addressValue(a), addressValue(b)];
  }
  const v = addressValue(text);
  return [v, v];
}

function fieldSpan(field: Field, text: string): [bigint, bigint] {
  if (field === "addr") return addressSpan(text);
  if (field === "proto") {
    const p = PROTO[text];
    if (p === undefined) throw new Error(`unknown protocol ${text}`);
    return [p, p];
  }
  const [a, b] = text.split("-");
  return [BigInt(a as string), BigInt((b ?? a) as string)];
}

/**
 * `<key>[ counter packets N bytes M] comment "<comment>" : <verdict>`: an element with its owner's
 * comment; its counter comes from the map's `counter` flag (checked by the caller), starting at the
 * values given, else at zero.
 */
const ELEMENT = /^(.+?)(?: counter packets (\d+) bytes (\d+))? comment "([^"]*)" : (.+)$/;

/** The elements of an interval verdict map, parsed by its declared type; throws on an element without counter or comment. */
export function mapElements(text: string, name: string): Element[] {
  const body = section(text, "map", name);
  const type = /type (.*) : verdict/.exec(body)?.[1];
  if (!type) throw new Error(`map ${name} has no verdict type`);
  if (!/\n\t\tcounter(\n|$)/.test(body)) throw new Error(`map ${name} does not give its elements counters (no counter flag)`);
  const fields: Field[] = type.split(" . ").map((t) => (t.endsWith("_addr") ? "addr" : t === "inet_proto" ? "proto" : "port"));
  const m = /elements = \{([\s\S]*?)\n\t\t\}/.exec(body) ?? /elements = \{([^}]*)\}/.exec(body);
  if (!m) return [];
  return (m[1] as string)
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .map((s) => {
      const e = ELEMENT.exec(s);
      if (!e) throw new Error(`element ${s} has no counter, comment and verdict`);
      const [, key, packets, bytes, comment, verdict] = e as unknown as [string, string, string | undefined, string | undefined, string, string];
      const parts = key.split(" . ");
      if (parts.length !== fields.length) throw new Error(`element ${s} does not match type ${type}`);
      return { keys: parts.map((p, i) => fieldSpan(fields[i] as Field, p)), comment, counter: { packets: Number(packets ?? 0), bytes: Number(bytes ?? 0) }, verdict };
    });
}

/** Whose element matches `key` (the owner's comment it carries), or null; throws if two elements match. */
export function lookup(elements: readonly Element[], key: readonly bigint[]): string | null {
  const hits = elements.filter((e) => e.keys.every(([a, b], i) => (key[i] as bigint) >= a && (key[i] as bigint) <= b));
  if (hits.length > 1) throw new Error(`key ${key.join(" . ")} matches ${hits.length} elements`);
  return hits[0]?.comment ?? null;
}

export const PROTO_NUMBER = PROTO;

/** The layers of a map (`<base>`, `<base>_1`, ...), each parsed by {@link mapElements}; layer 0 first. */
export function mapLayers(text: string, base: string): Element[][] {
  const out = [mapElements(text, base)];
  for (let n = 1; text.includes(`\tmap ${base}_${n} {\n`); n++) out.push(mapElements(text, `${base}_${n}`));
  return out;
}

/** Where the layered map sends `key`: the first layer with a match decides, as in the forward chain. */
export function lookupLayers(layers: readonly (readonly Element[])[], key: readonly bigint[]): string | null {
  for (const l of layers) {
    const hit = lookup(l, key);
    if (hit !== null) return hit;
  }
  return null;
}

/** Every map element of the ruleset text (all maps, all layers). */
export const elementCount = (text: string): number =>
  [...text.matchAll(/^\tmap (\S+) \{$/gm)].reduce((n, m) => n + mapElements(text, m[1] as string).length, 0);
