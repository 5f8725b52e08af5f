// Accept logging (SPEC §3.1 `logacceptedconnections`): by table. Flag off renders exactly what it
// rendered before; flag on adds one shared rate-limited log chain and, in every owner chain, a jump
// to it before the counting accept — nothing else changes (what is accepted, counters, countedRules).
import { describe, expect, test } from "bun:test";
import { ACCEPT_LOG_CHAIN, ACCEPT_LOG_JUMP, ACCEPT_LOG_PREFIX, ACCEPT_LOG_RULE, type DesiredState, ownerRule, renderRuleset } from "../../lib/ruleset/render.ts";
import { ACCEPT_PREFIX } from "../../lib/droptailer/parse.ts";
import { chainRules, policy, section, service, state } from "./helpers.ts";

const policies = [
  policy("allow-dns", { egress: [{ to: [{ cidr: "198.51.100.53/32" }, { cidr: "2001:db8:53::53/128" }], ports: [{ protocol: "UDP", port: 53 }, { protocol: "TCP", port: 53 }] }] }),
  policy("ssh-in", { ingress: [{ from: [{ cidr: "192.0.2.0/24" }], ports: [{ port: 22 }] }, { from: [{ cidr: "198.51.100.0/24" }] }] }),
  policy("any-out", { egress: [{}] }),
];
const services = [service("shop", "web", { ports: [{ port: 443 }] }, ["10.0.1.80"])];
const OWNERS = ["np.eg.any.any-out", "np.eg.tcp.allow-dns", "np.eg.udp.allow-dns", "np.in.tcp.ssh-in", "np.in.any.ssh-in", "svc.shop.web"];

const cases: [string, Partial<DesiredState>][] = [
  ["empty", {}],
  ["policies and a service", { policies, services }],
  ["no private VRF", { policies, services, privateVrf: null }],
];

/** The text the renderer produced before accept logging existed (owner chains: one rule). */
function legacyText(s: DesiredState): string {
  const r = renderRuleset({ ...s, logAcceptedConnections: true });
  const lines = r.text.split("\n");
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] === `\tchain ${ACCEPT_LOG_CHAIN} {`) {
      i += 2; // its rule and its closing brace
      continue;
    }
    if (lines[i] === `\t\t${ACCEPT_LOG_JUMP}`) continue;
    out.push(lines[i] as string);
  }
  return out.join("\n");
}

describe("accept logging off (default): the rendering is unchanged", () => {
  test.each(cases)("%s: absent and false render the same bytes, without any accept log", (_, parts) => {
    const absent = renderRuleset(state(parts));
    const off = renderRuleset(state({ ...parts, logAcceptedConnections: false }));
    expect(off).toEqual(absent);
    expect(off.text).not.toContain(ACCEPT_LOG_PREFIX);
    expect(off.text).not.toContain(ACCEPT_LOG_CHAIN);
    expect(off.skeleton).not.toContain("chain np.");
  });

  test.each(cases)("%s: flag off is flag on minus exactly the log chain and the jumps", (_, parts) => {
    expect(renderRuleset(state(parts)).text).toBe(legacyText(state(parts)));
  });

  test("an owner chain holds its one counting rule, as before", () => {
    const text = renderRuleset(state({ policies, services })).text;
    expect(chainRules(text, "np.eg.tcp.allow-dns")).toEqual([ownerRule("np.eg.tcp.allow-dns", "accept traffic for np allow-dns tcp")]);
    expect(chainRules(text, "svc.shop.web")).toEqual([ownerRule("svc.shop.web", "accept traffic for k8s service shop/web")]);
  });
});

