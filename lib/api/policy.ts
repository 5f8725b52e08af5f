/**
 * ClusterwideNetworkPolicy (SPEC §3.2): schema and the validated value the
 * renderer consumes. An invalid policy is rejected whole, with every problem.
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
import { type Cidr, contains, parseCidr } from "./address.ts";
import { MetadataSchema } from "./meta.ts";
import { issuesToProblems, type Problem, show, type Validated } from "./problem.ts";

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
export const CidrSchema = v.pipe(
  v.string((i) => `${show(i.input)} is not a CIDR string`),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const r = parseCidr(dataset.value);
    if (!r.ok) {
      addIssue({ message: r.message });
      return NEVER;
    }
    return r.value;
  }),
);

const PROTOCOLS: Record<string, Protocol> = { TCP: "tcp", UDP: "udp", SCTP: "sctp" };

export const ProtocolSchema = v.pipe(
  v.optional(v.unknown(), "TCP"),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const p = typeof dataset.value === "string" ? PROTOCOLS[dataset.value] : undefined;
    if (p === undefined) {
      addIssue({ message: `${show(dataset.value)} is not a protocol (TCP, UDP or SCTP)` });
      return NEVER;
    }
    return p;
  }),
);

const portNumber = (what: string) =>
  v.pipe(
    v.unknown(),
    v.rawTransform(({ dataset, addIssue, NEVER }) => {
      const x = dataset.value;
      if (typeof x === "string") {
        addIssue({ message: `${show(x)} is a named port; a firewall has no pod to resolve it, use a number (1..65535)` });
        return NEVER;
      }
      if (typeof x !== "number" || !Number.isInteger(x) || x < 1 || x > 65535) {
        addIssue({ message: `${show(x)} is not a ${what} (1..65535)` });
        return NEVER;
      }
      return x;
    }),
  );

const PortSchema = v.pipe(
  v.looseObject(
    {
      protocol: ProtocolSchema,
      port: v.optional(portNumber("port")),
      endPort: v.optional(portNumber("port")),
    },
    (i) => `${show(i.input)} is not a port object ({protocol, port, endPort})`,
  ),
  v.rawTransform(({ dataset, addIssue, NEVER }): PortRange => {
    const { protocol, port, endPort } = dataset.value;
    if (endPort !== undefined && port === undefined) {
      addIssue({ message: `endPort ${endPort} needs a port`, path: [pathItem(dataset.value, "endPort")] });
      return NEVER;
    }
    if (port !== undefined && endPort !== undefined && endPort < port) {
      addIssue({ message: `endPort ${endPort} is less than port ${port}`, path: [pathItem(dataset.value, "endPort")] });
      return NEVER;
    }
    // A port entry with only a protocol means every port of that protocol (as in Kubernetes NetworkPolicy).
    return { protocol, first: port ?? 0, last: endPort ?? port ?? 65535 };
  }),
);

// valibot wants full path items on issues added by a transform; only `key` is read by issuePath.
function pathItem(input: object, key: string) {
  const record = input as Record<string, unknown>;
  return { type: "object", origin: "value", input: record, key, value: record[key] } as const;
}

const IPBlockSchema = v.pipe(
  v.looseObject(
    {
      cidr: CidrSchema,
      except: v.optional(v.nullable(v.array(CidrSchema, (i) => `${show(i.input)} is not a list of CIDR strings`)), []),
    },
    (i) => `${show(i.input)} is not an IP block ({cidr, except})`,
  ),
  v.rawTransform(({ dataset, addIssue, NEVER }): IPBlock => {
    const { cidr } = dataset.value;
    const except = dataset.value.except ?? [];
    let bad = false;
    except.forEach((e, idx) => {
      if (e.family !== cidr.family) {
        bad = true;
        addIssue({
          message: `${e.text} is IPv${e.family} but cidr ${cidr.text} is IPv${cidr.family}`,
          path: [pathItem(dataset.value, "except"), { type: "array", origin: "value", input: except, key: idx, value: e }],
        });
      } else if (!contains(cidr, e)) {
        bad = true;
        addIssue({
          message: `${e.text} is not inside cidr ${cidr.text}`,
          path: [pathItem(dataset.value, "except"), { type: "array", origin: "value", input: except, key: idx, value: e }],
        });
      }
    });
    return bad ? NEVER : { cidr, except };
  }),
);

const listOf = <T extends v.GenericSchema>(item: T, what: string) =>
  v.optional(v.nullable(v.array(item, (i) => `${show(i.input)} is not a list of ${what}`)));

const RuleSchema = (peerKey: "to" | "from") =>
  v.looseObject(
    {
      [peerKey]: listOf(IPBlockSchema, "IP blocks"),
      ports: listOf(PortSchema, "ports"),
    } as { to: ReturnType<typeof listOf<typeof IPBlockSchema>>; ports: ReturnType<typeof listOf<typeof PortSchema>> },
    (i) => `${show(i.input)} is not a rule object`,
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
          ingress: listOf(RuleSchema("from"), "ingress rules"),
          egress: listOf(RuleSchema("to"), "egress rules"),
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
  const ingress = (spec.ingress ?? []).map((x) => toRule((x as unknown as { from?: IPBlock[] | null }).from, x.ports));
  const egress = (spec.egress ?? []).map((x) => toRule(x.to, x.ports));
  noteHostBits("ingress", "from", ingress);
  noteHostBits("egress", "to", egress);
  return {
    ok: true,
    value: { name: metadata.name, namespace: metadata.namespace, generation: metadata.generation, ingress, egress },
    notes,
  };
}
