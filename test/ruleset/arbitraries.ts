/**
 * fast-check generators of VALID raw Kubernetes objects (as a user would write
 * them): ClusterwideNetworkPolicies with IPv4/IPv6 blocks and excepts inside
 * them, ports and ranges, missing `to`/`ports`; LoadBalancer Services.
 *
 * "pool" addresses come from one small block per family so that policies
 * overlap a lot (exercising the disjoint split); "wide" ones come from the
 * whole address space.
 */
import fc from "fast-check";
import ipaddr from "ipaddr.js";

export type Family = 4 | 6;
const BITS = { 4: 32, 6: 128 } as const;
const POOL_BASE = { 4: 0xcb007100n /* 203.0.113.0 */, 6: 0x20010db8n << 96n /* 2001:db8:: */ } as const;

export function addressText(family: Family, value: bigint): string {
  const n = family === 4 ? 4 : 16;
  const bytes: number[] = [];
  for (let i = n - 1; i >= 0; i--) bytes.push(Number((value >> BigInt(8 * i)) & 0xffn));
  return ipaddr.fromByteArray(bytes).toString();
}

const mask = (family: Family, prefix: number): bigint => ((1n << BigInt(BITS[family] - prefix)) - 1n);

export interface RawBlock {
  cidr: string;
  except?: string[];
}

/** A block (optionally written with host bits set) and 0..3 excepts inside it. */
export function blockArb(family: Family, mode: "pool" | "wide"): fc.Arbitrary<RawBlock> {
  const bits = BITS[family];
  const addr = mode === "wide" ? fc.bigInt(0n, (1n << BigInt(bits)) - 1n) : fc.bigInt(0n, 255n).map((x) => POOL_BASE[family] + x);
  const prefix = mode === "wide" ? fc.integer({ min: 0, max: bits }) : fc.integer({ min: bits - 8, max: bits });
  return fc.tuple(addr, prefix, fc.boolean()).chain(([a, p, writeHostBits]) => {
    const first = a & ~mask(family, p);
    const last = first | mask(family, p);
    const except = fc
      .tuple(fc.integer({ min: p, max: bits }), fc.bigInt(first, last))
      .map(([ep, ea]) => `${addressText(family, ea & ~mask(family, ep))}/${ep}`);
    return fc.record(
      {
        cidr: fc.constant(`${addressText(family, writeHostBits ? a : first)}/${p}`),
        except: fc.array(except, { maxLength: 3 }),
      },
      { requiredKeys: ["cidr"] },
    );
  });
}

export const anyBlockArb: fc.Arbitrary<RawBlock> = fc.oneof(
  { arbitrary: blockArb(4, "pool"), weight: 3 },
  { arbitrary: blockArb(6, "pool"), weight: 2 },
  { arbitrary: blockArb(4, "wide"), weight: 1 },
  { arbitrary: blockArb(6, "wide"), weight: 1 },
);

export interface RawPort {
  protocol?: string;
  port?: number;
  endPort?: number;
}

const protocolArb = fc.constantFrom("TCP", "UDP", "SCTP");
const portValue = fc.oneof({ arbitrary: fc.integer({ min: 1, max: 12 }), weight: 2 }, { arbitrary: fc.integer({ min: 1, max: 65535 }), weight: 1 });

export const portArb: fc.Arbitrary<RawPort> = fc.oneof(
  fc.record({ protocol: protocolArb, port: portValue }, { requiredKeys: ["port"] }),
  portValue.chain((port) =>
    fc.record({ protocol: protocolArb, port: fc.constant(port), endPort: fc.integer({ min: port, max: Math.min(65535, port + 20) }) }, { requiredKeys: ["port", "endPort"] }),
  ),
  fc.record({ protocol: protocolArb }, { requiredKeys: [] }),
);

/** A list field: missing, null, empty, or 1..max items. */
const listField = <T>(item: fc.Arbitrary<T>, max: number): fc.Arbitrary<T[] | null | undefined> =>
  fc.oneof(
    { arbitrary: fc.constant(undefined), weight: 1 },
    { arbitrary: fc.constant(null), weight: 1 },
    { arbitrary: fc.constant(null).map((): T[] => []), weight: 1 }, // a fresh array each time
    { arbitrary: fc.array(item, { minLength: 1, maxLength: max }), weight: 5 },
  );

const ruleArb = (peerKey: "to" | "from") =>
  fc.tuple(listField(anyBlockArb, 3), listField(portArb, 3)).map(([peers, ports]) => {
    const rule: Record<string, unknown> = {};
    if (peers !== undefined) rule[peerKey] = peers;
    if (ports !== undefined) rule.ports = ports;
    return rule;
  });

export const nameArb = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,24}[a-z0-9])?(\.[a-z0-9]{1,6})?$/);
export const labelArb = fc.stringMatching(/^[a-z]([a-z0-9-]{0,12}[a-z0-9])?$/);

export const specArb = fc.record(
  { egress: fc.array(ruleArb("to"), { maxLength: 3 }), ingress: fc.array(ruleArb("from"), { maxLength: 3 }), description: fc.string() },
  { requiredKeys: [] },
);

export const cwnp = (name: string, spec: unknown) => ({
  apiVersion: "metal-stack.io/v1",
  kind: "ClusterwideNetworkPolicy",
  metadata: { name, namespace: "firewall" },
  spec,
});

/** 0..max valid policies with distinct names. */
export const policiesArb = (max: number) =>
  fc.uniqueArray(nameArb, { maxLength: max }).chain((names) => fc.tuple(...names.map((n) => specArb.map((spec) => cwnp(n, spec)))));

const serviceAddressArb = fc.oneof(
  fc.bigInt(0n, 255n).map((x) => addressText(4, POOL_BASE[4] + x)),
  fc.bigInt(0n, 255n).map((x) => addressText(6, POOL_BASE[6] + x)),
  fc.bigInt(0n, (1n << 32n) - 1n).map((x) => addressText(4, x)),
  fc.bigInt(0n, (1n << 128n) - 1n).map((x) => addressText(6, x)),
);

const sourceRangeArb = fc.oneof(blockArb(4, "pool"), blockArb(6, "pool"), blockArb(4, "wide"), blockArb(6, "wide")).map((b) => b.cidr);

export const serviceArb = (namespace: string, name: string) =>
  fc
    .record({
      ports: fc.array(fc.record({ protocol: protocolArb, port: portValue }, { requiredKeys: ["port"] }), { maxLength: 3 }),
      ips: fc.array(serviceAddressArb, { maxLength: 2 }),
      loadBalancerIP: fc.option(serviceAddressArb, { nil: undefined }),
      loadBalancerSourceRanges: fc.array(sourceRangeArb, { maxLength: 2 }),
    })
    .map(({ ports, ips, loadBalancerIP, loadBalancerSourceRanges }) => ({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name, namespace, annotations: { "metallb.universe.tf/address-pool": "x" } },
      spec: {
        type: "LoadBalancer",
        ports,
        ...(loadBalancerIP === undefined ? {} : { loadBalancerIP }),
        loadBalancerSourceRanges,
        ipFamilies: ["IPv4"],
      },
      status: { loadBalancer: { ingress: ips.map((ip) => ({ ip })) } },
    }));

/** 0..max valid LoadBalancer Services with distinct namespace/name. */
export const servicesArb = (max: number) =>
  fc
    .uniqueArray(fc.tuple(labelArb, labelArb), { maxLength: max, selector: ([ns, n]) => `${ns}/${n}` })
    .chain((keys) => fc.tuple(...keys.map(([ns, n]) => serviceArb(ns, n))));
