import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { nftablesRegistry, ruleLabels } from "../../lib/metrics/nftables.ts";
import { type ElementSums, parseSnapshot, type Snapshot } from "../../lib/nft/snapshot.ts";

function captured(): Snapshot {
  const r = parseSnapshot(JSON.parse(readFileSync(join(import.meta.dir, "../fixtures/nft/ruleset.json"), "utf8")));
  if (!r.ok) throw new Error(r.message);
  return r.value;
}

const exposition = (s: Snapshot | null, options = {}) => nftablesRegistry(async () => s, options).metrics();
const lines = (text: string, prefix: string) => text.split("\n").filter((l) => l.startsWith(prefix));
const ANY = { input_interfaces: "any", output_interfaces: "any", source_addresses: "any", destination_addresses: "any", source_ports: "any", destination_ports: "any" };

describe("nftables exposition of the captured snapshot", async () => {
  const text = await exposition(captured());

  test("nftables_up is 1", () => {
    expect(lines(text, "nftables_up")).toEqual(["nftables_up 1"]);
  });

  test("keeps the exporter's HELP texts and types", () => {
    expect(lines(text, "# ")).toEqual([
      "# HELP nftables_up '1' if reading the nft output was successful, '0' otherwise",
      "# TYPE nftables_up gauge",
      "# HELP nftables_counter_bytes Bytes, matched by counter",
      "# TYPE nftables_counter_bytes counter",
      "# HELP nftables_counter_packets Packets, matched by counter",
      "# TYPE nftables_counter_packets counter",
      "# HELP nftables_table_chains Count chains in table",
      "# TYPE nftables_table_chains gauge",
      "# HELP nftables_chain_rules Count rules in chain",
      "# TYPE nftables_chain_rules gauge",
      "# HELP nftables_rule_bytes Bytes, matched by rule per rule comment",
      "# TYPE nftables_rule_bytes counter",
      "# HELP nftables_rule_packets Packets, matched by rule per rule comment",
      "# TYPE nftables_rule_packets counter",
      "# HELP nftables_table_sets Count sets and maps in table",
      "# TYPE nftables_table_sets gauge",
      "# HELP nftables_set_elements Count elements in set or map",
      "# TYPE nftables_set_elements gauge",
    ]);
  });

  test("named counters by name, table, family", () => {
    // Our table's fixed counters (none per policy or service) and the base table's.
    expect(lines(text, "nftables_counter_bytes{").length).toBe(10 + 1);
    expect(lines(text, 'nftables_counter_bytes{name="external_in"')).toEqual(['nftables_counter_bytes{name="external_in",table="firewall",family="inet"} 91696']);
    expect(lines(text, 'nftables_counter_packets{name="input_ssh"')).toEqual(['nftables_counter_packets{name="input_ssh",table="metal",family="inet"} 4']);
  });

  test("chains per table and rules per chain", () => {
    expect(lines(text, "nftables_table_chains")).toEqual(['nftables_table_chains{name="firewall",family="inet"} 1', 'nftables_table_chains{name="metal",family="inet"} 3']);
    expect(lines(text, 'nftables_chain_rules{name="forward"')).toEqual(['nftables_chain_rules{name="forward",family="inet",table="firewall",handle="1"} 25']);
    expect(lines(text, 'nftables_chain_rules{name="input"')).toEqual(['nftables_chain_rules{name="input",family="inet",table="metal",handle="1"} 8']);
  });

  test("a rule counting into a named counter reports that counter", () => {
    expect(lines(text, 'nftables_rule_bytes{chain="forward",family="inet",table="firewall",input_interfaces="any",output_interfaces="any",source_addresses="any",destination_addresses="any",source_ports="any",destination_ports="any",comment="accept established connections"')).toEqual([
      'nftables_rule_bytes{chain="forward",family="inet",table="firewall",input_interfaces="any",output_interfaces="any",source_addresses="any",destination_addresses="any",source_ports="any",destination_ports="any",comment="accept established connections",action="accept",handle="42"} 21211168',
    ]);
    expect(lines(text, 'nftables_rule_packets{chain="input",family="inet",table="metal",input_interfaces="vlan42,vrf104009"')).toEqual([
      'nftables_rule_packets{chain="input",family="inet",table="metal",input_interfaces="vlan42,vrf104009",output_interfaces="any",source_addresses="any",destination_addresses="any",source_ports="any",destination_ports="22",comment="accept ssh",action="accept",handle="11"} 4',
    ]);
  });

  test("a != match keeps its operator; a missing comment is empty; a counter-only rule is policy", () => {
    expect(lines(text, 'nftables_rule_bytes{chain="forward",family="inet",table="firewall",input_interfaces="any",output_interfaces="vrf42,vlan42",source_addresses="!=@internal_prefixes4"')).toEqual([
      'nftables_rule_bytes{chain="forward",family="inet",table="firewall",input_interfaces="any",output_interfaces="vrf42,vlan42",source_addresses="!=@internal_prefixes4",destination_addresses="any",source_ports="any",destination_ports="any",comment="empty",action="policy",handle="29"} 91696',
    ]);
    expect(lines(text, 'nftables_rule_bytes{chain="input",family="inet",table="metal",input_interfaces="any",output_interfaces="any",source_addresses="!=10.0.0.0/8"')).toEqual([
      'nftables_rule_bytes{chain="input",family="inet",table="metal",input_interfaces="any",output_interfaces="any",source_addresses="!=10.0.0.0/8",destination_addresses="any",source_ports="any",destination_ports="9100,9630",comment="drop metrics from outside",action="drop",handle="13"} 120',
    ]);
  });

  test("per policy and service: the elements of each map, summed by owner comment, with the map as chain", () => {
    expect(lines(text, 'nftables_rule_packets{chain="egress6_ports"')).toEqual([
      'nftables_rule_packets{chain="egress6_ports",family="inet",table="firewall",input_interfaces="any",output_interfaces="any",source_addresses="any",destination_addresses="any",source_ports="any",destination_ports="any",comment="accept traffic for np allow-dns tcp",action="accept",handle="0"} 4',
      'nftables_rule_packets{chain="egress6_ports",family="inet",table="firewall",input_interfaces="any",output_interfaces="any",source_addresses="any",destination_addresses="any",source_ports="any",destination_ports="any",comment="accept traffic for np allow-dns udp",action="accept",handle="0"} 8',
      // two elements: 1 + 2
      'nftables_rule_packets{chain="egress6_ports",family="inet",table="firewall",input_interfaces="any",output_interfaces="any",source_addresses="any",destination_addresses="any",source_ports="any",destination_ports="any",comment="accept traffic for np allow-https tcp",action="accept",handle="0"} 3',
    ]);
    expect(lines(text, 'nftables_rule_bytes{chain="egress4_ports",family="inet",table="firewall",input_interfaces="any",output_interfaces="any",source_addresses="any",destination_addresses="any",source_ports="any",destination_ports="any",comment="accept traffic for np allow-dns udp"')).toEqual([
      'nftables_rule_bytes{chain="egress4_ports",family="inet",table="firewall",input_interfaces="any",output_interfaces="any",source_addresses="any",destination_addresses="any",source_ports="any",destination_ports="any",comment="accept traffic for np allow-dns udp",action="accept",handle="0"} 900',
    ]);
    expect(lines(text, 'nftables_rule_bytes{chain="services4"').length).toBe(2);
  });

  test("only counted rules have series (the vmap lookups count nothing)", () => {
    // 13 owner-and-map pairs of our table, 15 counted rules of its forward chain, 11 of the base table.
    expect(lines(text, "nftables_rule_bytes{").length).toBe(13 + 15 + 11);
    expect(text).not.toContain('handle="51"');
  });

  test("sets and maps per table, elements per set", () => {
    expect(lines(text, "nftables_table_sets")).toEqual(['nftables_table_sets{name="firewall",family="inet"} 14', 'nftables_table_sets{name="metal",family="inet"} 3']);
    expect(lines(text, 'nftables_set_elements{name="blocked4"')).toEqual(['nftables_set_elements{name="blocked4",table="metal",family="inet",type="set"} 2']);
    expect(lines(text, 'nftables_set_elements{name="egress4_ports"')).toEqual(['nftables_set_elements{name="egress4_ports",table="firewall",family="inet",type="map"} 7']);
  });
});

