import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type ElementSums, elementRules, parseSnapshot, type Snapshot, type SnapshotRule } from "../../lib/nft/snapshot.ts";
import { MAX_RULE_STATS, ruleStats } from "../../lib/stats/rules.ts";

function captured(): Snapshot {
  const r = parseSnapshot(JSON.parse(readFileSync(join(import.meta.dir, "../fixtures/nft/ruleset.json"), "utf8")));
  if (!r.ok) throw new Error(r.message);
  return r.value;
}

const c = (bytes: number, packets: number) => ({ counter: { bytes, packets } });
const only = (rules: SnapshotRule[]): Snapshot => ({ tables: [], chains: [], counters: [], sets: [], rules });
// A policy's count, as the snapshot has it: its map elements summed, as a rule of a chain named after the map.
const rule = (over: Partial<SnapshotRule>): SnapshotRule => ({
  family: "inet", table: "firewall", chain: "egress4_ports", handle: 0, comment: "c", counter: { packets: 1, bytes: 10 }, counterName: null, verdict: "accept", target: null, matches: [], fromElements: true, ...over,
});
/** A rule of a chain (ours or another table's), not map elements. */
const chainRule = (over: Partial<SnapshotRule>): SnapshotRule => {
  const { fromElements: _, ...r } = rule(over);
  return r;
};

describe("ruleStats of the captured snapshot", () => {
  const s = ruleStats(captured());

  test("every counted rule with a comment, in every table, by verdict", () => {
    expect(s).toEqual({
      rules: {
        accept: {
          "accept dns": c(0, 0),
          // our forward chain's (named counter) and the base table's (inline) share the comment: summed
          "accept established connections": c(21211168 + 10000, 39785 + 100),
          // two rules (icmp, icmpv6) count into one named counter: counted once
          "accept icmp": c(500, 5),
          "accept loopback": c(0, 0),
          "accept ssh": c(240, 4),
          "accept traffic for k8s network policy allow-ssh-from-admins tcp": c(0, 0),
          "accept traffic for k8s service shop/web": c(0, 0),
          "accept traffic for k8s service voip/sip": c(0, 0),
          "accept traffic for np allow-app-backends tcp": c(0, 0),
          // an owner's elements in two maps (IPv4 and IPv6): summed
          "accept traffic for np allow-dns tcp": c(600 + 400, 6 + 4),
          "accept traffic for np allow-dns udp": c(900 + 600, 12 + 8),
          // and in one map (two elements) as well
          "accept traffic for np allow-https tcp": c(100 + 200, 1 + 2),
          "accept traffic for np allow-monitoring any": c(0, 0),
        },
        drop: {
          "drop blocked": c(0, 0),
          "drop metrics from outside": c(120, 2),
          "drop packets with invalid ct state": c(420, 7),
          "drop ping floods": c(0, 0),
        },
        other: {
          "count and log dropped packets": c(960, 12),
          dns: c(0, 0),
          "log dropped": c(540, 9),
          "snat (networkid: internet)": c(5000, 50),
        },
      },
      omitted: 0,
    });
  });

  test("keys are sorted, so the status text is stable", () => {
    expect(Object.keys(s.rules.drop)).toEqual(["drop blocked", "drop metrics from outside", "drop packets with invalid ct state", "drop ping floods"]);
  });
});

