/**
 * Renders the desired state into the text of `table inet firewall` (SPEC §4).
 * Pure: the same input gives the same bytes; nothing here touches the kernel.
 *
 * Packet-path cost is flat in the number of policies and services (§4.6):
 * every policy and service becomes elements of a few interval verdict maps
 * (split into disjoint pieces, each owned by one policy or service). Each
 * element carries its own counter and its owner's comment and accepts: the
 * per-policy count is the sum of the owner's elements (lib/stats/), and the
 * kernel holds no object per policy beyond its elements. (Chains and named
 * counters per policy cost the kernel twice the load time of the whole rest
 * at 10,000 policies, and made every later `nft` call fill a cache of them.)
 *
 * @example
 * ```ts
 * import { parseCidr } from "../api/address.ts";
 * import { renderRuleset } from "./render.ts";
 * const cluster = parseCidr("10.0.0.0/8");
 * if (cluster.ok) {
 *   const ruleset = renderRuleset({ policies: [], services: [], clusterPrefixes: [cluster.value], internalPrefixes: [], privateVrf: 42 });
 *   console.log(ruleset.text.startsWith("table inet firewall {")); // true
 * }
 * ```
 * @module
 */
import { type AddressRange, anyAddress, type Cidr, type Family, formatRange, subtractRanges } from "../api/address.ts";
import type { Policy, PolicyRule, Protocol } from "../api/policy.ts";
import type { LoadBalancer } from "../api/service.ts";
import { type Direction, policyChain, policyComment, type ProtocolLabel, serviceChain, serviceComment } from "./names.ts";
import { ELEMENT_BUDGET } from "./budget.ts";
import { layer } from "./layers.ts";
import { type Box, type Piece, partition, type Span } from "./partition.ts";

export interface DesiredState {
  /** Valid policies in scope (namespace `firewall`). */
  readonly policies: readonly Policy[];
  /** Valid LoadBalancer services, any namespace. */
  readonly services: readonly LoadBalancer[];
  readonly clusterPrefixes: readonly Cidr[];
  readonly internalPrefixes: readonly Cidr[];
  /** Private interfaces are `vlan<N>` and `vrf<N>`; without it, direction is told by the cluster prefixes. */
  readonly privateVrf: number | null;
  /**
   * The Firewall's `spec.logacceptedconnections` (SPEC §3.1): every map element also logs the new
   * connections it accepts, at most {@link ACCEPT_LOG_RULE}'s 10/s for the whole table. False when
   * there is no valid Firewall; absent counts as false.
   */
  readonly logAcceptedConnections?: boolean;
  /**
   * Set by an incremental classification: what came and went against the state `from` (held
   * weakly), by identity. A renderer whose last render was of `from` may diff by these alone
   * instead of walking every policy; any other renderer ignores them.
   */
  readonly changes?: StateChanges;
}

/** The policies and services of a state that are not in the state `from`, and those of `from` not in it. */
export interface StateChanges {
  readonly from: WeakRef<DesiredState>;
  readonly policies: { readonly added: readonly Policy[]; readonly removed: readonly Policy[] };
  readonly services: { readonly added: readonly LoadBalancer[]; readonly removed: readonly LoadBalancer[] };
}

export const TABLE = "firewall";
export const DROP_LOG_PREFIX = "nftables-firewall-dropped: ";
export const ACCEPT_LOG_PREFIX = "nftables-firewall-accepted: ";

/**
 * Accept logging (`logacceptedconnections`): one shared chain holds the only rate limiter, so the
 * 10/s bound is global, not per policy; every map element then goes to it instead of accepting
 * directly (the element has counted already), and the chain logs new connections and accepts.
 * A chain rather than a named `limit` object: the applier deletes every chain of ours it lists, so
 * turning the flag off leaves nothing behind (it does not list stateful objects other than counters).
 */