describe("rule labels follow the exporter's conventions", () => {
  const s = captured();
  const labels = (table: string, handle: number) => ruleLabels(s.rules.find((r) => r.table === table && r.handle === handle) as Snapshot["rules"][number]);

  test.each([
    ["metal", 8, { ...ANY, comment: "accept established connections", action: "accept" }],
    ["metal", 15, { ...ANY, source_ports: "1024-2048", destination_ports: "@allowed_ports", comment: "empty", action: "accept" }],
    ["metal", 14, { ...ANY, source_addresses: "@blocked4", comment: "drop blocked", action: "drop" }],
    ["metal", 16, { ...ANY, destination_ports: "53", comment: "dns", action: "policy" }],
    ["metal", 17, { ...ANY, comment: "log dropped", action: "policy" }],
    ["metal", 18, { ...ANY, output_interfaces: "!=lo", destination_addresses: "10.1.0.0/16", comment: "empty", action: "policy" }],
    ["metal", 20, { ...ANY, output_interfaces: "vrf104009", source_addresses: "10.0.0.0/8", comment: "snat (networkid: internet)", action: "masquerade" }],
  ] as const)("table %s rule %d", (table, handle, expected) => {
    const { chain: _c, family, table: t, handle: h, ...rest } = labels(table, handle);
    expect({ family, table: t, handle: h }).toEqual({ family: "inet", table, handle: String(handle) });
    expect(rest).toEqual(expected);
  });
});

