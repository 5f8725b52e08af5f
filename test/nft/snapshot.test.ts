import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type CommandResult, runCommand } from "../../lib/exec.ts";
import { elementRules, MAX_SNAPSHOT_CHARS, MAX_SNAPSHOT_OBJECTS, parseSnapshot, readSnapshot, type Snapshot } from "../../lib/nft/snapshot.ts";
import { needs, netnsExecutor } from "../netns/topology.ts";

const FIXTURES = join(import.meta.dir, "../fixtures/nft");
const captured = (): unknown => JSON.parse(readFileSync(join(FIXTURES, "ruleset.json"), "utf8"));

function snapshot(): Snapshot {
  const r = parseSnapshot(captured());
  if (!r.ok) throw new Error(r.message);
  return r.value;
}

const rule = (s: Snapshot, table: string, handle: number) => s.rules.find((r) => r.table === table && r.handle === handle);

describe("parseSnapshot on nft -j output of our table and a base table", () => {
  const s = snapshot();

  test("lists the tables", () => {
    expect(s.tables).toEqual([{ family: "inet", name: "firewall" }, { family: "inet", name: "metal" }]);
  });

  test("counts the rules of each chain", () => {
    expect(s.chains.filter((c) => c.table === "metal")).toEqual([
      { family: "inet", table: "metal", name: "input", handle: 1, rules: 8 },
      { family: "inet", table: "metal", name: "dns", handle: 2, rules: 2 },
      { family: "inet", table: "metal", name: "postrouting", handle: 3, rules: 1 },
    ]);
    // Our table has one chain: policies and services are map elements, not chains.
    expect(s.chains.filter((c) => c.table === "firewall")).toEqual([{ family: "inet", table: "firewall", name: "forward", handle: 1, rules: 25 }]);
  });

  test("reads named counters with their values", () => {
    // Our table's are the fixed ones only (no counter per policy or service), and the base table's.
    expect(s.counters.length).toBe(10 + 1);
    expect(s.counters.find((c) => c.name === "accept_established")).toEqual({ family: "inet", table: "firewall", name: "accept_established", packets: 39785, bytes: 21211168 });
    expect(s.counters.find((c) => c.table === "metal")).toEqual({ family: "inet", table: "metal", name: "input_ssh", packets: 4, bytes: 240 });
  });

  test("counts the elements of sets and maps", () => {
    expect(s.sets.filter((x) => x.table === "metal")).toEqual([
      { family: "inet", table: "metal", name: "blocked4", kind: "set", elements: 2 },
      { family: "inet", table: "metal", name: "allowed_ports", kind: "set", elements: 3 },
      { family: "inet", table: "metal", name: "tenant_vmap", kind: "map", elements: 2 },
    ]);
    expect(s.sets.find((x) => x.name === "egress4_ports")).toEqual({ family: "inet", table: "firewall", name: "egress4_ports", kind: "map", elements: 7 });
    expect(s.sets.find((x) => x.name === "ingress4_any")?.elements).toBe(0);
  });

  test("a rule counting into a named counter carries that counter's values", () => {
    expect(rule(s, "firewall", 42)).toEqual({
      family: "inet", table: "firewall", chain: "forward", handle: 42, comment: "accept established connections",
      counter: { packets: 39785, bytes: 21211168 }, counterName: "accept_established", verdict: "accept", target: null, matches: [],
    });
    expect(rule(s, "metal", 11)?.counter).toEqual({ packets: 4, bytes: 240 });
  });

  test("map elements with a counter and a comment are summed by map and comment, as rules of a chain named after the map", () => {
    const fromElements = elementRules(s);
    // Every rule of our table is the forward chain's; an owner's elements in one map are element sums.
    expect(s.rules.some((r) => r.fromElements === true)).toBe(false);
    expect(s.rules.filter((r) => r.table === "firewall").every((r) => r.chain === "forward")).toBe(true);
    expect(fromElements.map((r) => `${r.chain}: ${r.comment}`)).toEqual([
      "egress4_ports: accept traffic for np allow-monitoring any",
      "egress4_ports: accept traffic for np allow-app-backends tcp",
      "egress4_ports: accept traffic for np allow-dns tcp",
      "egress4_ports: accept traffic for np allow-dns udp",
      "egress4_ports: accept traffic for np allow-https tcp",
      "egress4_any: accept traffic for np allow-monitoring any",
      "ingress4_ports: accept traffic for k8s network policy allow-ssh-from-admins tcp",
      "services4: accept traffic for k8s service voip/sip",
      "services4: accept traffic for k8s service shop/web",
      "egress6_ports: accept traffic for np allow-dns tcp",
      "egress6_ports: accept traffic for np allow-dns udp",
      "egress6_ports: accept traffic for np allow-https tcp",
      "services6: accept traffic for k8s service shop/web",
    ]);
    // Two elements of one owner in one map (2001:db8:443::/48 except 2001:db8:443:ff::/64): summed.
    expect(fromElements.find((r) => r.chain === "egress6_ports" && r.comment === "accept traffic for np allow-https tcp")).toEqual({
      family: "inet", table: "firewall", chain: "egress6_ports", handle: 0, comment: "accept traffic for np allow-https tcp",
      counter: { packets: 1 + 2, bytes: 100 + 200 }, counterName: null, verdict: "accept", target: null, matches: [], fromElements: true,
    });
    // One owner's three elements (allow-monitoring: tcp, udp, sctp) are one rule per map.
    expect(fromElements.filter((r) => r.comment === "accept traffic for np allow-monitoring any").map((r) => r.chain)).toEqual(["egress4_ports", "egress4_any"]);
    expect(fromElements.find((r) => r.chain === "egress4_ports" && r.comment === "accept traffic for np allow-dns udp")?.counter).toEqual({ packets: 12, bytes: 900 });
    expect(fromElements.find((r) => r.chain === "services4" && r.comment === "accept traffic for k8s service shop/web")?.counter).toEqual({ packets: 0, bytes: 0 });
  });

  test("an inline counter carries its own values", () => {
    expect(rule(s, "metal", 8)).toMatchObject({ counter: { packets: 100, bytes: 10000 }, counterName: null });
  });

  test("a rule without a counter has none", () => {
    expect(rule(s, "firewall", 51)).toMatchObject({ counter: null, counterName: null, verdict: "other", comment: null });
  });

  test("keeps != matches with their operator", () => {
    expect(rule(s, "metal", 13)?.matches).toEqual([
      { field: "source_addresses", op: "!=", values: ["10.0.0.0/8"] },
      { field: "destination_ports", op: "==", values: ["9100", "9630"] },
    ]);
    expect(rule(s, "firewall", 29)?.matches).toEqual([
      { field: "output_interfaces", op: "==", values: ["vrf42", "vlan42"] },
      { field: "source_addresses", op: "!=", values: ["@internal_prefixes4"] },
    ]);
  });

  test("renders port ranges as a-b and named sets as @name", () => {
    expect(rule(s, "metal", 15)?.matches).toEqual([
      { field: "source_ports", op: "==", values: ["1024-2048"] },
      { field: "destination_ports", op: "==", values: ["@allowed_ports"] },
    ]);
  });

  test("tells verdicts apart: jump with its target, return, masquerade, log-only is other", () => {
    expect(rule(s, "metal", 16)).toMatchObject({ verdict: "jump", target: "dns" });
    expect(rule(s, "metal", 18)?.verdict).toBe("return");
    expect(rule(s, "metal", 20)?.verdict).toBe("masquerade");
    expect(rule(s, "metal", 17)).toMatchObject({ verdict: "other", comment: "log dropped", counter: { packets: 9, bytes: 540 } });
    expect(rule(s, "metal", 14)?.verdict).toBe("drop");
  });
});