export const ACCEPT_LOG_CHAIN = "accept_log";
export const ACCEPT_LOG_RULE = `ct state new limit rate 10/second burst 10 packets log prefix "${ACCEPT_LOG_PREFIX}"`;
/** The verdict of every map element: accept, or through {@link ACCEPT_LOG_CHAIN} when accept logging is on. */
export const elementVerdict = (logAccepted: boolean): string => (logAccepted ? `goto ${ACCEPT_LOG_CHAIN}` : "accept");

/** Named counters whose values carry over every change (SPEC §4.5); dashboards use these names. */
export const ACCOUNTING_COUNTERS = ["external_in", "external_out", "internal_in", "internal_out", "drop_total", "drop_ratelimit"] as const;

const PROTO_NUMBER: Record<Protocol, bigint> = { tcp: 6n, udp: 17n, sctp: 132n };
const PROTO_NAME = new Map<bigint, Protocol>([[6n, "tcp"], [17n, "udp"], [132n, "sctp"]]);
const ALL_PORTS: Span = [0n, 65535n];
const PROTOCOLS: readonly Protocol[] = ["tcp", "udp", "sctp"];
const LABELS: readonly ProtocolLabel[] = ["tcp", "udp", "sctp", "any"];

/**
 * A policy's or service's owner name and the comment on its elements; it is also its counted rule
 * (the sum of the elements carrying that comment), so the ruleset's counted rules are its owners
 * themselves, one object each across incremental renders.
 */
export interface Owner extends CountedRule {
  readonly counter: null;
  readonly verdict: "accept";
}

const owner = (chain: string, comment: string): Owner => ({ chain, comment, counter: null, verdict: "accept" });

const familyName = (f: Family) => (f === 4 ? "ip" : "ip6");
const addrType = (f: Family) => (f === 4 ? "ipv4_addr" : "ipv6_addr");
const span = (r: AddressRange): Span => [r.first, r.last];

/** Each block's cidr minus that block's own excepts (never another block's), per family. */
function peerRanges(peers: PolicyRule["peers"], family: Family): AddressRange[] {
  if (peers === null) return [anyAddress(family)];
  return peers.filter((b) => b.cidr.family === family).flatMap((b) => subtractRanges(b.cidr, b.except));
}

/** The five kinds of verdict map, in the order the table declares them (per family). */
export const MAP_KINDS = ["egressPorts", "egressAny", "ingressPorts", "ingressAny", "services"] as const;
export type MapKind = (typeof MAP_KINDS)[number];
/** One map (layer 0's name aside): a kind and a family, e.g. `egressPorts4`. */
export type MapKey = `${MapKind}${Family}`;
export const MAP_KEYS: readonly MapKey[] = [4, 6].flatMap((f) => MAP_KINDS.map((k) => `${k}${f}` as MapKey));

/** What one object contributes: its owners (in their fixed order) and its boxes, each for one map. */
export interface ObjectBoxes {
  readonly owners: readonly Owner[];
  /** In generation order (the order an owner's boxes are merged in); `owner` indexes `owners`. */
  readonly boxes: readonly { readonly map: MapKey; readonly owner: number; readonly dims: Span[] }[];
}