describe("when the ruleset cannot be read", () => {
  test("the exposition is nftables_up 0 alone", async () => {
    const down = "# HELP nftables_up '1' if reading the nft output was successful, '0' otherwise\n# TYPE nftables_up gauge\nnftables_up 0\n";
    expect(await exposition(null)).toBe(down);
    expect(await nftablesRegistry(() => Promise.reject(new Error("nft: not found"))).metrics()).toBe(down);
  });
});

describe("reading", () => {
  test("one snapshot read per scrape, a fresh one for the next", async () => {
    let reads = 0;
    const s = captured();
    const registry = nftablesRegistry(async () => {
      reads++;
      return s;
    });
    await registry.metrics();
    expect(reads).toBe(1);
    await registry.metrics();
    expect(reads).toBe(2);
  });

  test("values follow the kernel between scrapes", async () => {
    let bytes = 1;
    const registry = nftablesRegistry(async () => ({ tables: [], chains: [], rules: [], sets: [], counters: [{ family: "inet", table: "t", name: "c", packets: 1, bytes }] }));
    expect(lines(await registry.metrics(), "nftables_counter_bytes{")).toEqual(['nftables_counter_bytes{name="c",table="t",family="inet"} 1']);
    bytes = 5;
    expect(lines(await registry.metrics(), "nftables_counter_bytes{")).toEqual(['nftables_counter_bytes{name="c",table="t",family="inet"} 5']);
  });
});

