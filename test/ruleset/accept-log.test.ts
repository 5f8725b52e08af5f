// Accept logging (SPEC §3.1 `logacceptedconnections`): by table. Flag off renders exactly what it
// rendered before; flag on adds one shared rate-limited log chain, and every map element (which has
// counted already) goes to it instead of accepting — nothing else changes (what is accepted,
// counters, countedRules).
import { describe, expect, test } from "bun:test";
import { ACCEPT_LOG_CHAIN, ACCEPT_LOG_PREFIX, ACCEPT_LOG_RULE, type DesiredState, elementVerdict, renderRuleset } from "../../lib/ruleset/render.ts";
import { ACCEPT_PREFIX } from "../../lib/droptailer/parse.ts";
import { chainRules, mapElements, policy, section, service, state } from "./helpers.ts";

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

/** Every map element of the text (all maps, all layers), parsed. */
const allElements = (text: string) => [...text.matchAll(/^\tmap (\S+) \{$/gm)].flatMap((m) => mapElements(text, m[1] as string));

/** The text the renderer produced before accept logging existed (elements accept directly). */
function legacyText(s: DesiredState): string {
  const r = renderRuleset({ ...s, logAcceptedConnections: true });
  const lines = r.text.split("\n");
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] === `\tchain ${ACCEPT_LOG_CHAIN} {`) {
      i += 3; // its two rules and its closing brace
      continue;
    }
    const line = lines[i] as string;
    // An element line: `<key> comment "..." : goto accept_log[,]`.
    out.push(/^\t\t\t.* comment "[^"]*" : goto accept_log,?$/.test(line) ? line.replace(/ : goto accept_log(,?)$/, " : accept$1") : line);
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

  test.each(cases)("%s: flag off is flag on minus exactly the log chain, its elements accepting instead of going to it", (_, parts) => {
    expect(renderRuleset(state(parts)).text).toBe(legacyText(state(parts)));
  });

  test("an element carries its counter and its owner's comment and accepts; no owner chain, no owner counter", () => {
    const r = renderRuleset(state({ policies, services }));
    expect(r.verdict).toBe("accept");
    expect(elementVerdict(false)).toBe("accept");
    expect(section(r.text, "map", "egress4_ports")).toContain('\t\t\t198.51.100.53 . tcp . 53 comment "accept traffic for np allow-dns tcp" : accept,\n');
    expect(section(r.text, "map", "services4")).toContain('\t\t\t10.0.1.80 . tcp . 443 . 0.0.0.0/0 comment "accept traffic for k8s service shop/web" : accept\n');
    expect(r.text.match(/^\tchain \S+ \{$/gm)).toEqual(["\tchain forward {"]);
    expect([...(r.text.match(/^\tcounter \S+ \{$/gm) ?? [])]).toEqual(r.counters.map((c) => `\tcounter ${c} {`));
    for (const owner of OWNERS) expect(r.counters).not.toContain(owner);
  });
});