describe("accept logging on", () => {
  const off = renderRuleset(state({ policies, services }));
  const on = renderRuleset(state({ policies, services, logAcceptedConnections: true }));

  test("the prefix is the droptailer's accept prefix (SPEC §10)", () => {
    expect(ACCEPT_LOG_PREFIX).toBe("nftables-firewall-accepted: ");
    expect(ACCEPT_LOG_PREFIX).toBe(ACCEPT_PREFIX);
  });

  test("one shared chain holds the only rate limiter: at most 10/s for the whole table, log prefix, no counter, no comment, no verdict", () => {
    expect(chainRules(on.text, ACCEPT_LOG_CHAIN)).toEqual([`limit rate 10/second burst 10 packets log prefix "nftables-firewall-accepted: "`]);
    expect(ACCEPT_LOG_RULE).not.toMatch(/counter|comment|accept\b|drop|jump|goto/);
    expect(on.text.split("\n").filter((l) => l.includes("limit rate 10/second") && l.includes(ACCEPT_LOG_PREFIX))).toHaveLength(1);
  });

  test("every owner chain (policies, both directions, services) logs new connections first, then counts and accepts as before", () => {
    expect([...on.chains.keys()].toSorted()).toEqual(OWNERS.toSorted());
    for (const [chain, comment] of on.chains) {
      expect(chainRules(on.text, chain)).toEqual([`ct state new jump ${ACCEPT_LOG_CHAIN}`, ownerRule(chain, comment)]);
      expect(chainRules(off.text, chain)).toEqual([ownerRule(chain, comment)]);
    }
  });

  test("what is accepted and counted does not change: maps, sets, forward chain, counters, countedRules, chains", () => {
    expect(on.elements).toEqual(off.elements);
    expect(on.maps).toEqual(off.maps);
    expect(on.forwardRules).toEqual(off.forwardRules);
    expect(on.counters).toEqual(off.counters);
    expect(on.countedRules).toEqual(off.countedRules);
    expect(on.chains).toEqual(off.chains);
    expect(on.elementCount).toBe(off.elementCount);
    expect(section(on.text, "chain", "forward")).toBe(section(off.text, "chain", "forward"));
    // no new counter: the log rule counts nothing
    expect(on.text.match(/^\tcounter /gm)?.length).toBe(off.text.match(/^\tcounter /gm)?.length);
  });

  test("countedRules stay exactly the commented, counted rules of the text", () => {
    const commented = on.text.split("\n").filter((l) => /counter name "[^"]+" .*comment "/.test(l)).length;
    // forward's comment lines: two rules each for drop ping floods and accept icmp (v4 and v6)
    expect((on.countedRules ?? []).length).toBe(commented - 2);
  });

  test("the skeleton changes with the flag (so flipping it replaces, never patches the table)", () => {
    expect(on.skeleton).not.toBe(off.skeleton);
    expect(on.skeleton).toContain(`\tchain ${ACCEPT_LOG_CHAIN} {`);
  });

  test("with the flag on, owner chains are part of the skeleton: a change of owners replaces; a change of elements alone still patches", () => {
    const more = renderRuleset(state({ policies: [...policies, policy("new-one", { egress: [{ ports: [{ port: 8443 }] }] })], services, logAcceptedConnections: true }));
    expect(more.skeleton).not.toBe(on.skeleton);
    const moved = renderRuleset(
      state({
        policies: [policy("allow-dns", { egress: [{ to: [{ cidr: "198.51.100.54/32" }, { cidr: "2001:db8:53::53/128" }], ports: [{ protocol: "UDP", port: 53 }, { protocol: "TCP", port: 53 }] }] }), ...policies.slice(1)],
        services,
        logAcceptedConnections: true,
      }),
    );
    expect(moved.skeleton).toBe(on.skeleton);
    expect(moved.elements).not.toEqual(on.elements);
    for (const chain of OWNERS) expect(on.skeleton).toContain(`\tchain ${chain} {\n\t\tct state new jump ${ACCEPT_LOG_CHAIN}\n`);
  });

  test("with nothing to accept there is still the (unused) log chain and nothing else new", () => {
    const empty = renderRuleset(state({ logAcceptedConnections: true }));
    expect(chainRules(empty.text, ACCEPT_LOG_CHAIN)).toEqual([ACCEPT_LOG_RULE]);
    expect(empty.text.split("\n").filter((l) => l.includes(ACCEPT_LOG_JUMP))).toEqual([]);
  });

  test("pure: the same input gives the same bytes", () => {
    expect(renderRuleset(state({ policies, services, logAcceptedConnections: true })).text).toBe(on.text);
  });
});