describe("the rule families across scrapes", () => {
  /** The captured snapshot with every counted rule's values replaced by `f(i)`. */
  const counted = (f: (i: number) => number): Snapshot => {
    const s = captured();
    let i = 0;
    return { ...s, rules: s.rules.map((r) => (r.counter ? { ...r, counter: { packets: f(i), bytes: f(i++) * 100 } } : r)) };
  };

  test("each scrape prints exactly what a first scrape of the same snapshot prints: values of the same width, of other widths, other series", async () => {
    let snapshot = counted(() => 1);
    const registry = nftablesRegistry(async () => snapshot);
    const fresh = () => nftablesRegistry(async () => snapshot).metrics();
    expect(await registry.metrics()).toBe(await fresh());
    // Same widths: the last text with its digits overwritten.
    snapshot = counted((i) => (i % 9) + 1);
    expect(await registry.metrics()).toBe(await fresh());
    // Some values one digit wider, some counters at zero: printed anew.
    snapshot = counted((i) => (i % 3 === 0 ? 12 : 0));
    expect(await registry.metrics()).toBe(await fresh());
    snapshot = counted((i) => (i % 3 === 0 ? 99 : 7));
    expect(await registry.metrics()).toBe(await fresh());
    // A rule fewer: other series.
    snapshot = { ...snapshot, rules: snapshot.rules.slice(1) };
    expect(await registry.metrics()).toBe(await fresh());
    expect(lines(await registry.metrics(), "nftables_rule_bytes{").length).toBeGreaterThan(5);
  });
});

describe("the element series across scrapes", () => {
  /** A map of `n` owners (~150 bytes of labels each: 3,000 lines span several of a family's parts). */
  const block = (map: string, comments: readonly string[], values: (i: number) => number): ElementSums => ({
    family: "inet", table: "firewall", map, verdict: "accept", target: null, comments,
    packets: Float64Array.from(comments, (_, i) => values(i)), bytes: Float64Array.from(comments, (_, i) => values(i) * 7),
  });
  const snapshotOf = (elements: ElementSums[]): Snapshot => ({ tables: [{ family: "inet", name: "firewall" }], chains: [], rules: [], counters: [], sets: [], elements });
  const owners = (n: number, tag = "") => Array.from({ length: n }, (_, i) => `accept traffic for np policy-${tag}${i} tcp`);

  test("each scrape prints what a first scrape of its snapshot prints, whatever changed since the last (property)", async () => {
    const a = owners(1500);
    const b = owners(1500, "b");
    // A step: some values change (same width, other widths, zero, beyond 2^53), or the series do.
    const step = fc.oneof(
      fc.record({ kind: fc.constant("values" as const), seed: fc.integer({ min: 0, max: 1000 }), every: fc.integer({ min: 1, max: 3000 }), to: fc.constantFrom(0, 1, 9, 10, 99_999, 123_456_789, 2 ** 31, 2 ** 53 - 1, 2 ** 60) }),
      fc.record({ kind: fc.constant("series" as const), drop: fc.integer({ min: 0, max: 1499 }) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 6 }), async (steps) => {
        let values = (i: number) => i % 10;
        let first = a;
        let snapshot = snapshotOf([block("egress4_ports", first, values), block("egress6_ports", b, values)]);
        const registry = nftablesRegistry(async () => snapshot);
        const fresh = () => nftablesRegistry(async () => snapshot).metrics();
        expect(await registry.metrics()).toBe(await fresh());
        for (const s of steps) {
          if (s.kind === "values") {
            const before = values;
            values = (i) => (i % s.every === s.seed % s.every ? s.to : before(i));
          } else first = first.filter((_, i) => i !== s.drop);
          // The unchanged map keeps its comments array, as reads of an unchanged map do.
          snapshot = snapshotOf([block("egress4_ports", first, values), block("egress6_ports", b, values)]);
          expect(await registry.metrics()).toBe(await fresh());
        }
      }),
      { numRuns: 25 },
    );
  });

  test("values print as JavaScript prints them, whatever their size (property)", async () => {
    const edges = [0, 9, 10, 99_999_999, 100_000_000, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 10 ** 15, 2 ** 53 - 1, 2 ** 53, 2 ** 64, 0.5];
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof(fc.maxSafeNat(), fc.constantFrom(...edges)), { minLength: 1, maxLength: 50 }), async (values) => {
        const comments = values.map((_, i) => `np ${i}`);
        const text = await nftablesRegistry(async () => snapshotOf([{ ...block("m", comments, () => 0), packets: Float64Array.from(values) }])).metrics();
        expect(lines(text, "nftables_rule_packets{").map((l) => l.slice(l.lastIndexOf(" ") + 1))).toEqual(values.map(String));
      }),
      { numRuns: 200 },
    );
  });

  test("an unchanged value keeps its part: the parts of a scrape are the last scrape's where nothing in them changed", async () => {
    const comments = owners(3000);
    let snapshot = snapshotOf([block("egress4_ports", comments, () => 5)]);
    const registry = nftablesRegistry(async () => snapshot) as unknown as { expositionParts(): Promise<Uint8Array[]> };
    const first = await registry.expositionParts();
    snapshot = snapshotOf([block("egress4_ports", comments, (i) => (i === 2999 ? 6 : 5))]);
    const second = await registry.expositionParts();
    // The bytes and packets families span several parts each; one value changed in each family's last part.
    expect(second.length).toBe(first.length);
    const text = (p: Uint8Array) => new TextDecoder().decode(p);
    const ruleParts = second.flatMap((p, i) => (text(p).includes("nftables_rule_") ? [i] : []));
    expect(ruleParts.length).toBeGreaterThan(10);
    // Each family's parts follow one another; its last is the one before a gap.
    const lastOfEach = ruleParts.filter((i, k) => ruleParts[k + 1] !== i + 1);
    expect(lastOfEach.length).toBe(2);
    expect(ruleParts.filter((i) => second[i] !== first[i])).toEqual(lastOfEach);
    // The last scrape's parts were not written to.
    expect(new TextDecoder().decode(Buffer.concat(first))).not.toContain("} 6\n");
  });
});