describe("accept logging on", () => {
  const off = renderRuleset(state({ policies, services }));
  const on = renderRuleset(state({ policies, services, logAcceptedConnections: true }));

  test("the prefix is the droptailer's accept prefix (SPEC §10)", () => {
    expect(ACCEPT_LOG_PREFIX).toBe("nftables-firewall-accepted: ");
    expect(ACCEPT_LOG_PREFIX).toBe(ACCEPT_PREFIX);
  });

  test("one shared chain holds the only rate limiter: at most 10/s for the whole table, new connections, log prefix, then accept; no counter, no comment", () => {
    expect(chainRules(on.text, ACCEPT_LOG_CHAIN)).toEqual([`ct state new limit rate 10/second burst 10 packets log prefix "nftables-firewall-accepted: "`, "accept"]);
    expect(ACCEPT_LOG_RULE).not.toMatch(/counter|comment|accept\b|drop|jump|goto/);
    expect(on.text.split("\n").filter((l) => l.includes("limit rate 10/second") && l.includes(ACCEPT_LOG_PREFIX))).toHaveLength(1);
  });

  test("every map element (policies, both directions, services) counts as before, then goes to the log chain instead of accepting", () => {
    expect([...on.owners.keys()].toSorted()).toEqual(OWNERS.toSorted());
    expect(on.verdict).toBe(`goto ${ACCEPT_LOG_CHAIN}`);
    expect(elementVerdict(true)).toBe(`goto ${ACCEPT_LOG_CHAIN}`);
    const onElements = allElements(on.text);
    const offElements = allElements(off.text);
    expect(onElements).toHaveLength(on.elementCount);
    expect(onElements.map((e) => e.verdict)).toEqual(Array(on.elementCount).fill(`goto ${ACCEPT_LOG_CHAIN}`));
    expect(offElements.map((e) => e.verdict)).toEqual(Array(off.elementCount).fill("accept"));
    expect(onElements.map(({ verdict: _, ...e }) => e)).toEqual(offElements.map(({ verdict: _, ...e }) => e));
    // every owner has elements, each carrying the owner's comment
    expect(new Set(onElements.map((e) => e.comment))).toEqual(new Set(on.owners.values()));
    expect(section(on.text, "map", "egress4_ports")).toContain(`\t\t\t198.51.100.53 . tcp . 53 comment "accept traffic for np allow-dns tcp" : goto ${ACCEPT_LOG_CHAIN},\n`);
    expect(section(on.text, "map", "services4")).toContain(`\t\t\t10.0.1.80 . tcp . 443 . 0.0.0.0/0 comment "accept traffic for k8s service shop/web" : goto ${ACCEPT_LOG_CHAIN}\n`);
    // still no chain per owner: the log chain and forward only
    expect(on.text.match(/^\tchain \S+ \{$/gm)).toEqual([`\tchain ${ACCEPT_LOG_CHAIN} {`, "\tchain forward {"]);
  });

  test("what is accepted and counted does not change: maps, sets, forward chain, counters, countedRules, owners", () => {
    expect(on.elements).toEqual(off.elements);
    expect(on.maps).toEqual(off.maps);
    expect(on.forwardRules).toEqual(off.forwardRules);
    expect(on.counters).toEqual(off.counters);
    expect(on.countedRules).toEqual(off.countedRules);
    expect(on.owners).toEqual(off.owners);
    expect(on.elementCount).toBe(off.elementCount);
    expect(section(on.text, "chain", "forward")).toBe(section(off.text, "chain", "forward"));
    // no new counter: the log rule counts nothing
    expect(on.text.match(/^\tcounter /gm)?.length).toBe(off.text.match(/^\tcounter /gm)?.length);
  });

  test("countedRules stay exactly the commented, counted rules and the element owners of the text", () => {
    const commented = on.text.split("\n").filter((l) => /counter name "[^"]+" .*comment "/.test(l)).length;
    // forward's comment lines: two rules each for drop ping floods and accept icmp (v4 and v6)
    expect(on.countedRules.filter((r) => r.counter !== null)).toHaveLength(commented - 2);
    // owners: counted by the sum of their elements, one entry per comment the elements carry
    const owned = on.countedRules.filter((r) => r.counter === null);
    expect(owned.map((r) => r.chain).toSorted()).toEqual(OWNERS.toSorted());
    expect(owned.map((r) => r.comment).toSorted()).toEqual([...new Set(allElements(on.text).map((e) => e.comment))].toSorted());
    expect(owned.every((r) => r.verdict === "accept" && on.owners.get(r.chain) === r.comment)).toBe(true);
  });

  test("the skeleton changes with the flag (so flipping it replaces, never patches the table)", () => {
    expect(on.skeleton).not.toBe(off.skeleton);
    expect(on.skeleton).toContain(`\tchain ${ACCEPT_LOG_CHAIN} {`);
  });

  test("with the flag on, owners are no part of the skeleton: a change of owners or of elements alone still patches", () => {
    const more = renderRuleset(state({ policies: [...policies, policy("new-one", { egress: [{ ports: [{ port: 8443 }] }] })], services, logAcceptedConnections: true }));
    expect(more.owners.size).toBe(on.owners.size + 1);
    expect(more.skeleton).toBe(on.skeleton);
    const moved = renderRuleset(
      state({
        policies: [policy("allow-dns", { egress: [{ to: [{ cidr: "198.51.100.54/32" }, { cidr: "2001:db8:53::53/128" }], ports: [{ protocol: "UDP", port: 53 }, { protocol: "TCP", port: 53 }] }] }), ...policies.slice(1)],
        services,
        logAcceptedConnections: true,
      }),
    );
    expect(moved.skeleton).toBe(on.skeleton);
    expect(moved.elements).not.toEqual(on.elements);
    for (const owner of OWNERS) expect(on.skeleton).not.toContain(owner);
    expect(on.skeleton).not.toContain("accept traffic for");
  });

  test("with nothing to accept there is still the (unused) log chain and nothing else new", () => {
    const empty = renderRuleset(state({ logAcceptedConnections: true }));
    expect(chainRules(empty.text, ACCEPT_LOG_CHAIN)).toEqual([ACCEPT_LOG_RULE, "accept"]);
    expect(empty.elementCount).toBe(0);
    expect(empty.text.split("\n").filter((l) => l.includes(`goto ${ACCEPT_LOG_CHAIN}`) || l.includes(`jump ${ACCEPT_LOG_CHAIN}`))).toEqual([]);
  });

  test("pure: the same input gives the same bytes", () => {
    expect(renderRuleset(state({ policies, services, logAcceptedConnections: true })).text).toBe(on.text);
  });
});