describe("parseSnapshot at the edge", () => {
  test("ignores unknown keys and unknown object kinds", () => {
    const r = parseSnapshot({
      future: true,
      nftables: [
        { metainfo: { version: "9.9" } },
        { flowtable: { family: "inet", name: "ft" } },
        { table: { family: "inet", name: "t", handle: 1, flags: ["dormant"], newkey: 1 } },
        { rule: { family: "inet", table: "t", chain: "c", handle: 2, expr: [{ counter: { packets: 1, bytes: 2 } }, { notyetknown: {} }, { accept: null }], newkey: 1 } },
      ],
    });
    expect(r).toEqual({
      ok: true,
      value: {
        tables: [{ family: "inet", name: "t" }],
        chains: [],
        rules: [{ family: "inet", table: "t", chain: "c", handle: 2, comment: null, counter: { packets: 1, bytes: 2 }, counterName: null, verdict: "accept", target: null, matches: [] }],
        counters: [],
        sets: [],
      },
    });
  });

  test("map elements: only those with a counter and a comment count; the verdict and its target are the element's", () => {
    const key = (val: string, extra: Record<string, unknown>) => ({ elem: { val, ...extra } });
    const r = parseSnapshot({
      nftables: [
        { set: { family: "inet", table: "t", name: "s", elem: [key("192.0.2.1", { counter: { packets: 9, bytes: 9 }, comment: "a set's element" })] } },
        {
          map: {
            family: "inet", table: "t", name: "m", elem: [
              [key("192.0.2.1", { counter: { packets: 1, bytes: 10 }, comment: "a" }), { goto: { target: "accept_log" } }],
              [key("192.0.2.2", { counter: { packets: 2, bytes: 20 }, comment: "a" }), { goto: { target: "accept_log" } }],
              [key("192.0.2.3", { comment: "no counter" }), { accept: null }],
              [key("192.0.2.4", { counter: { packets: 4, bytes: 40 } }), { accept: null }],
              ["192.0.2.5", { drop: null }],
            ],
          },
        },
      ],
    });
    expect(r.ok && r.value.rules).toEqual([]);
    expect(r.ok && elementRules(r.value)).toEqual([
      { family: "inet", table: "t", chain: "m", handle: 0, comment: "a", counter: { packets: 3, bytes: 30 }, counterName: null, verdict: "goto", target: "accept_log", matches: [], fromElements: true },
    ]);
    expect(r.ok && r.value.sets.map((x) => [x.name, x.kind, x.elements])).toEqual([["s", "set", 1], ["m", "map", 5]]);
  });

  test("map elements of verdicts the exporter does not tell apart are one block: their series would share labels", () => {
    const key = (val: string, comment: string, packets: number) => ({ elem: { val, comment, counter: { packets, bytes: packets * 10 } } });
    const r = parseSnapshot({
      nftables: [
        { chain: { family: "inet", table: "t", name: "ok", handle: 1 } },
        { rule: { family: "inet", table: "t", chain: "ok", handle: 2, expr: [{ accept: null }] } },
        {
          map: {
            family: "inet", table: "t", name: "m", elem: [
              [key("192.0.2.1", "a", 1), { jump: { target: "x" } }],
              [key("192.0.2.2", "a", 2), { goto: { target: "y" } }],
              [key("192.0.2.3", "b", 4), { goto: { target: "ok" } }],
              [key("192.0.2.4", "b", 8), { accept: null }],
              [key("192.0.2.5", "b", 16), { drop: null }],
            ],
          },
        },
      ],
    });
    if (!r.ok) throw new Error(r.message);
    expect(r.value.elements?.map((e) => [e.map, e.verdict, e.comments, [...e.packets]])).toEqual([
      ["m", "jump", ["a"], [3]],
      ["m", "accept", ["b"], [12]],
      ["m", "drop", ["b"], [16]],
    ]);
  });

  test("a reference to a counter that is not listed gives no values", () => {
    const r = parseSnapshot({ nftables: [{ rule: { family: "inet", table: "t", chain: "c", handle: 2, expr: [{ counter: "gone" }, { drop: null }] } }] });
    expect(r.ok && r.value.rules[0]).toMatchObject({ counter: null, counterName: "gone", verdict: "drop" });
  });

  test("refuses a document that is not nft's", () => {
    expect(parseSnapshot(null)).toEqual({ ok: false, message: "nft -j list ruleset: Invalid type: Expected Object but received null" });
    expect(parseSnapshot({ nftables: [{ rule: { family: "inet", table: "t", chain: "c" } }] })).toEqual({
      ok: false,
      message: `nft -j list ruleset: object 0: rule.handle: Invalid key: Expected "handle" but received undefined`,
    });
  });

  test("refuses more objects than the bound without looking at them", () => {
    const r = parseSnapshot({ nftables: new Array(MAX_SNAPSHOT_OBJECTS + 1).fill(0) });
    expect(r).toEqual({ ok: false, message: `nft -j list ruleset: nftables: more than ${MAX_SNAPSHOT_OBJECTS} objects` });
  });
});

