import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import type { Policy, PolicyRule } from "../../lib/api/policy.ts";
import type { LoadBalancer } from "../../lib/api/service.ts";
import { policyComment, serviceComment } from "../../lib/ruleset/names.ts";
import { ACCOUNTING_COUNTERS, DROP_LOG_PREFIX, renderRuleset } from "../../lib/ruleset/render.ts";
import { policiesArb, servicesArb } from "./arbitraries.ts";
import { addressValue, chainRules, cidr, lookup, lookupLayers, mapElements, mapLayers, PROTO_NUMBER, policy, section, service, state } from "./helpers.ts";
import { parsePolicy } from "../../lib/api/policy.ts";
import { parseService } from "../../lib/api/service.ts";

const render = (...args: Parameters<typeof state>) => renderRuleset(state(...args)).text;

/** The fixed named counters, the only ones the table declares (per-owner counts live in the map elements). */
const FIXED_COUNTERS = [...ACCOUNTING_COUNTERS, "accept_established", "drop_invalid_ct", "drop_ping_floods", "accept_icmp"];

/** Every map element of the text (all maps, all layers), parsed. */
const ownElements = (text: string) => [...text.matchAll(/^\tmap (\S+) \{$/gm)].flatMap((m) => mapElements(text, m[1] as string));

const allowDns = policy("allow-dns", {
  egress: [{ to: [{ cidr: "198.51.100.53/32" }, { cidr: "2001:db8:53::53/128" }], ports: [{ protocol: "UDP", port: 53 }, { protocol: "TCP", port: 53 }] }],
});

/** Where an egress packet from the cluster goes: the comment of the owner whose element matches, or null (falls through to the drop). */
function egressTarget(text: string, family: 4 | 6, daddr: string, proto: string, dport: number): string | null {
  const p = PROTO_NUMBER[proto] as bigint;
  const a = addressValue(daddr);
  const viaPorts = ["tcp", "udp", "sctp"].includes(proto) ? lookupLayers(mapLayers(text, `egress${family}_ports`), [a, p, BigInt(dport)]) : null;
  return viaPorts ?? lookupLayers(mapLayers(text, `egress${family}_any`), [a]);
}

function ingressTarget(text: string, family: 4 | 6, saddr: string, proto: string, dport: number): string | null {
  const p = PROTO_NUMBER[proto] as bigint;
  const a = addressValue(saddr);
  const viaPorts = ["tcp", "udp", "sctp"].includes(proto) ? lookupLayers(mapLayers(text, `ingress${family}_ports`), [a, p, BigInt(dport)]) : null;
  return viaPorts ?? lookupLayers(mapLayers(text, `ingress${family}_any`), [a]);
}

describe("render: fixed structure (SPEC §4.1, §4.5)", () => {
  const text = render({ policies: [allowDns] });

  test("the controller's table is inet firewall", () => {
    expect(text.startsWith("table inet firewall {\n")).toBe(true);
    expect(text.endsWith("}\n")).toBe(true);
    expect(text.match(/^table /gm)).toHaveLength(1);
  });

  test("the forward chain hooks forward with policy drop", () => {
    expect(chainRules(text, "forward")[0]).toBe("type filter hook forward priority filter; policy drop;");
  });

  test.each([
    ["accept established connections", /^ct state established,related .*accept comment "accept established connections"$/],
    ["drop packets with invalid ct state", /^ct state invalid .*drop comment "drop packets with invalid ct state"$/],
    ["drop ping floods", /^icmp type echo-request limit rate over 10\/second .*drop comment "drop ping floods"$/],
    ["accept icmp", /^icmp type \{ destination-unreachable, time-exceeded, parameter-problem \} .*accept comment "accept icmp"$/],
    ["count and log dropped packets", /^counter name "drop_total" limit rate 10\/second .*log prefix "nftables-firewall-dropped: " comment "count and log dropped packets"$/],
  ])("the forward chain has the rule commented %p", (_comment, re) => {
    expect(chainRules(text, "forward").some((r) => re.test(r))).toBe(true);
  });

  test("ICMPv6 floods are limited and ICMPv6 errors and neighbour discovery accepted", () => {
    const rules = chainRules(text, "forward");
    expect(rules.some((r) => r.startsWith("icmpv6 type echo-request limit rate over 10/second") && r.endsWith('comment "drop ping floods"'))).toBe(true);
    const icmp6 = rules.find((r) => r.startsWith("icmpv6 type {") && r.endsWith('comment "accept icmp"')) ?? "";
    for (const t of ["destination-unreachable", "packet-too-big", "time-exceeded", "parameter-problem", "nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-advert"]) expect(icmp6).toContain(t);
  });

  test("the log prefix is the one the drop-log reader looks for", () => {
    expect(DROP_LOG_PREFIX).toBe("nftables-firewall-dropped: ");
    expect(text).toContain('log prefix "nftables-firewall-dropped: "');
  });

  test("the forward chain keeps the SPEC order: accounting, ct state, icmp, accepts, count-and-log last", () => {
    const rules = chainRules(text, "forward");
    const at = (pred: (r: string) => boolean) => rules.findIndex(pred);
    const lastAccounting = Math.max(...rules.map((r, i) => (/counter name "(external|internal)_(in|out)"$/.test(r) ? i : -1)));
    const established = at((r) => r.includes("accept established connections"));
    const invalid = at((r) => r.includes("drop packets with invalid ct state"));
    const floods = at((r) => r.includes("drop ping floods"));
    const icmp = at((r) => r.includes('"accept icmp"'));
    const firstAccept = at((r) => r.includes(" vmap @"));
    expect(lastAccounting).toBeGreaterThan(0);
    expect(lastAccounting).toBeLessThan(established);
    expect(established).toBeLessThan(invalid);
    expect(invalid).toBeLessThan(floods);
    expect(floods).toBeLessThan(icmp);
    expect(icmp).toBeLessThan(firstAccept);
    expect(rules.at(-1)).toContain("count and log dropped packets");
  });

  test.each(["external_in", "external_out", "internal_in", "internal_out", "drop_total"])("named counter %p is declared and used", (name) => {
    expect(text).toContain(`\tcounter ${name} {\n`);
    expect(chainRules(text, "forward").some((r) => r.includes(`counter name "${name}"`))).toBe(true);
  });

  test("accounting counters are listed in the result for carrying over", () => {
    const r = renderRuleset(state({ policies: [allowDns] }));
    for (const c of ACCOUNTING_COUNTERS) expect(r.counters).toContain(c);
    expect(r.counters).toContain("drop_ratelimit");
    for (const c of r.counters) expect(text).toContain(`\tcounter ${c} {\n`);
  });

  test("accounting: out of a private interface counts in, into it counts out; internal by the internal prefixes", () => {
    const t = render({ internalPrefixes: [cidr("10.0.0.0/8"), cidr("fd00::/8"), cidr("192.0.2.0/24")], privateVrf: 104009 });
    const rules = chainRules(t, "forward");
    expect(rules).toContain('oifname { "vlan104009", "vrf104009" } ip saddr @internal_prefixes4 counter name "internal_in"');
    expect(rules).toContain('oifname { "vlan104009", "vrf104009" } ip saddr != @internal_prefixes4 counter name "external_in"');
    expect(rules).toContain('iifname { "vlan104009", "vrf104009" } ip daddr @internal_prefixes4 counter name "internal_out"');
    expect(rules).toContain('iifname { "vlan104009", "vrf104009" } ip daddr != @internal_prefixes4 counter name "external_out"');
    expect(rules).toContain('oifname { "vlan104009", "vrf104009" } ip6 saddr @internal_prefixes6 counter name "internal_in"');
    expect(section(t, "set", "internal_prefixes4")).toContain("elements = { 10.0.0.0/8, 192.0.2.0/24 }");
    expect(section(t, "set", "internal_prefixes6")).toContain("elements = { fd00::/8 }");
  });

  test("without a private VRF, direction is told by the cluster prefixes", () => {
    const rules = chainRules(render({ privateVrf: null }), "forward");
    expect(rules).toContain('ip daddr @cluster_prefixes4 ip saddr @internal_prefixes4 counter name "internal_in"');
    expect(rules).toContain('ip6 saddr @cluster_prefixes6 ip6 daddr != @internal_prefixes6 counter name "external_out"');
    expect(rules.some((r) => r.includes("ifname"))).toBe(false);
  });

  test("cluster prefixes go into per-family sets, overlaps merged", () => {
    const t = render({ clusterPrefixes: [cidr("10.0.0.0/8"), cidr("10.1.0.0/16"), cidr("172.16.0.0/12"), cidr("fd00::/8")] });
    expect(section(t, "set", "cluster_prefixes4")).toContain("elements = { 10.0.0.0/8, 172.16.0.0/12 }");
    expect(section(t, "set", "cluster_prefixes6")).toContain("elements = { fd00::/8 }");
  });
});

describe("render: policies (SPEC §4.2, §4.3)", () => {
  test.each([
    ["tcp", { egress: [{ ports: [{ port: 443 }] }] }],
    ["udp", { egress: [{ ports: [{ protocol: "UDP", port: 53 }] }] }],
    ["sctp", { egress: [{ ports: [{ protocol: "SCTP", port: 3868 }] }] }],
    ["any", { egress: [{ to: [{ cidr: "192.0.2.0/24" }] }] }],
  ])("egress comment: accept traffic for np <name> %s", (label, spec) => {
    const r = renderRuleset(state({ policies: [policy("allow-x", spec)] }));
    const comment = `accept traffic for np allow-x ${label}`;
    expect([...r.owners]).toEqual([[`np.eg.${label}.allow-x`, comment]]);
    expect(r.text).toContain(`comment "${comment}" : accept`);
    expect(ownElements(r.text).map((e) => e.comment)).toEqual(Array(r.elementCount).fill(comment));
  });

  test.each([
    ["tcp", { ingress: [{ ports: [{ port: 22 }] }] }],
    ["udp", { ingress: [{ ports: [{ protocol: "UDP", port: 51820 }] }] }],
    ["sctp", { ingress: [{ ports: [{ protocol: "SCTP" }] }] }],
    ["any", { ingress: [{ from: [{ cidr: "2001:db8::/32" }] }] }],
  ])("ingress comment: accept traffic for k8s network policy <name> %s", (label, spec) => {
    const r = renderRuleset(state({ policies: [policy("allow-y", spec)] }));
    const comment = `accept traffic for k8s network policy allow-y ${label}`;
    expect([...r.owners]).toEqual([[`np.in.${label}.allow-y`, comment]]);
    expect(r.text).toContain(`comment "${comment}" : accept`);
    expect(ownElements(r.text).map((e) => e.comment)).toEqual(Array(r.elementCount).fill(comment));
  });

  test("each policy protocol is its own owner: its elements carry its comment and count", () => {
    const r = renderRuleset(state({ policies: [allowDns] }));
    const t = r.text;
    const tcp = "accept traffic for np allow-dns tcp";
    const udp = "accept traffic for np allow-dns udp";
    expect([...r.owners]).toEqual([
      ["np.eg.tcp.allow-dns", tcp],
      ["np.eg.udp.allow-dns", udp],
    ]);
    expect(section(t, "map", "egress4_ports").split("\n").slice(3)).toEqual([
      "\t\telements = {",
      `\t\t\t198.51.100.53 . tcp . 53 comment "${tcp}" : accept,`,
      `\t\t\t198.51.100.53 . udp . 53 comment "${udp}" : accept`,
      "\t\t}",
    ]);
    expect(section(t, "map", "egress6_ports")).toContain(`\t\t\t2001:db8:53::53 . tcp . 53 comment "${tcp}" : accept,\n\t\t\t2001:db8:53::53 . udp . 53 comment "${udp}" : accept\n`);
    expect(r.elements.get("egress4_ports")).toEqual(new Map([["198.51.100.53 . tcp . 53", "np.eg.tcp.allow-dns"], ["198.51.100.53 . udp . 53", "np.eg.udp.allow-dns"]]));
    // Counted by the sum of its elements: no chain, no named counter of its own.
    expect(r.countedRules.filter((c) => c.counter === null)).toEqual([
      { chain: "np.eg.tcp.allow-dns", comment: tcp, counter: null, verdict: "accept" },
      { chain: "np.eg.udp.allow-dns", comment: udp, counter: null, verdict: "accept" },
    ]);
    expect(t.match(/^\tchain \S+ \{$/gm)).toEqual(["\tchain forward {"]);
    expect(r.counters).toEqual(FIXED_COUNTERS);
    expect([...(t.match(/^\tcounter \S+ \{$/gm) ?? [])]).toEqual(FIXED_COUNTERS.map((c) => `\tcounter ${c} {`));
    expect(t).not.toContain("np.eg.");
    expect(r.owners.has("np.eg.any.allow-dns")).toBe(false);
    expect(t).not.toContain("allow-dns any");
  });

  test("egress matches destination, protocol and port of the policy", () => {
    const t = render({ policies: [allowDns] });
    expect(egressTarget(t, 4, "198.51.100.53", "udp", 53)).toBe("accept traffic for np allow-dns udp");
    expect(egressTarget(t, 4, "198.51.100.53", "tcp", 53)).toBe("accept traffic for np allow-dns tcp");
    expect(egressTarget(t, 6, "2001:db8:53::53", "udp", 53)).toBe("accept traffic for np allow-dns udp");
    expect(egressTarget(t, 4, "198.51.100.53", "udp", 54)).toBeNull();
    expect(egressTarget(t, 4, "198.51.100.54", "udp", 53)).toBeNull();
    expect(egressTarget(t, 4, "198.51.100.53", "sctp", 53)).toBeNull();
    expect(egressTarget(t, 4, "198.51.100.53", "icmp", 0)).toBeNull();
  });

  test("egress applies only to sources in the cluster prefixes arriving on the private interfaces", () => {
    const rules = chainRules(render({ policies: [allowDns] }), "forward");
    expect(rules).toContain('iifname { "vlan42", "vrf42" } ip saddr @cluster_prefixes4 ip daddr . meta l4proto . th dport vmap @egress4_ports');
    expect(rules).toContain('iifname { "vlan42", "vrf42" } ip6 saddr @cluster_prefixes6 ip6 daddr vmap @egress6_any');
  });

  test("without a private VRF, egress applies to sources in the cluster prefixes on any interface", () => {
    const rules = chainRules(render({ policies: [allowDns], privateVrf: null }), "forward");
    expect(rules).toContain("ip saddr @cluster_prefixes4 ip daddr . meta l4proto . th dport vmap @egress4_ports");
    expect(rules).toContain("ip6 saddr @cluster_prefixes6 ip6 daddr vmap @egress6_any");
    expect(rules).toContain("ip daddr . meta l4proto . th dport . ip saddr vmap @services4");
  });

  test("with a private VRF, every accept lookup is bound to the cluster side: egress by iifname, ingress and services by oifname", () => {
    const t = render({ policies: [allowDns, policy("ssh-in", { ingress: [{ from: [{ cidr: "192.0.2.0/24" }], ports: [{ port: 22 }] }, { from: [{ cidr: "198.51.100.0/24" }] }] })], services: [service("shop", "web", { ports: [{ port: 443 }] }, ["10.0.1.80"])], privateVrf: 7 });
    const lookups = chainRules(t, "forward").filter((r) => r.includes(" vmap @"));
    expect(lookups).toEqual([
      'oifname { "vlan7", "vrf7" } ip saddr . meta l4proto . th dport vmap @ingress4_ports',
      'oifname { "vlan7", "vrf7" } ip saddr vmap @ingress4_any',
      'oifname { "vlan7", "vrf7" } ip daddr . meta l4proto . th dport . ip saddr vmap @services4',
      'iifname { "vlan7", "vrf7" } ip saddr @cluster_prefixes4 ip daddr . meta l4proto . th dport vmap @egress4_ports',
      'iifname { "vlan7", "vrf7" } ip saddr @cluster_prefixes4 ip daddr vmap @egress4_any',
      'oifname { "vlan7", "vrf7" } ip6 saddr . meta l4proto . th dport vmap @ingress6_ports',
      'oifname { "vlan7", "vrf7" } ip6 saddr vmap @ingress6_any',
      'oifname { "vlan7", "vrf7" } ip6 daddr . meta l4proto . th dport . ip6 saddr vmap @services6',
      'iifname { "vlan7", "vrf7" } ip6 saddr @cluster_prefixes6 ip6 daddr . meta l4proto . th dport vmap @egress6_ports',
      'iifname { "vlan7", "vrf7" } ip6 saddr @cluster_prefixes6 ip6 daddr vmap @egress6_any',
    ]);
  });

  test("ingress matches the source, towards the private interfaces", () => {
    const t = render({ policies: [policy("ssh-in", { ingress: [{ from: [{ cidr: "192.0.2.0/24" }], ports: [{ port: 22 }] }] })] });
    expect(ingressTarget(t, 4, "192.0.2.9", "tcp", 22)).toBe("accept traffic for k8s network policy ssh-in tcp");
    expect(ingressTarget(t, 4, "192.0.3.9", "tcp", 22)).toBeNull();
    expect(chainRules(t, "forward")).toContain('oifname { "vlan42", "vrf42" } ip saddr . meta l4proto . th dport vmap @ingress4_ports');
    expect(mapElements(t, "egress4_ports")).toEqual([]);
  });

  test("missing to: any destination of both families", () => {
    const t = render({ policies: [policy("web-out", { egress: [{ ports: [{ port: 443 }] }] })] });
    expect(egressTarget(t, 4, "0.0.0.0", "tcp", 443)).toBe("accept traffic for np web-out tcp");
    expect(egressTarget(t, 4, "255.255.255.255", "tcp", 443)).toBe("accept traffic for np web-out tcp");
    expect(egressTarget(t, 6, "2001:db8::1", "tcp", 443)).toBe("accept traffic for np web-out tcp");
    expect(section(t, "map", "egress4_ports")).toContain('0.0.0.0/0 . tcp . 443 comment "accept traffic for np web-out tcp" : accept');
    expect(section(t, "map", "egress6_ports")).toContain('::/0 . tcp . 443 comment "accept traffic for np web-out tcp" : accept');
  });

  test("missing ports: every protocol and port, including non-port protocols", () => {
    const t = render({ policies: [policy("to-partner", { egress: [{ to: [{ cidr: "203.0.113.0/24" }] }] })] });
    for (const proto of ["tcp", "udp", "sctp"]) expect(egressTarget(t, 4, "203.0.113.1", proto, 1)).toBe("accept traffic for np to-partner any");
    expect(egressTarget(t, 4, "203.0.113.1", "tcp", 65535)).toBe("accept traffic for np to-partner any");
    expect(egressTarget(t, 4, "203.0.113.1", "icmp", 0)).toBe("accept traffic for np to-partner any");
    expect(egressTarget(t, 4, "203.0.114.1", "icmp", 0)).toBeNull();
  });

  test("an empty rule (no to, no ports) accepts everything", () => {
    const t = render({ policies: [policy("open", { egress: [{}] })] });
    expect(egressTarget(t, 4, "8.8.8.8", "icmp", 0)).toBe("accept traffic for np open any");
    expect(egressTarget(t, 6, "::1", "udp", 9)).toBe("accept traffic for np open any");
  });

  test("endPort renders an inclusive port range", () => {
    const t = render({ policies: [policy("backends", { egress: [{ to: [{ cidr: "198.18.0.0/15" }], ports: [{ port: 8000, endPort: 8100 }] }] })] });
    expect(section(t, "map", "egress4_ports")).toContain('198.18.0.0/15 . tcp . 8000-8100 comment "accept traffic for np backends tcp" : accept');
    expect(egressTarget(t, 4, "198.19.255.255", "tcp", 8100)).toBe("accept traffic for np backends tcp");
    expect(egressTarget(t, 4, "198.19.255.255", "tcp", 8101)).toBeNull();
    expect(egressTarget(t, 4, "198.19.255.255", "tcp", 7999)).toBeNull();
  });

  test("a protocol-only port entry opens all ports of that protocol only", () => {
    const t = render({ policies: [policy("sctp-all", { egress: [{ to: [{ cidr: "192.0.2.0/24" }], ports: [{ protocol: "SCTP" }] }] })] });
    expect(section(t, "map", "egress4_ports")).toContain('192.0.2.0/24 . sctp . 0-65535 comment "accept traffic for np sctp-all sctp" : accept');
    expect(egressTarget(t, 4, "192.0.2.1", "tcp", 80)).toBeNull();
  });

  test("an except removes addresses from its block", () => {
    const t = render({ policies: [policy("https", { egress: [{ to: [{ cidr: "203.0.113.0/24", except: ["203.0.113.0/28"] }], ports: [{ port: 443 }] }] })] });
    expect(egressTarget(t, 4, "203.0.113.15", "tcp", 443)).toBeNull();
    expect(egressTarget(t, 4, "203.0.113.16", "tcp", 443)).toBe("accept traffic for np https tcp");
    expect(egressTarget(t, 4, "203.0.113.255", "tcp", 443)).toBe("accept traffic for np https tcp");
    // Excepts are computed into the map elements; no `!=` match is needed for them (SPEC §4.6).
    for (const r of chainRules(t, "forward")) if (r.includes("vmap")) expect(r).not.toContain("!=");
    expect(t).not.toContain("203.0.113.0/28");
  });

  test("egress except applies per block: an except of block 1 does not remove addresses of block 2 in the same rule", () => {
    const t = render({
      policies: [
        policy("per-block", {
          egress: [{ to: [{ cidr: "10.128.0.0/16", except: ["10.128.5.0/24"] }, { cidr: "10.128.5.0/24" }, { cidr: "192.0.2.0/24", except: ["192.0.2.0/28"] }], ports: [{ port: 443 }] }],
        }),
      ],
    });
    expect(egressTarget(t, 4, "10.128.5.7", "tcp", 443)).toBe("accept traffic for np per-block tcp");
    expect(egressTarget(t, 4, "10.128.6.7", "tcp", 443)).toBe("accept traffic for np per-block tcp");
    expect(egressTarget(t, 4, "192.0.2.7", "tcp", 443)).toBeNull();
    expect(egressTarget(t, 4, "192.0.2.17", "tcp", 443)).toBe("accept traffic for np per-block tcp");
  });

  test("ingress except applies per block too", () => {
    const t = render({ policies: [policy("in-per-block", { ingress: [{ from: [{ cidr: "198.51.100.0/24", except: ["198.51.100.0/25"] }, { cidr: "198.51.100.0/26" }] }] })] });
    expect(ingressTarget(t, 4, "198.51.100.1", "udp", 1)).toBe("accept traffic for k8s network policy in-per-block any");
    expect(ingressTarget(t, 4, "198.51.100.100", "udp", 1)).toBeNull();
    expect(ingressTarget(t, 4, "198.51.100.200", "udp", 1)).toBe("accept traffic for k8s network policy in-per-block any");
  });

  test("excepts of one rule do not affect another rule of the same policy", () => {
    const t = render({
      policies: [policy("two-rules", { egress: [{ to: [{ cidr: "192.0.2.0/24", except: ["192.0.2.0/28"] }], ports: [{ port: 80 }] }, { to: [{ cidr: "192.0.2.0/28" }], ports: [{ port: 80 }] }] })],
    });
    expect(egressTarget(t, 4, "192.0.2.1", "tcp", 80)).toBe("accept traffic for np two-rules tcp");
  });

  test("an except covering its whole block leaves nothing, not everything", () => {
    const t = render({ policies: [policy("nothing", { egress: [{ to: [{ cidr: "192.0.2.0/24", except: ["192.0.2.0/24"] }], ports: [{ port: 80 }] }] })] });
    expect(mapElements(t, "egress4_ports")).toEqual([]);
    expect(mapElements(t, "egress6_ports")).toEqual([]);
    expect(mapElements(t, "egress4_any")).toEqual([]);
  });

  test("IPv6 blocks render only into ip6 maps, never into ip maps", () => {
    const t = render({
      policies: [
        policy("v6-only", { egress: [{ to: [{ cidr: "2001:db8:443::/48", except: ["2001:db8:443:ff::/64"] }], ports: [{ port: 443 }] }, { to: [{ cidr: "2001:db8:1::/48" }] }], ingress: [{ from: [{ cidr: "2001:db8:2::/48" }] }] }),
      ],
    });
    for (const m of ["egress4_ports", "egress4_any", "ingress4_ports", "ingress4_any", "services4"]) {
      expect(mapElements(t, m)).toEqual([]);
      expect(section(t, "map", m)).not.toContain("2001:db8");
    }
    expect(section(t, "map", "egress6_ports")).toContain('2001:db8:443::-2001:db8:443:fe:ffff:ffff:ffff:ffff . tcp . 443 comment "accept traffic for np v6-only tcp" : accept');
    expect(egressTarget(t, 6, "2001:db8:443:ff::1", "tcp", 443)).toBeNull();
    expect(egressTarget(t, 6, "2001:db8:443:100::1", "tcp", 443)).toBe("accept traffic for np v6-only tcp");
    expect(ingressTarget(t, 6, "2001:db8:2::9", "icmpv6", 0)).toBe("accept traffic for k8s network policy v6-only any");
    // No rule puts an IPv6 literal behind an `ip` match.
    for (const line of t.split("\n")) if (/\bip (s|d)addr\b/.test(line)) expect(line).not.toMatch(/[0-9a-f]*:[0-9a-f]*:/);
  });

  test("a rule with IPv4 and IPv6 blocks puts each into its own family's map", () => {
    const t = render({ policies: [allowDns] });
    expect(mapElements(t, "egress4_ports").every((e) => e.keys[0]?.[1] !== undefined && (e.keys[0]?.[1] as bigint) < 1n << 32n)).toBe(true);
    expect(section(t, "map", "egress4_ports")).toContain('198.51.100.53 . udp . 53 comment "accept traffic for np allow-dns udp" : accept');
    expect(section(t, "map", "egress6_ports")).toContain('2001:db8:53::53 . udp . 53 comment "accept traffic for np allow-dns udp" : accept');
  });

  test("an overlap between two policies is owned by the policy whose name sorts first, each point once", () => {
    const a = policy("a-narrow", { egress: [{ to: [{ cidr: "192.0.2.0/28" }], ports: [{ port: 443 }] }] });
    const b = policy("b-wide", { egress: [{ to: [{ cidr: "192.0.2.0/24" }], ports: [{ port: 400, endPort: 500 }] }] });
    for (const policies of [[a, b], [b, a]]) {
      const t = render({ policies });
      expect(egressTarget(t, 4, "192.0.2.1", "tcp", 443)).toBe("accept traffic for np a-narrow tcp");
      expect(egressTarget(t, 4, "192.0.2.1", "tcp", 444)).toBe("accept traffic for np b-wide tcp");
      expect(egressTarget(t, 4, "192.0.2.100", "tcp", 443)).toBe("accept traffic for np b-wide tcp");
    }
  });

  test("a policy's description never reaches the ruleset", () => {
    const t = render({ policies: [policy("desc", { description: 'evil"; flush ruleset; #', egress: [{}] })] });
    expect(t).not.toContain("evil");
    expect(t).not.toContain("flush");
  });

  test("a policy with no rules renders nothing: no owner, no element", () => {
    const r = renderRuleset(state({ policies: [policy("empty", {})] }));
    expect(r.text).not.toContain("empty");
    expect(r.owners.size).toBe(0);
    expect(r.elementCount).toBe(0);
    expect(r.text).toBe(render({}));
  });
});

describe("render: LoadBalancer services (SPEC §4.4)", () => {
  const web = service("shop", "web", { ports: [{ port: 443 }, { port: 53, protocol: "UDP" }], loadBalancerSourceRanges: ["198.51.100.0/24", "2001:db8:1::/48"] }, ["203.0.113.80", "2001:db8::80"]);

  test("comment: accept traffic for k8s service <namespace>/<name>", () => {
    const r = renderRuleset(state({ services: [web] }));
    const comment = "accept traffic for k8s service shop/web";
    expect([...r.owners]).toEqual([["svc.shop.web", comment]]);
    expect(section(r.text, "map", "services4")).toContain(`\t\t\t203.0.113.80 . tcp . 443 . 198.51.100.0/24 comment "${comment}" : accept`);
    expect(ownElements(r.text).map((e) => [e.comment, e.verdict])).toEqual(Array(r.elementCount).fill([comment, "accept"]));
    expect(r.elementCount).toBe(4);
    expect(r.countedRules.filter((c) => c.counter === null)).toEqual([{ chain: "svc.shop.web", comment, counter: null, verdict: "accept" }]);
    expect(r.text.match(/^\tchain \S+ \{$/gm)).toEqual(["\tchain forward {"]);
    expect(r.counters).toEqual(FIXED_COUNTERS);
    expect(r.text).not.toContain("svc.shop.web");
  });

  test("each address, port and source range becomes a services map element", () => {
    const t = render({ services: [web] });
    const v4 = mapElements(t, "services4");
    expect(lookup(v4, [addressValue("203.0.113.80"), 6n, 443n, addressValue("198.51.100.7")])).toBe("accept traffic for k8s service shop/web");
    expect(lookup(v4, [addressValue("203.0.113.80"), 17n, 53n, addressValue("198.51.100.7")])).toBe("accept traffic for k8s service shop/web");
    expect(lookup(v4, [addressValue("203.0.113.80"), 6n, 443n, addressValue("192.0.2.1")])).toBeNull();
    expect(lookup(v4, [addressValue("203.0.113.80"), 17n, 443n, addressValue("198.51.100.7")])).toBeNull();
    const v6 = mapElements(t, "services6");
    expect(lookup(v6, [addressValue("2001:db8::80"), 6n, 443n, addressValue("2001:db8:1::5")])).toBe("accept traffic for k8s service shop/web");
    expect(section(t, "map", "services4")).not.toContain("2001:db8");
    expect(chainRules(t, "forward")).toContain('oifname { "vlan42", "vrf42" } ip daddr . meta l4proto . th dport . ip saddr vmap @services4');
  });

  test("without source ranges, any source", () => {
    const t = render({ services: [service("shop", "open", { ports: [{ port: 80 }] }, ["203.0.113.81"])] });
    expect(section(t, "map", "services4")).toContain('203.0.113.81 . tcp . 80 . 0.0.0.0/0 comment "accept traffic for k8s service shop/open" : accept');
  });

  test("spec.loadBalancerIP counts as an address", () => {
    const t = render({ services: [service("shop", "fixed", { loadBalancerIP: "203.0.113.82", ports: [{ port: 80 }] })] });
    expect(section(t, "map", "services4")).toContain('203.0.113.82 . tcp . 80 . 0.0.0.0/0 comment "accept traffic for k8s service shop/fixed" : accept');
  });

  test("source ranges of only the other family open nothing for that address", () => {
    const t = render({ services: [service("shop", "v6src", { ports: [{ port: 80 }], loadBalancerSourceRanges: ["2001:db8::/32"] }, ["203.0.113.83"])] });
    expect(mapElements(t, "services4")).toEqual([]);
  });

  test("a service without addresses or ports opens nothing and has no owner", () => {
    const r = renderRuleset(state({ services: [service("shop", "pending", { ports: [{ port: 80 }] }), service("shop", "portless", {}, ["203.0.113.84"])] }));
    const t = r.text;
    expect(mapElements(t, "services4")).toEqual([]);
    expect(r.owners.size).toBe(0);
    expect(r.countedRules.filter((c) => c.counter === null)).toEqual([]);
    expect(t).not.toContain("shop/pending");
    expect(t).not.toContain("shop/portless");
    expect(t).toBe(render({}));
  });

  test("two services on one address and port: the first by namespace/name owns it", () => {
    const t = render({ services: [service("b", "x", { ports: [{ port: 80 }] }, ["203.0.113.85"]), service("a", "y", { ports: [{ port: 80 }] }, ["203.0.113.85"])] });
    expect(lookupLayers(mapLayers(t, "services4"), [addressValue("203.0.113.85"), 6n, 80n, 1n])).toBe("accept traffic for k8s service a/y");
  });
});

describe("render: scale and determinism (SPEC §4.6)", () => {
  const many = (n: number) =>
    Array.from({ length: n }, (_, i) =>
      policy(`p-${String(i).padStart(4, "0")}`, {
        egress: [{ to: [{ cidr: `198.18.${i % 256}.0/24`, except: [`198.18.${i % 256}.${i % 128}/32`] }, { cidr: `2001:db8:${i.toString(16)}::/48` }], ports: [{ port: 1000 + i }, { protocol: "UDP", port: 53 }] }],
        ingress: [{ from: [{ cidr: `192.0.2.${i % 256}/32` }] }],
      }),
    );

  test("the number of rules in chain forward does not grow with the number of policies", () => {
    const one = chainRules(render({ policies: many(1) }), "forward").length;
    const big = renderRuleset(state({ policies: many(500), services: [service("shop", "web", { ports: [{ port: 443 }] }, ["203.0.113.80"])] })).text;
    expect(chainRules(big, "forward").length).toBe(one);
    expect(chainRules(render({}), "forward").length).toBe(one);
    // Every policy is still its own owner, counted by its own elements; no chain or counter per policy.
    const r = renderRuleset(state({ policies: many(500) }));
    expect(r.owners.get("np.eg.tcp.p-0499")).toBe("accept traffic for np p-0499 tcp");
    expect(r.owners.get("np.in.any.p-0499")).toBe("accept traffic for k8s network policy p-0499 any");
    expect(r.owners.size).toBe(1500);
    expect(big).toContain(' comment "accept traffic for np p-0499 tcp" : accept');
    // p-0499's ingress source is p-0243's as well, which owns it (its name sorts first); p-0255's is its own.
    expect(big).not.toContain('comment "accept traffic for k8s network policy p-0499 any"');
    expect(big).toContain('\t\t\t192.0.2.255 comment "accept traffic for k8s network policy p-0255 any" : accept');
    expect(big.match(/^\tchain \S+ \{$/gm)).toEqual(["\tchain forward {"]);
    expect(big.match(/^\tcounter \S+ \{$/gm)).toHaveLength(FIXED_COUNTERS.length);
  });

  test("the same input twice gives the same text", () => {
    const s = state({ policies: many(30), services: [service("shop", "web", { ports: [{ port: 443 }] }, ["203.0.113.80"])] });
    expect(renderRuleset(s).text).toBe(renderRuleset(s).text);
  });

  test("the input order of policies and services does not change the text", () => {
    const policies = many(40);
    const services = [service("shop", "web", { ports: [{ port: 443 }] }, ["203.0.113.80"]), service("shop", "api", { ports: [{ port: 443 }] }, ["203.0.113.80"]), service("a", "z", { ports: [{ port: 80 }] }, ["2001:db8::1"])];
    const expected = render({ policies, services });
    fc.assert(
      fc.property(fc.shuffledSubarray(policies, { minLength: policies.length, maxLength: policies.length }), fc.shuffledSubarray(services, { minLength: 3, maxLength: 3 }), (ps, ss) => {
        expect(render({ policies: ps, services: ss })).toBe(expected);
      }),
      { numRuns: 20 },
    );
  });
});

/* ---------- property: the rendered maps route every packet as the policies say ---------- */

type Proto = "tcp" | "udp" | "sctp" | "icmp";

function peerMatch(peers: PolicyRule["peers"], family: 4 | 6, addr: bigint): boolean {
  if (peers === null) return true;
  return peers.some((b) => b.cidr.family === family && b.cidr.first <= addr && addr <= b.cidr.last && !b.except.some((e) => e.first <= addr && addr <= e.last));
}

/** Direct reading of SPEC §4.2/4.3 (+ §4.6 ownership): first policy by name, its protocol owner before its "any" owner; by the owner's comment. */
function expectedPolicyTarget(policies: readonly Policy[], dir: "egress" | "ingress", family: 4 | 6, addr: bigint, proto: Proto, port: number): string | null {
  for (const p of policies.toSorted((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    let viaPort = false;
    let viaAny = false;
    for (const rule of p[dir]) {
      if (!peerMatch(rule.peers, family, addr)) continue;
      if (rule.ports === null) viaAny = true;
      else if (rule.ports.some((r) => r.protocol === proto && r.first <= port && port <= r.last)) viaPort = true;
    }
    if (viaPort) return policyComment(dir, proto as "tcp", p.name);
    if (viaAny) return policyComment(dir, "any", p.name);
  }
  return null;
}

function expectedServiceTarget(services: readonly LoadBalancer[], family: 4 | 6, daddr: bigint, proto: Proto, port: number, saddr: bigint): string | null {
  const key = (s: LoadBalancer) => `${s.namespace}/${s.name}`;
  for (const s of services.toSorted((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0))) {
    if (!s.addresses.some((a) => a.family === family && a.value === daddr)) continue;
    if (!s.ports.some((p) => p.protocol === proto && p.port === port)) continue;
    const srcOk = s.sourceRanges.length === 0 || s.sourceRanges.some((c) => c.family === family && c.first <= saddr && saddr <= c.last);
    if (srcOk) return serviceComment(s.namespace, s.name);
  }
  return null;
}

/** Interesting addresses: every block/except edge and its neighbours, plus the family's ends. */
function probeAddresses(policies: readonly Policy[], services: readonly LoadBalancer[], family: 4 | 6): bigint[] {
  const max = family === 4 ? (1n << 32n) - 1n : (1n << 128n) - 1n;
  const out = new Set<bigint>([0n, max]);
  const edges = (first: bigint, last: bigint) => {
    for (const x of [first - 1n, first, first + 1n, (first + last) / 2n, last - 1n, last, last + 1n]) if (x >= 0n && x <= max) out.add(x);
  };
  for (const p of policies)
    for (const rule of [...p.egress, ...p.ingress])
      for (const b of rule.peers ?? [])
        if (b.cidr.family === family) {
          edges(b.cidr.first, b.cidr.last);
          for (const e of b.except) edges(e.first, e.last);
        }
  for (const s of services) {
    for (const a of s.addresses) if (a.family === family) out.add(a.value);
    for (const c of s.sourceRanges) if (c.family === family) edges(c.first, c.last);
  }
  return [...out];
}

function probePorts(policies: readonly Policy[], services: readonly LoadBalancer[]): number[] {
  const out = new Set<number>([0, 1, 65535]);
  for (const p of policies) for (const rule of [...p.egress, ...p.ingress]) for (const r of rule.ports ?? []) for (const x of [r.first - 1, r.first, r.last, r.last + 1]) if (x >= 0 && x <= 65535) out.add(x);
  for (const s of services) for (const p of s.ports) out.add(p.port);
  return [...out];
}

describe("render: property", () => {
  test("for random valid policies and services, map lookups agree with a direct evaluation of SPEC §4.2-4.4", () => {
    fc.assert(
      fc.property(policiesArb(4), servicesArb(3), (rawPolicies, rawServices) => {
        const policies = rawPolicies.map((o) => {
          const r = parsePolicy(o);
          if (!r.ok) throw new Error(`generator produced an invalid policy: ${JSON.stringify(r.problems)}`);
          return r.value;
        });
        const services = rawServices.map((o) => {
          const r = parseService(o);
          if (!r.ok) throw new Error(`generator produced an invalid service: ${JSON.stringify(r.problems)}`);
          return r.value;
        });
        const r = renderRuleset(state({ policies, services }));
        const t = r.text;
        // Every element counts from zero and accepts; its comment is its owner's.
        const comments = new Set(r.owners.values());
        expect(comments.size).toBe(r.owners.size);
        const all = ownElements(t);
        expect(all).toHaveLength(r.elementCount);
        for (const e of all) {
          expect(e.counter).toEqual({ packets: 0, bytes: 0 });
          expect(e.verdict).toBe("accept");
          expect(comments.has(e.comment)).toBe(true);
        }
        const ports = probePorts(policies, services);
        for (const family of [4, 6] as const) {
          const maps = {
            egressPorts: mapLayers(t, `egress${family}_ports`),
            egressAny: mapLayers(t, `egress${family}_any`),
            ingressPorts: mapLayers(t, `ingress${family}_ports`),
            ingressAny: mapLayers(t, `ingress${family}_any`),
            services: mapLayers(t, `services${family}`),
          };
          const addrs = probeAddresses(policies, services, family);
          for (const addr of addrs) {
            for (const proto of ["tcp", "udp", "sctp", "icmp"] as const) {
              for (const port of proto === "icmp" ? [0] : ports) {
                const key = [addr, PROTO_NUMBER[proto] as bigint, BigInt(port)];
                const eg = (proto !== "icmp" ? lookupLayers(maps.egressPorts, key) : null) ?? lookupLayers(maps.egressAny, [addr]);
                const ing = (proto !== "icmp" ? lookupLayers(maps.ingressPorts, key) : null) ?? lookupLayers(maps.ingressAny, [addr]);
                expect(eg).toBe(expectedPolicyTarget(policies, "egress", family, addr, proto, port));
                expect(ing).toBe(expectedPolicyTarget(policies, "ingress", family, addr, proto, port));
              }
            }
          }
          for (const s of services) {
            for (const a of s.addresses.filter((x) => x.family === family)) {
              for (const p of s.ports) {
                for (const saddr of addrs.slice(0, 40)) {
                  const got = lookupLayers(maps.services, [a.value, PROTO_NUMBER[p.protocol] as bigint, BigInt(p.port), saddr]);
                  expect(got).toBe(expectedServiceTarget(services, family, a.value, p.protocol, p.port, saddr));
                }
              }
            }
          }
        }
      }),
      { numRuns: 60 },
    );
  }, 30_000);
});
