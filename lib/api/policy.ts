/**
 * ClusterwideNetworkPolicy (SPEC §3.2): schema and the validated value the
 * renderer consumes. An invalid policy is rejected whole, with every problem.
 * Unknown keys inside rules, IP blocks and ports are problems (a typo such as
 * `to` in an ingress rule or `prot` in a port must never widen a rule); those
 * elsewhere (spec, metadata, status) are ignored, as real objects carry many.
 *
 * @example
 * ```ts
 * import { parsePolicy } from "./policy.ts";
 * const r = parsePolicy({
 *   apiVersion: "metal-stack.io/v1", kind: "ClusterwideNetworkPolicy",
 *   metadata: { name: "allow-dns", namespace: "firewall" },
 *   spec: { egress: [{ to: [{ cidr: "8.8.8.8/32" }], ports: [{ protocol: "UDP", port: 53 }] }] },
 * });
 * if (!r.ok) console.error(r.problems);
 * ```
 * @module
 */
import * as v from "valibot";
import { type Cidr, contains, type Parsed, parseCidr } from "./address.ts";
import { closedObject, isRecord, pathItem, reportUnknownKeys } from "./closed-object.ts";
import { MetadataSchema } from "./meta.ts";
import { issuesToProblems, parsedBy, type Problem, show, type Validated } from "./problem.ts";

export type Protocol = "tcp" | "udp" | "sctp";

/** An inclusive port range of one protocol. */
export interface PortRange {
  readonly protocol: Protocol;
  readonly first: number;
  readonly last: number;
}

export interface IPBlock {
  readonly cidr: Cidr;
  readonly except: readonly Cidr[];
}

/** One ingress or egress rule; `null` peers or ports mean "any". */
export interface PolicyRule {
  readonly peers: readonly IPBlock[] | null;
  readonly ports: readonly PortRange[] | null;
}

export interface Policy {
  readonly name: string;
  readonly namespace: string;
  readonly generation: number | undefined;
  readonly ingress: readonly PolicyRule[];
  readonly egress: readonly PolicyRule[];
}

/** A CIDR string parsed into a {@link Cidr}; host bits set become a note, not an error. */
export const CidrSchema = v.pipe(v.string((i) => `${show(i.input)} is not a CIDR string`), parsedBy(parseCidr));

const PROTOCOLS = new Map<unknown, Protocol>([["TCP", "tcp"], ["UDP", "udp"], ["SCTP", "sctp"]]);

const protocolOf = (x: unknown): Parsed<Protocol> => {
  const p = PROTOCOLS.get(x);
  return p ? { ok: true, value: p } : { ok: false, message: `${show(x)} is not a protocol (TCP, UDP or SCTP)` };
};

export const ProtocolSchema = v.pipe(v.optional(v.unknown(), "TCP"), parsedBy(protocolOf));

const portOf = (x: unknown): Parsed<number> => {
  if (typeof x === "string") return { ok: false, message: `${show(x)} is a named port; a firewall has no pod to resolve it, use a number (1..65535)` };
  if (typeof x !== "number" || !Number.isInteger(x) || x < 1 || x > 65535) return { ok: false, message: `${show(x)} is not a port (1..65535)` };
  return { ok: true, value: x };
};

type AddIssue = (info: { message: string; path?: [v.IssuePathItem, ...v.IssuePathItem[]] }) => void;

function issueAt(addIssue: AddIssue, input: unknown, keys: readonly (string | number)[], message: string): void {
  const items = keys.map((key) => pathItem(input, key));
  addIssue(items.length > 0 ? { message, path: items as [v.IssuePathItem, ...v.IssuePathItem[]] } : { message });
}

// Own keys only: valibot's record() skips `__proto__`, and an unknown key must be seen to be rejected.
const plainObject = (what: string) => v.custom<Record<string, unknown>>(isRecord, (i) => `${show(i.input)} is not ${what}`);

const PORT_KEYS = new Set(["protocol", "port", "endPort"]);
const BLOCK_KEYS = new Set(["cidr", "except"]);

/**
 * One port entry. Every field is checked on its own and all problems are
 * reported together (a bad protocol must not hide a bad endPort).
 */
const PortSchema = v.pipe(
  plainObject("a port object ({protocol, port, endPort})"),
  v.rawTransform(({ dataset, addIssue, NEVER }): PortRange => {
    const raw = dataset.value;
    const unknown = reportUnknownKeys(raw, PORT_KEYS, "ports take protocol, port, endPort", addIssue);
    const protocol = protocolOf(raw.protocol ?? "TCP");
    const port = raw.port === undefined || raw.port === null ? undefined : portOf(raw.port);
    const endPort = raw.endPort === undefined || raw.endPort === null ? undefined : portOf(raw.endPort);
    let bad = false;
    const fail = (key: string, message: string) => {
      bad = true;
      issueAt(addIssue, raw, [key], message);
    };
    if (!protocol.ok) fail("protocol", protocol.message);
    if (port && !port.ok) fail("port", port.message);
    if (endPort && !endPort.ok) fail("endPort", endPort.message);
    if (endPort?.ok && port === undefined) fail("endPort", `endPort ${endPort.value} needs a port`);
    if (endPort?.ok && port?.ok && endPort.value < port.value) fail("endPort", `endPort ${endPort.value} is less than port ${port.value}`);
    if (bad || unknown || !protocol.ok) return NEVER;
    const first = port?.ok ? port.value : undefined;
    const last = endPort?.ok ? endPort.value : first;
    // A port entry with only a protocol means every port of that protocol (as in Kubernetes NetworkPolicy).
    return { protocol: protocol.value, first: first ?? 0, last: last ?? 65535 };
  }),
);