describe("readSnapshot", () => {
  const answering = (result: Partial<CommandResult>, seen: (readonly string[])[] = []) => async (argv: readonly string[]) => {
    seen.push(argv);
    return { code: 0, stdout: "", stderr: "", ...result };
  };

  test("runs nft -j list ruleset and parses it", async () => {
    const seen: (readonly string[])[] = [];
    const s = await readSnapshot("/usr/sbin/nft", answering({ stdout: readFileSync(join(FIXTURES, "ruleset.json"), "utf8") }, seen));
    expect(seen).toEqual([["/usr/sbin/nft", "-j", "list", "ruleset"]]);
    expect(s).toEqual(snapshot());
  });

  test("an empty output is an empty ruleset", async () => {
    expect(await readSnapshot("nft", answering({ stdout: "" }))).toEqual({ tables: [], chains: [], rules: [], counters: [], sets: [] });
  });

  test("a failing or timed-out nft is nft_unavailable with its stderr", async () => {
    const p = readSnapshot("nft", answering({ code: 124, stderr: "nft did not finish within 60 s and was killed" }));
    await expect(p).rejects.toMatchObject({ code: "nft_unavailable", message: "nft -j list ruleset failed: nft did not finish within 60 s and was killed" });
  });

  test("refuses output that is not JSON or too large", async () => {
    await expect(readSnapshot("nft", answering({ stdout: "table inet x {" }))).rejects.toMatchObject({ code: "nft_unavailable" });
    const huge = { length: MAX_SNAPSHOT_CHARS + 1, trim: () => "x" } as unknown as string;
    await expect(readSnapshot("nft", answering({ stdout: huge }))).rejects.toMatchObject({
      code: "nft_unavailable",
      message: `nft -j list ruleset printed ${MAX_SNAPSHOT_CHARS + 1} characters, more than the ${MAX_SNAPSHOT_CHARS} read`,
    });
  });
});

const skip = needs(["ip", "nft"]).skip;

describe.skipIf(skip)("readSnapshot on a real kernel", () => {
  const ns = `fct-snap-${randomBytes(3).toString("hex")}`;
  const exec = netnsExecutor(ns);
  beforeAll(async () => {
    expect((await runCommand(["ip", "netns", "add", ns])).code).toBe(0);
    for (const f of ["firewall.nft", "metal.nft"]) expect(await exec(["nft", "-f", join(FIXTURES, f)])).toMatchObject({ code: 0, stderr: "" });
  });
  afterAll(async () => {
    await runCommand(["ip", "netns", "del", ns]);
  });

  test("the live snapshot of the fixture's rulesets is the captured one", async () => {
    expect(await readSnapshot("nft", exec)).toEqual(snapshot());
  });
});