describe("perPolicySeries: false", async () => {
  const text = await exposition(captured(), { perPolicySeries: false });

  test("leaves out the per-policy and per-service series (our maps' elements)", () => {
    expect(lines(text, "nftables_rule_bytes{").filter((l) => l.includes("accept traffic for"))).toEqual([]);
    expect(lines(text, "nftables_rule_packets{").filter((l) => l.includes("accept traffic for"))).toEqual([]);
    expect(lines(text, "nftables_rule_bytes{").length).toBe(15 + 11);
  });

  test("keeps the forward chain's rules, the named counters and the maps' element counts", () => {
    expect(lines(text, 'nftables_rule_bytes{chain="forward"').length).toBe(15);
    expect(lines(text, "nftables_counter_bytes{").length).toBe(10 + 1);
    expect(lines(text, 'nftables_set_elements{name="egress6_ports"')).toEqual(['nftables_set_elements{name="egress6_ports",table="firewall",family="inet",type="map"} 4']);
  });
});

const PROMTOOL = "/usr/bin/promtool";
const noPromtool = !existsSync(PROMTOOL);
if (noPromtool) {
  if (process.env.CI === "true") throw new Error(`${PROMTOOL} missing (apt-get install prometheus); CI=true, so this fails instead of skipping`);
  console.warn(`SKIPPING: promtool check needs ${PROMTOOL} (apt-get install prometheus)`);
}

describe.skipIf(noPromtool)("promtool check metrics", () => {
  test("finds only the naming lints of the four names inherited from nftables-exporter", async () => {
    const r = spawnSync(PROMTOOL, ["check", "metrics"], { input: await exposition(captured()), encoding: "utf8" });
    expect(`${r.stdout}${r.stderr}`.trim().split("\n")).toEqual([
      'nftables_counter_bytes counter metrics should have "_total" suffix',
      "nftables_counter_bytes metric name should not include type 'counter'",
      'nftables_counter_packets counter metrics should have "_total" suffix',
      "nftables_counter_packets metric name should not include type 'counter'",
      'nftables_rule_bytes counter metrics should have "_total" suffix',
      'nftables_rule_packets counter metrics should have "_total" suffix',
    ]);
  });

  test("the down exposition is clean", () => {
    const r = spawnSync(PROMTOOL, ["check", "metrics"], { input: "# HELP nftables_up '1' if reading the nft output was successful, '0' otherwise\n# TYPE nftables_up gauge\nnftables_up 0\n", encoding: "utf8" });
    expect({ status: r.status, out: `${r.stdout}${r.stderr}` }).toEqual({ status: 0, out: "" });
  });
});