describe("ruleStats", () => {
  test.each([
    ["jump", "other"],
    ["goto", "other"],
    ["return", "other"],
    ["masquerade", "other"],
    ["other", "other"],
    ["drop", "drop"],
    ["accept", "accept"],
  ] as const)("a %s rule is in group %s", (verdict, group) => {
    const s = ruleStats(only([rule({ verdict })]));
    expect(s.rules[group]).toEqual({ c: c(10, 1) });
  });

  test("leaves out rules without a comment or without a counter", () => {
    expect(ruleStats(only([rule({ comment: null }), rule({ counter: null, counterName: "gone" })]))).toEqual({ rules: { accept: {}, drop: {}, other: {} }, omitted: 0 });
  });

  test("the same comment under two verdicts is two entries", () => {
    const s = ruleStats(only([rule({ verdict: "accept" }), rule({ verdict: "drop", handle: 2 })]));
    expect(s.rules).toEqual({ accept: { c: c(10, 1) }, drop: { c: c(10, 1) }, other: {} });
  });

  test("sums element counts (one owner's in two maps) and inline counters sharing a comment, and each named counter once", () => {
    const s = ruleStats(only([
      rule({ chain: "egress4_ports", counter: { packets: 1, bytes: 10 } }),
      rule({ chain: "egress6_ports", counter: { packets: 2, bytes: 20 } }),
      chainRule({ handle: 3, chain: "forward", counterName: "n", counter: { packets: 5, bytes: 50 } }),
      chainRule({ handle: 4, chain: "forward", counterName: "n", counter: { packets: 5, bytes: 50 } }),
      chainRule({ handle: 5, table: "metal", chain: "input", counterName: "n", counter: { packets: 7, bytes: 70 } }),
    ]));
    expect(s.rules.accept).toEqual({ c: c(10 + 20 + 50 + 70, 1 + 2 + 5 + 7) });
  });

  test("element sums count as the rules they stand for: the same statistics either way (property)", () => {
    const comment = fc.constantFrom("a", "b", "c", "d", "forward's");
    const block = fc.record({
      table: fc.constantFrom("firewall", "metal"),
      map: fc.constantFrom("egress4_ports", "egress6_ports", "forward"),
      verdict: fc.constantFrom("accept" as const, "drop" as const, "other" as const),
      sums: fc.uniqueArray(fc.tuple(comment, fc.nat({ max: 100 }), fc.nat({ max: 100 })), { selector: (t) => t[0], maxLength: 5 }),
    });
    const chainRules = fc.array(fc.record({ comment, bytes: fc.nat({ max: 100 }), chain: fc.constantFrom("forward", "input") }), { maxLength: 4 });
    fc.assert(fc.property(fc.array(block, { maxLength: 6 }), chainRules, fc.nat({ max: 8 }), (blocks, rs, max) => {
      const elements: ElementSums[] = blocks.map((b) => ({
        family: "inet", table: b.table, map: b.map, verdict: b.verdict, target: null, comments: b.sums.map((t) => t[0]),
        packets: Float64Array.from(b.sums, (t) => t[1]), bytes: Float64Array.from(b.sums, (t) => t[2]),
      }));
      const rules = rs.map((r, i) => chainRule({ handle: i, comment: r.comment, chain: r.chain, counter: { packets: 1, bytes: r.bytes } }));
      const columns: Snapshot = { ...only(rules), elements };
      expect(ruleStats(columns, { max })).toEqual(ruleStats(only([...rules, ...elementRules(columns)]), { max }));
    }), { numRuns: 300 });
  });

  test("the bound is 250 entries", () => {
    expect(MAX_RULE_STATS).toBe(250);
    const many = Array.from({ length: 300 }, (_, i) => rule({ handle: i, comment: `p${String(i).padStart(3, "0")}`, counter: { packets: 0, bytes: i } }));
    const s = ruleStats(only(many));
    expect(Object.keys(s.rules.accept).length).toBe(250);
    expect(s.omitted).toBe(50);
    // the fewest bytes go first
    expect(Object.keys(s.rules.accept)[0]).toBe("p050");
  });

  test("keeps our forward chain's rules first, then other tables', then by bytes", () => {
    const s = ruleStats(
      only([
        rule({ handle: 1, comment: "policy big", counter: { packets: 9, bytes: 9000 } }),
        chainRule({ handle: 2, comment: "base small", table: "metal", chain: "input", counter: { packets: 0, bytes: 1 } }),
        chainRule({ handle: 3, comment: "forward zero", chain: "forward", counter: { packets: 0, bytes: 0 } }),
        rule({ handle: 4, comment: "policy bigger", counter: { packets: 9, bytes: 9001 } }),
        rule({ handle: 5, comment: "policy equal bytes more packets", counter: { packets: 10, bytes: 9000 } }),
      ]),
      { max: 4 },
    );
    expect(s).toEqual({
      rules: { accept: { "base small": c(1, 0), "forward zero": c(0, 0), "policy bigger": c(9001, 9), "policy equal bytes more packets": c(9000, 10) }, drop: {}, other: {} },
      omitted: 1,
    });
  });

  test("ties are broken by comment, so the choice is the same every time", () => {
    const rules = ["b", "a", "c"].map((comment, i) => rule({ handle: i, comment, counter: { packets: 1, bytes: 1 } }));
    expect(ruleStats(only(rules), { max: 2 }).rules.accept).toEqual({ a: c(1, 1), b: c(1, 1) });
    expect(ruleStats(only(rules.toReversed()), { max: 2 }).rules.accept).toEqual({ a: c(1, 1), b: c(1, 1) });
  });
});

describe("ruleStats picks its bounded entries as a full sort would", () => {
  /** The earlier way: every entry sorted, the first `max` kept. */
  function reference(snapshot: Snapshot, max: number): { kept: string[]; omitted: number } {
    const entries = new Map<string, { group: string; comment: string; bytes: number; packets: number; tier: number }>();
    for (const r of snapshot.rules) {
      if (r.comment === null || r.counter === null) continue;
      const group = r.verdict === "accept" || r.verdict === "drop" ? r.verdict : "other";
      const tier = r.table === "firewall" && r.family === "inet" ? (r.chain === "forward" ? 0 : 2) : 1;
      const k = `${group}\u0000${r.comment}`;
      const e = entries.get(k) ?? { group, comment: r.comment, bytes: 0, packets: 0, tier };
      e.tier = Math.min(e.tier, tier);
      e.bytes += r.counter.bytes;
      e.packets += r.counter.packets;
      entries.set(k, e);
    }
    const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
    const ranked = [...entries.values()].sort((a, b) => a.tier - b.tier || b.bytes - a.bytes || b.packets - a.packets || cmp(a.comment, b.comment) || cmp(a.group, b.group));
    return { kept: ranked.slice(0, max).map((e) => `${e.group}:${e.comment}:${e.bytes}:${e.packets}`).sort(), omitted: ranked.length - Math.min(max, ranked.length) };
  }
  test("random rules (ties, three tiers, both verdicts, shared comments) and bounds", () => {
    const arb = fc.record({
      comment: fc.constantFrom("a", "b", "c", "d", "e", "f", "g", "h", "accept x", "drop y"),
      verdict: fc.constantFrom("accept" as const, "drop" as const, "jump" as const),
      table: fc.constantFrom("firewall", "metal"),
      chain: fc.constantFrom("forward", "np4", "input"),
      bytes: fc.nat({ max: 5 }),
      packets: fc.nat({ max: 3 }),
    });
    fc.assert(fc.property(fc.array(arb, { maxLength: 60 }), fc.nat({ max: 12 }), (rs, max) => {
      const snap = only(rs.map((x) => rule({ comment: x.comment, verdict: x.verdict, table: x.table, chain: x.chain, counter: { bytes: x.bytes, packets: x.packets } })));
      const got = ruleStats(snap, { max });
      const kept = (["accept", "drop", "other"] as const).flatMap((g) => Object.entries(got.rules[g]).map(([c, v]) => `${g}:${c}:${v.counter.bytes}:${v.counter.packets}`)).sort();
      expect({ kept, omitted: got.omitted }).toEqual(reference(snap, max));
    }), { numRuns: 3000 });
  });
});
