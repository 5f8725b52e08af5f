/**
 * The fields of a core/v1 Service this program uses (SPEC §4.4). Only Services
 * of type LoadBalancer open anything; every other field is ignored.
 *
 * @example
 * ```ts
 * import { parseService } from "./service.ts";
 * const r = parseService({
 *   apiVersion: "v1", kind: "Service", metadata: { name: "web", namespace: "shop" },
 *   spec: { type: "LoadBalancer", ports: [{ port: 443 }] },
 *   status: { loadBalancer: { ingress: [{ ip: "203.0.113.80" }] } },
 * });
 * ```
 * @module
 */
import * as v from "valibot";
import { type Cidr, type Family, parseAddress } from "./address.ts";
import { MetadataSchema } from "./meta.ts";
import { CidrSchema, type Protocol, ProtocolSchema } from "./policy.ts";
import { issuesToProblems, parsedBy, type Problem, show, type Validated } from "./problem.ts";

export interface LoadBalancer {
  readonly namespace: string;
  readonly name: string;
  readonly addresses: readonly { readonly family: Family; readonly value: bigint; readonly text: string }[];
  readonly ports: readonly { readonly protocol: Protocol; readonly port: number }[];
  /** Empty: any source. */
  readonly sourceRanges: readonly Cidr[];
}

const AddressSchema = v.pipe(v.string((i) => `${show(i.input)} is not an IP address string`), parsedBy(parseAddress));

const ServicePortSchema = v.looseObject(
  {
    protocol: ProtocolSchema,
    port: v.pipe(
      v.unknown(),
      v.check((x) => typeof x === "number" && Number.isInteger(x) && x >= 1 && x <= 65535, (i) => `${show(i.input)} is not a port (1..65535)`),
      v.transform((x) => x as number),
    ),
  },
  (i) => `${show(i.input)} is not a service port`,
);

const list = <T extends v.GenericSchema>(item: T) => v.optional(v.nullable(v.array(item, (i) => `${show(i.input)} is not a list`)));

const LoadBalancerSchema = v.looseObject({
  apiVersion: v.literal("v1"),
  kind: v.literal("Service"),
  metadata: MetadataSchema,
  spec: v.looseObject({
    type: v.literal("LoadBalancer"),
    loadBalancerIP: v.optional(v.nullable(v.union([v.literal(""), AddressSchema], (i) => `${show(i.input)} is not an IP address`))),
    loadBalancerSourceRanges: list(CidrSchema),
    ports: list(ServicePortSchema),
  }),
  status: v.optional(
    v.looseObject({
      loadBalancer: v.optional(
        v.looseObject({ ingress: list(v.looseObject({ ip: v.optional(v.nullable(AddressSchema)) })) }),
      ),
    }),
  ),
});

const SERVICE_NAME = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** The object is a Service of type LoadBalancer (the only kind that opens anything). */
export const isLoadBalancer = (input: unknown): boolean =>
  (input as { spec?: { type?: unknown } } | null)?.spec?.type === "LoadBalancer";

/**
 * Validates a LoadBalancer Service; call only when {@link isLoadBalancer}
 * holds. Host bits set in a source range are cleared and noted.
 */
export function parseService(input: unknown): Validated<LoadBalancer> {
  const r = v.safeParse(LoadBalancerSchema, input, { abortEarly: false });
  if (!r.success) return { ok: false, problems: issuesToProblems(r.issues) };
  const { metadata, spec, status } = r.output;
  if (!SERVICE_NAME.test(metadata.name)) {
    return { ok: false, problems: [{ path: "metadata.name", message: `${show(metadata.name)} is not a Service name (lowercase RFC 1035 label: a letter first, at most 63 characters)` }] };
  }
  const seen = new Set<string>();
  const addresses = [];
  for (const ing of status?.loadBalancer?.ingress ?? []) if (ing.ip) addresses.push(ing.ip);
  if (spec.loadBalancerIP) addresses.push(spec.loadBalancerIP);
  const sourceRanges = spec.loadBalancerSourceRanges ?? [];
  const rawRanges = (input as { spec?: { loadBalancerSourceRanges?: unknown[] } }).spec?.loadBalancerSourceRanges;
  const notes: Problem[] = [];
  sourceRanges.forEach((c, i) => {
    if (c.hostBitsSet) notes.push({ path: `spec.loadBalancerSourceRanges[${i}]`, message: `${show(rawRanges?.[i])} has host bits set; using ${c.text}` });
  });
  return {
    ok: true,
    value: {
      namespace: metadata.namespace,
      name: metadata.name,
      addresses: addresses.filter((a) => !seen.has(a.text) && seen.add(a.text)),
      ports: (spec.ports ?? []).map((p) => ({ protocol: p.protocol, port: p.port })),
      sourceRanges,
    },
    notes,
  };
}