/** The boxes of one policy in one direction: one owner per protocol label it uses. */
export function policyObjectBoxes(policy: Policy, dir: Direction): ObjectBoxes {
  const rules = dir === "egress" ? policy.egress : policy.ingress;
  const owners: Owner[] = [];
  const boxes: { map: MapKey; owner: number; dims: Span[] }[] = [];
  // One owner (name + comment, the comment on its elements) per protocol label used by this policy, in a fixed order.
  const ownerOf = new Map<ProtocolLabel, number>();
  for (const label of LABELS) {
    const used = rules.some((r) => (label === "any" ? r.ports === null : r.ports?.some((p) => p.protocol === label)));
    if (!used) continue;
    ownerOf.set(label, owners.length);
    owners.push(owner(policyChain(dir, label, policy.name), policyComment(dir, label, policy.name)));
  }
  const ports = (f: Family): MapKey => `${dir}Ports${f}`;
  const any = (f: Family): MapKey => `${dir}Any${f}`;
  for (const rule of rules) {
    for (const family of [4, 6] as const) {
      for (const a of peerRanges(rule.peers, family)) {
        if (rule.ports === null) {
          const owner = ownerOf.get("any") as number;
          boxes.push({ map: any(family), owner, dims: [span(a)] });
          for (const p of PROTOCOLS) boxes.push({ map: ports(family), owner, dims: [span(a), [PROTO_NUMBER[p], PROTO_NUMBER[p]], ALL_PORTS] });
        } else {
          for (const p of rule.ports) {
            const proto = PROTO_NUMBER[p.protocol];
            boxes.push({ map: ports(family), owner: ownerOf.get(p.protocol) as number, dims: [span(a), [proto, proto], [BigInt(p.first), BigInt(p.last)]] });
          }
        }
      }
    }
  }
  return { owners, boxes };
}

/** The boxes of one LoadBalancer service: one owner; none without addresses or ports (it opens nothing yet). */
export function serviceObjectBoxes(svc: LoadBalancer): ObjectBoxes {
  if (svc.addresses.length === 0 || svc.ports.length === 0) return { owners: [], boxes: [] };
  const boxes: { map: MapKey; owner: number; dims: Span[] }[] = [];
  for (const addr of svc.addresses) {
    const sources = svc.sourceRanges.length === 0 ? [anyAddress(addr.family)] : svc.sourceRanges.filter((c) => c.family === addr.family);
    for (const port of svc.ports) {
      const proto = PROTO_NUMBER[port.protocol];
      for (const src of sources) boxes.push({ map: `services${addr.family}`, owner: 0, dims: [[addr.value, addr.value], [proto, proto], [BigInt(port.port), BigInt(port.port)], span(src)] });
    }
  }
  return { owners: [owner(serviceChain(svc.namespace, svc.name), serviceComment(svc.namespace, svc.name))], boxes };
}

const byName = (a: Policy, b: Policy) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
export const serviceKey = (s: LoadBalancer): string => `${s.namespace}/${s.name}`;
const byServiceKey = (a: LoadBalancer, b: LoadBalancer) => (serviceKey(a) < serviceKey(b) ? -1 : serviceKey(a) > serviceKey(b) ? 1 : 0);
/** Policies in ownership order (name). */
export const sortedPolicies = (policies: readonly Policy[]): Policy[] => policies.toSorted(byName);
/** Services in ownership order (namespace/name). */
export const sortedServices = (services: readonly LoadBalancer[]): LoadBalancer[] => services.toSorted(byServiceKey);

const fmtSpan = (family: Family, s: Span) => formatRange({ family, first: s[0], last: s[1] });
const fmtPort = (s: Span) => (s[0] === s[1] ? `${s[0]}` : `${s[0]}-${s[1]}`);
const fmtProto = (s: Span) => PROTO_NAME.get(s[0]) as string;

/** Name of layer 0, key type and how each key dimension prints, of one map. */
export function mapSpec(key: MapKey): { base: string; type: string; fields: readonly ((s: Span) => string)[] } {
  const f = Number(key.at(-1)) as Family;
  const kind = key.slice(0, -1) as MapKind;
  const a = (s: Span) => fmtSpan(f, s);
  const t = addrType(f);
  const l4 = `${t} . inet_proto . inet_service`;
  switch (kind) {
    case "egressPorts": return { base: `egress${f}_ports`, type: l4, fields: [a, fmtProto, fmtPort] };
    case "egressAny": return { base: `egress${f}_any`, type: t, fields: [a] };
    case "ingressPorts": return { base: `ingress${f}_ports`, type: l4, fields: [a, fmtProto, fmtPort] };
    case "ingressAny": return { base: `ingress${f}_any`, type: t, fields: [a] };
    case "services": return { base: `services${f}`, type: `${l4} . ${t}`, fields: [a, fmtProto, fmtPort, a] };
  }
}