/**
 * One IP block: its cidr, and excepts that parse, share its family and lie
 * inside it. Every except is checked, whatever the others are.
 */
const IPBlockSchema = v.pipe(
  plainObject("an IP block ({cidr, except})"),
  v.rawTransform(({ dataset, addIssue, NEVER }): IPBlock => {
    const raw = dataset.value;
    let bad = reportUnknownKeys(raw, BLOCK_KEYS, "IP blocks take cidr, except", addIssue);
    const fail = (keys: (string | number)[], message: string) => {
      bad = true;
      issueAt(addIssue, raw, keys, message);
    };
    let cidr: Cidr | undefined;
    if (raw.cidr === undefined || raw.cidr === null) fail(["cidr"], "cidr is missing (an IP block needs a CIDR, e.g. 203.0.113.0/24)");
    else if (typeof raw.cidr !== "string") fail(["cidr"], `${show(raw.cidr)} is not a CIDR string`);
    else {
      const r = parseCidr(raw.cidr);
      if (r.ok) cidr = r.value;
      else fail(["cidr"], r.message);
    }
    const excepts: Cidr[] = [];
    const rawExcept = raw.except ?? [];
    if (!Array.isArray(rawExcept)) fail(["except"], `${show(rawExcept)} is not a list of CIDR strings`);
    else {
      rawExcept.forEach((x: unknown, i) => {
        const r = typeof x === "string" ? parseCidr(x) : ({ ok: false, message: `${show(x)} is not a CIDR string` } as const);
        if (!r.ok) return fail(["except", i], r.message);
        const e = r.value;
        // x parsed as a CIDR, so it is plain address text: shown as written, unquoted.
        if (cidr && e.family !== cidr.family) return fail(["except", i], `${x} is IPv${e.family} but cidr ${cidr.text} is IPv${cidr.family}`);
        if (cidr && !contains(cidr, e)) return fail(["except", i], `${x} is not inside cidr ${cidr.text}`);
        excepts.push(e);
      });
    }
    return bad || !cidr ? NEVER : { cidr, except: excepts };
  }),
);

const listOf = <T extends v.GenericSchema>(item: T, what: string) =>
  v.optional(v.nullable(v.array(item, (i) => `${show(i.input)} is not a list of ${what}`)));

const IngressRuleSchema = closedObject(
  { from: listOf(IPBlockSchema, "IP blocks"), ports: listOf(PortSchema, "ports") },
  "ingress rules take from, ports",
  (i) => `${show(i.input)} is not a rule object ({from, ports})`,
);

const EgressRuleSchema = closedObject(
  { to: listOf(IPBlockSchema, "IP blocks"), ports: listOf(PortSchema, "ports") },
  "egress rules take to, ports",
  (i) => `${show(i.input)} is not a rule object ({to, ports})`,
);

export const PolicySchema = v.looseObject(
  {
    apiVersion: v.literal("metal-stack.io/v1", (i) => `${show(i.input)} is not metal-stack.io/v1`),
    kind: v.literal("ClusterwideNetworkPolicy"),
    metadata: MetadataSchema,
    spec: v.optional(
      v.looseObject(
        {
          description: v.optional(v.unknown()),
          ingress: listOf(IngressRuleSchema, "ingress rules"),
          egress: listOf(EgressRuleSchema, "egress rules"),
        },
        (i) => `${show(i.input)} is not an object`,
      ),
      {},
    ),
  },
  (i) => `${show(i.input)} is not an object`,
);

const toRule = (peers: readonly IPBlock[] | null | undefined, ports: readonly PortRange[] | null | undefined): PolicyRule => ({
  peers: peers && peers.length > 0 ? peers : null,
  ports: ports && ports.length > 0 ? ports : null,
});

/** Validates one ClusterwideNetworkPolicy object (any namespace; scoping is the caller's). */
export function parsePolicy(input: unknown): Validated<Policy> {
  const r = v.safeParse(PolicySchema, input, { abortEarly: false });
  if (!r.success) return { ok: false, problems: issuesToProblems(r.issues) };
  const { metadata, spec } = r.output;
  const raw = input as { spec?: Record<string, Record<string, { cidr?: unknown; except?: unknown[] }[]>[]> };
  const notes: Problem[] = [];
  const noteHostBits = (dir: "ingress" | "egress", key: "from" | "to", rules: readonly { peers: readonly IPBlock[] | null }[]) =>
    rules.forEach((rule, ri) =>
      rule.peers?.forEach((b, bi) => {
        const where = `spec.${dir}[${ri}].${key}[${bi}]`;
        if (b.cidr.hostBitsSet) notes.push({ path: `${where}.cidr`, message: `${show(raw.spec?.[dir]?.[ri]?.[key]?.[bi]?.cidr)} has host bits set; using ${b.cidr.text}` });
        b.except.forEach((e, ei) => {
          if (e.hostBitsSet) notes.push({ path: `${where}.except[${ei}]`, message: `${show(raw.spec?.[dir]?.[ri]?.[key]?.[bi]?.except?.[ei])} has host bits set; using ${e.text}` });
        });
      }),
    );
  const ingress = (spec.ingress ?? []).map((x) => toRule(x.from, x.ports));
  const egress = (spec.egress ?? []).map((x) => toRule(x.to, x.ports));
  noteHostBits("ingress", "from", ingress);
  noteHostBits("egress", "to", egress);
  return {
    ok: true,
    value: { name: metadata.name, namespace: metadata.namespace, generation: metadata.generation, ingress, egress },
    notes,
  };
}