/** Layers of one kind of map, at most (deeper overlap chains are split in the top layer, see layers.ts). */
export const MAX_LAYERS = 8;

/** Name of layer `n` of a map: layer 0 keeps the plain name (tests and dashboards know it). */
export const layerName = (base: string, n: number): string => (n === 0 ? base : `${base}_${n}`);

/** The order pieces are listed in: by the start of each dimension (pieces of one layer never share all starts). */
export const cmpDims = (a: readonly Span[], b: readonly Span[]): number => {
  for (let d = 0; d < a.length; d++) {
    const x = (a[d] as Span)[0];
    const y = (b[d] as Span)[0];
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
};

/** A piece's key as nft reads it; `fields` says how to print each dimension. */
export const keyText = (dims: readonly Span[], fields: readonly ((s: Span) => string)[]): string => dims.map((s, i) => (fields[i] as (s: Span) => string)(s)).join(" . ");

/**
 * The elements of one interval verdict map as `key text → owner name`. Pieces are sorted, so the
 * text is stable.
 */
function mapElements(pieces: readonly Piece[], fields: readonly ((s: Span) => string)[], ownerName: (owner: number) => string): Map<string, string> {
  const sorted = pieces.toSorted((a, b) => cmpDims(a.dims, b.dims));
  const out = new Map<string, string>();
  for (const p of sorted) out.set(keyText(p.dims, fields), ownerName(p.owner));
  return out;
}

/**
 * One map element as nft reads it: its key, its counter's start (`carried`, the count of the
 * elements of the same owner it replaces, when given; else the map's counter flag starts it at
 * zero), its owner's comment, its verdict.
 */
export function elementText(key: string, comment: string, verdict: string, carried?: { packets: number; bytes: number }): string {
  // The map's `counter` flag gives every element its counter; spelling it out per element only
  // costs nft parsing time (~10 % of a load at 10,000 policies). A carried count needs it.
  const counter = carried && (carried.packets > 0 || carried.bytes > 0) ? ` counter packets ${carried.packets} bytes ${carried.bytes}` : "";
  return `${key}${counter} comment "${comment}" : ${verdict}`;
}

/** A map's declaration without elements: every element gets a counter. */
export const mapDeclaration = (type: string): string => `type ${type} : verdict; flags interval; counter;`;

/**
 * The elements block of a map, by its elements object: an incremental render hands unchanged maps
 * on as the same object, so their text is not built again. (An owner's comment is a function of
 * its name, so the text depends on the elements and the verdict alone.)
 */
const elementsText = new WeakMap<ReadonlyMap<string, string>, { verdict: string; text: string }>();

/**
 * Hands the text of a map's elements over with the elements (each line as {@link elementText}
 * makes it, in the elements' order), so an incremental render joins kept lines instead of
 * formatting them all again.
 */
export function primeElementsText(elements: ReadonlyMap<string, string>, verdict: string, lines: readonly string[]): void {
  if (lines.length > 0) elementsText.set(elements, { verdict, text: `\t\telements = {\n\t\t\t${lines.join(",\n\t\t\t")}\n\t\t}` });
}

function renderMap(name: string, type: string, elements: ReadonlyMap<string, string>, verdict: string, owners: ReadonlyMap<string, string>): string[] {
  const lines = [`\tmap ${name} {`, `\t\ttype ${type} : verdict`, "\t\tflags interval", "\t\tcounter"];
  if (elements.size > 0) {
    let cached = elementsText.get(elements);
    if (cached?.verdict !== verdict) {
      const elems = [...elements].map(([key, owner]) => elementText(key, owners.get(owner) as string, verdict));
      cached = { verdict, text: `\t\telements = {\n\t\t\t${elems.join(",\n\t\t\t")}\n\t\t}` };
      elementsText.set(elements, cached);
    }
    lines.push(cached.text);
  }
  lines.push("\t}");
  return lines;
}

function renderSet(name: string, family: Family, prefixes: readonly Cidr[], counts?: Map<string, number>): string[] {
  const lines = [`\tset ${name} {`, `\t\ttype ${addrType(family)}`, "\t\tflags interval"];
  const ranges = partition(prefixes.filter((c) => c.family === family).map((c) => ({ dims: [span(c)], owner: 0 })));
  counts?.set(name, ranges.length);
  if (ranges.length > 0) lines.push(`\t\telements = { ${ranges.map((r) => fmtSpan(family, r.dims[0] as Span)).join(", ")} }`);
  lines.push("\t\tauto-merge", "\t}");
  return lines;
}

/** A rendered table: its text, and the parts the applier changes one by one. */
export interface Ruleset {
  readonly text: string;
  /** Every named counter the table declares (the applier keeps their values). */
  readonly counters: readonly string[];
  /**
   * Everything but the map elements, the maps of layers above 0 and the forward chain's rules;
   * when it is unchanged, those parts can be patched alone.
   */
  readonly skeleton: string;
  /** Map name → element key → the name of the owner (policy or service) it belongs to. */
  readonly elements: ReadonlyMap<string, ReadonlyMap<string, string>>;
  /**
   * Owner name (`np.eg.tcp.<policy>`, `svc.<namespace>.<name>`) → its comment, which every
   * element of the owner carries in the kernel: the kernel's own record of who owns an element.
   * Read by name; its iteration order means nothing (an incremental render patches it).
   */
  readonly owners: ReadonlyMap<string, string>;
  /**
   * Map name → key type of every map declared. Maps of layers above 0 come and go with the
   * overlaps; a patch adds or deletes them and rewrites the forward chain's rules (all counters
   * there are named, so nothing is reset).
   */
  readonly maps: ReadonlyMap<string, string>;
  /** The rules of chain forward, in order (see {@link Ruleset.maps}). */
  readonly forwardRules: readonly string[];
  /** The verdict of every map element ({@link elementVerdict}). */
  readonly verdict: string;
  /** Set name → its elements (the address sets; maps are in {@link Ruleset.elements}). */
  readonly sets?: ReadonlyMap<string, number>;
  /** The text before and after the maps, for {@link tableText}. */
  readonly parts: { readonly head: string; readonly tail: string };
  /**
   * What changed against `from` (the renderer's previous result), when the renderer knows:
   * only the maps listed differ, by exactly these elements (a new or gone layer map lists all of
   * its elements). The applier then diffs nothing itself.
   */
  readonly delta?: ElementDelta;
  /**
   * Every rule with a comment that counts, with where its count lives and its
   * verdict: with this, status.stats of our table come from named counters and
   * the maps' element counters, without listing the table's chains.
   */
  readonly countedRules: readonly CountedRule[];
}

/** See {@link Ruleset.delta}. */
export interface ElementDelta {
  /** Weakly: each result would otherwise keep every earlier one alive. */
  readonly from: WeakRef<Ruleset>;
  /** Map name → keys gone (with the owner they had) and keys new (with their owner). */
  readonly maps: ReadonlyMap<string, { readonly removed: readonly (readonly [string, string])[]; readonly added: readonly (readonly [string, string])[] }>;
}

/** A counted rule of our table, as `status.stats.rules` keys it. */
export interface CountedRule {
  /** The chain of a fixed rule; for a policy or service, its owner name (`np.eg.tcp.<name>`, `svc.<ns>.<name>`). */
  readonly chain: string;
  readonly comment: string;
  /** The named counter it counts into; null: the sum of the map elements carrying its comment. */
  readonly counter: string | null;
  readonly verdict: "accept" | "drop" | "other";
}

/** The forward chain's counted rules with comments (see {@link forwardChain}); accounting rules have none. */
const FIXED_COUNTED: readonly CountedRule[] = [
  { chain: "forward", comment: "accept established connections", counter: "accept_established", verdict: "accept" },
  { chain: "forward", comment: "drop packets with invalid ct state", counter: "drop_invalid_ct", verdict: "drop" },
  { chain: "forward", comment: "drop ping floods", counter: "drop_ping_floods", verdict: "drop" },
  { chain: "forward", comment: "accept icmp", counter: "accept_icmp", verdict: "accept" },
  { chain: "forward", comment: "count and log dropped packets", counter: "drop_total", verdict: "other" },
];

/** What {@link renderRuleset} returns: the ruleset, and how big it came out (for logs and metrics). */
export interface RenderedRuleset extends Ruleset {
  /** Map elements in all maps (at most the sum of the objects' budget counts, lib/ruleset/budget.ts). */
  readonly elementCount: number;
  /**
   * Maps whose overlaps were too deep to layer and too big to split within the
   * total budget: such a ruleset is incomplete and must not be applied.
   */
  readonly overflow: readonly string[];
}

const FIXED_COUNTERS = [...ACCOUNTING_COUNTERS, "accept_established", "drop_invalid_ct", "drop_ping_floods", "accept_icmp"];

/** One kind of map of one family, spread over layers: each layer is one map and one lookup. */
export interface LayeredMap {
  readonly base: string;
  readonly type: string;
  /** Map name → elements, layer 0 first; layer 0 always, further layers only when not empty. */
  readonly layers: readonly { name: string; elements: Map<string, string> }[];
}

/** Layers one map's boxes (owners index `owners`) from scratch. */
export function layeredMap(key: MapKey, boxes: readonly Box[], ownerName: (owner: number) => string, overflow: string[]): LayeredMap {
  const { base, type, fields } = mapSpec(key);
  const report = { overflow: false };
  const pieces = layer(boxes, MAX_LAYERS, ELEMENT_BUDGET.total, report);
  if (report.overflow) overflow.push(base);
  const layers = pieces.length === 0 ? [[]] : pieces;
  return { base, type, layers: layers.map((l, n) => ({ name: layerName(base, n), elements: mapElements(l, fields, ownerName) })) };
}

/**
 * The table's text with counts carried: the first element of every owner in `carried` starts its
 * counter at that owner's count (the elements it replaces). Without `carried`, `ruleset.text`.
 */
export function tableText(ruleset: Ruleset, carried?: ReadonlyMap<string, { packets: number; bytes: number }>): string {
  if (!carried || carried.size === 0) return ruleset.text;
  const pending = new Map(carried);
  const lines = [ruleset.parts.head];
  for (const [name, type] of ruleset.maps) {
    const elements = ruleset.elements.get(name) ?? new Map<string, string>();
    lines.push(`\tmap ${name} {`, `\t\ttype ${type} : verdict`, "\t\tflags interval", "\t\tcounter");
    if (elements.size > 0) {
      const elems = [...elements].map(([key, owner]) => {
        const comment = ruleset.owners.get(owner) as string;
        const c = pending.get(comment);
        if (c) pending.delete(comment);
        return elementText(key, comment, ruleset.verdict, c);
      });
      lines.push(`\t\telements = {\n\t\t\t${elems.join(",\n\t\t\t")}\n\t\t}`);
    }
    lines.push("\t}");
  }
  lines.push(ruleset.parts.tail);
  return `${lines.join("\n")}\n`;
}

/**
 * The table's text with every map declared but empty: what a cold load gives `nft`, the elements
 * going in over netlink after it (lib/nft/element-batch.ts).
 */
export function emptyMapsText(ruleset: Ruleset): string {
  const lines = [ruleset.parts.head];
  for (const [name, type] of ruleset.maps) lines.push(`\tmap ${name} {`, `\t\ttype ${type} : verdict`, "\t\tflags interval", "\t\tcounter", "\t}");
  lines.push(ruleset.parts.tail);
  return `${lines.join("\n")}\n`;
}

/** Renders `table inet firewall` for the desired state. */
export function renderRuleset(state: DesiredState): RenderedRuleset {
  const owners: Owner[] = [];
  const boxes = Object.fromEntries(MAP_KEYS.map((k) => [k, [] as Box[]])) as Record<MapKey, Box[]>;
  const add = (o: ObjectBoxes) => {
    const base = owners.length;
    owners.push(...o.owners);
    for (const b of o.boxes) boxes[b.map].push({ dims: b.dims, owner: base + b.owner });
  };
  const policies = sortedPolicies(state.policies);
  for (const p of policies) add(policyObjectBoxes(p, "egress"));
  for (const p of policies) add(policyObjectBoxes(p, "ingress"));
  for (const s of sortedServices(state.services)) add(serviceObjectBoxes(s));
  const overflow: string[] = [];
  const ownerName = (i: number) => (owners[i] as Owner).chain;
  const maps = Object.fromEntries(MAP_KEYS.map((k) => [k, layeredMap(k, boxes[k], ownerName, overflow)])) as Record<MapKey, LayeredMap>;
  return assemble(state, maps, owners, overflow);
}

/** The table from its layered maps and owners (in owner order): the text and the model the applier diffs. */
export function assemble(state: DesiredState, maps: Readonly<Record<MapKey, LayeredMap>>, owners: readonly Owner[], overflow: readonly string[], ownerComments?: ReadonlyMap<string, string>): RenderedRuleset {
  const all = MAP_KEYS.map((k) => maps[k]);
  const declared = all.flatMap((m) => m.layers.map((l) => ({ name: l.name, type: m.type, elements: l.elements })));
  const sets: string[] = [];
  const setCounts = new Map<string, number>();
  for (const f of [4, 6] as const) {
    sets.push(...renderSet(`cluster_prefixes${f}`, f, state.clusterPrefixes, setCounts));
    sets.push(...renderSet(`internal_prefixes${f}`, f, state.internalPrefixes, setCounts));
  }
  const forward = forwardChain(state, maps);

  const out: string[] = [`table inet ${TABLE} {`];
  const counters = FIXED_COUNTERS;
  for (const c of counters) out.push(`\tcounter ${c} {`, "\t}");
  out.push(...sets);
  const logAccepted = state.logAcceptedConnections === true;
  const verdict = elementVerdict(logAccepted);
  // The incremental renderer hands its comments on (patched, not built again); they are these.
  const comments = ownerComments ?? new Map(owners.map((o) => [o.chain, o.comment]));
  const head = out.join("\n");
  for (const m of declared) out.push(...renderMap(m.name, m.type, m.elements, verdict, comments));
  const acceptLog = logAccepted ? [`\tchain ${ACCEPT_LOG_CHAIN} {`, `\t\t${ACCEPT_LOG_RULE}`, "\t\taccept", "\t}"] : [];
  const tail = [...acceptLog, ...forward, "}"].join("\n");
  out.push(tail);

  // Layer-0 maps always exist; higher layers and the lookups into them may be patched in and out.
  // The elements' verdict is part of it: turning accept logging on or off replaces the table.
  const skeleton = [
    ...FIXED_COUNTERS.map((c) => `\tcounter ${c} {\n\t}`),
    ...sets,
    ...all.flatMap((m) => renderMap(m.base, m.type, new Map(), verdict, comments)),
    ...acceptLog,
    (forward[0] as string),
    (forward[1] as string),
    `\t# elements: ${verdict}`,
  ].join("\n");
  return {
    text: `${out.join("\n")}\n`,
    counters,
    skeleton,
    elements: new Map(declared.map((m) => [m.name, m.elements])),
    owners: comments,
    sets: setCounts,
    maps: new Map(declared.map((m) => [m.name, m.type])),
    forwardRules: forward.slice(2, -1).map((l) => l.trim()),
    verdict,
    parts: { head, tail },
    countedRules: [...FIXED_COUNTED, ...owners],
    elementCount: declared.reduce((n, m) => n + m.elements.size, 0),
    overflow,
  };
}

function forwardChain(state: DesiredState, maps: Readonly<Record<MapKey, LayeredMap>>): string[] {
  const priv = state.privateVrf === null ? null : `{ "vlan${state.privateVrf}", "vrf${state.privateVrf}" }`;
  // Direction: out of / into the private interfaces; without them, towards / from the cluster prefixes.
  const toCluster = (f: Family) => (priv ? `oifname ${priv}` : `${familyName(f)} daddr @cluster_prefixes${f}`);
  const fromCluster = (f: Family) => (priv ? `iifname ${priv}` : `${familyName(f)} saddr @cluster_prefixes${f}`);
  // Accepts are bound to the cluster side (SPEC §4.1 step 4): a cluster source address arriving on
  // the external side is spoofed and must not pass as egress; services only towards the cluster.
  const egressFrom = (f: Family) => `${priv ? `iifname ${priv} ` : ""}${familyName(f)} saddr @cluster_prefixes${f}`;
  const serviceTo = priv ? `oifname ${priv} ` : "";

  const fwd: string[] = ["type filter hook forward priority filter; policy drop;"];
  for (const f of [4, 6] as const) {
    const ip = familyName(f);
    fwd.push(
      `${toCluster(f)} ${ip} saddr @internal_prefixes${f} counter name "internal_in"`,
      `${toCluster(f)} ${ip} saddr != @internal_prefixes${f} counter name "external_in"`,
      `${fromCluster(f)} ${ip} daddr @internal_prefixes${f} counter name "internal_out"`,
      `${fromCluster(f)} ${ip} daddr != @internal_prefixes${f} counter name "external_out"`,
    );
  }
  fwd.push(
    `ct state established,related counter name "accept_established" accept comment "accept established connections"`,
    `ct state invalid counter name "drop_invalid_ct" drop comment "drop packets with invalid ct state"`,
    `icmp type echo-request limit rate over 10/second burst 10 packets counter name "drop_ping_floods" drop comment "drop ping floods"`,
    `icmpv6 type echo-request limit rate over 10/second burst 10 packets counter name "drop_ping_floods" drop comment "drop ping floods"`,
    `icmp type { destination-unreachable, time-exceeded, parameter-problem } counter name "accept_icmp" accept comment "accept icmp"`,
    `icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect } counter name "accept_icmp" accept comment "accept icmp"`,
  );
  // One lookup per layer, lowest first: the first layer with a match decides (its chain accepts).
  const lookups = (m: LayeredMap, match: string) => m.layers.map((l) => `${match} vmap @${l.name}`);
  for (const f of [4, 6] as const) {
    const ip = familyName(f);
    fwd.push(
      ...lookups(maps[`ingressPorts${f}`], `${toCluster(f)} ${ip} saddr . meta l4proto . th dport`),
      ...lookups(maps[`ingressAny${f}`], `${toCluster(f)} ${ip} saddr`),
      ...lookups(maps[`services${f}`], `${serviceTo}${ip} daddr . meta l4proto . th dport . ${ip} saddr`),
      ...lookups(maps[`egressPorts${f}`], `${egressFrom(f)} ${ip} daddr . meta l4proto . th dport`),
      ...lookups(maps[`egressAny${f}`], `${egressFrom(f)} ${ip} daddr`),
    );
  }
  fwd.push(`counter name "drop_total" limit rate 10/second burst 10 packets log prefix "${DROP_LOG_PREFIX}" comment "count and log dropped packets"`);
  return ["\tchain forward {", ...fwd.map((l) => `\t\t${l}`), "\t}"];
}
