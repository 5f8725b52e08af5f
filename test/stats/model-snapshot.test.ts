// The cheap statistics path against the full listing, in a real kernel: our
// ruleset (rendered from the examples, some named and element counters with
// values) plus a base table; status.stats computed from named counters, the
// maps' element counters and the model must equal status.stats computed from
// `nft -j list ruleset`.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseCidr } from "../../lib/api/address.ts";
import { buildDesiredState } from "../../lib/desired-state.ts";
import { runCommand } from "../../lib/exec.ts";
import { loadManifests } from "../../lib/manifests/load.ts";
import { nftClient } from "../../lib/nft/client.ts";
import { kernelReader, netlinkAvailable, openNetlink } from "../../lib/nft/netlink.ts";
import { nftablesRegistry } from "../../lib/metrics/nftables.ts";
import { KernelSnapshots } from "../../lib/stats/kernel-snapshot.ts";
import { readSnapshot } from "../../lib/nft/snapshot.ts";
import { renderRuleset } from "../../lib/ruleset/render.ts";
import { deviceStats } from "../../lib/stats/devices.ts";
import { statsSnapshot, type TableModel } from "../../lib/stats/model-snapshot.ts";
import { ruleStats } from "../../lib/stats/rules.ts";
import { needs } from "../netns/topology.ts";

const env = needs(["ip", "nft"]);
const ROOT = join(import.meta.dir, "..", "..");

describe.skipIf(env.skip)("statistics from named counters and the model", () => {
  const ns = `fct-mstats-${randomBytes(3).toString("hex")}`;
  const exec = (argv: readonly string[], o?: { stdin?: string }) => runCommand(["ip", "netns", "exec", ns, ...argv], o);
  let model: TableModel;
  let rendered: ReturnType<typeof renderRuleset>;

  beforeAll(async () => {
    expect((await runCommand(["ip", "netns", "add", ns])).code).toBe(0);
    const cluster = parseCidr("10.0.0.0/8");
    if (!cluster.ok) throw new Error(cluster.message);
    const desired = buildDesiredState(await loadManifests(join(ROOT, "examples")), { firewallName: "firewall", clusterPrefixes: [cluster.value], privateVrf: 42 });
    rendered = renderRuleset(desired.state);
    model = { table: "firewall", countedRules: rendered.countedRules, maps: [...rendered.maps.keys()] };
    // Values in some counters, so equality means more than zeros: named ones, and elements of an
    // owner with elements in two maps (allow-dns tcp: IPv4 and IPv6).
    const dns = 'comment "accept traffic for np allow-dns tcp"';
    const [before, between, after] = rendered.text.split(` ${dns}`);
    expect(after).toBeDefined();
    const withValues = `${before} counter packets 5 bytes 300 ${dns}${between} counter packets 2 bytes 120 ${dns}${after}`
      .replace("\tcounter accept_established {\n\t}", "\tcounter accept_established {\n\t\tpackets 100 bytes 10000\n\t}")
      .replace("\tcounter drop_total {\n\t}", "\tcounter drop_total {\n\t\tpackets 7 bytes 420\n\t}")
      .replace("\tcounter external_out {\n\t}", "\tcounter external_out {\n\t\tpackets 3 bytes 999\n\t}")
      .replace(' comment "accept traffic for k8s service shop/web"', ' counter packets 9 bytes 900 comment "accept traffic for k8s service shop/web"');
    const ours = await exec(["nft", "-f", "-"], { stdin: withValues });
    expect(ours.stderr).toBe("");
    const base = await exec(["nft", "-f", "-"], { stdin: readFileSync(join(ROOT, "test/fixtures/nft/metal.nft"), "utf8") });
    expect(base.stderr).toBe("");
  });

  afterAll(async () => {
    await runCommand(["ip", "netns", "del", ns]);
  });

  test("rules and devices equal those from the full listing, without listing our table's chains", async () => {
    const full = await readSnapshot("nft", exec);
    const calls: string[] = [];
    const recording = (argv: readonly string[], o?: { stdin?: string }) => {
      calls.push(argv.join(" "));
      return exec(argv, o);
    };
    const cheap = await statsSnapshot("nft", recording, model, nftClient("nft", recording));
    expect(ruleStats(cheap)).toEqual(ruleStats(full));
    expect(deviceStats(cheap)).toEqual(deviceStats(full));
    expect(ruleStats(cheap).rules.accept["accept established connections"]).toEqual({ counter: { packets: 200, bytes: 20000 } });
    // An owner's count is the sum of its elements, over maps.
    expect(ruleStats(cheap).rules.accept["accept traffic for np allow-dns tcp"]).toEqual({ counter: { packets: 7, bytes: 420 } });
    expect(ruleStats(cheap).rules.accept["accept traffic for k8s service shop/web"]).toEqual({ counter: { packets: 9, bytes: 900 } });
    // Of our table: the named counters and each map's elements, never the table (nor its chains).
    expect(calls.sort()).toEqual(["nft -j list counters", ...model.maps.map((m) => `nft -j list map inet firewall ${m}`), "nft -j list table inet metal", "nft -j list tables"].sort());
  });

  test.skipIf(!netlinkAvailable())("with the element counters read over netlink, nft lists only the named counters and the other tables", async () => {
    const full = await readSnapshot("nft", exec);
    const calls: string[] = [];
    const recording = (argv: readonly string[], o?: { stdin?: string }) => {
      calls.push(argv.join(" "));
      return exec(argv, o);
    };
    const nl = openNetlink({ netns: ns });
    try {
      const cheap = await statsSnapshot("nft", recording, model, nftClient("nft", recording, nl));
      expect(ruleStats(cheap)).toEqual(ruleStats(full));
      expect(ruleStats(cheap).rules.accept["accept traffic for np allow-dns tcp"]).toEqual({ counter: { packets: 7, bytes: 420 } });
    } finally {
      nl.close();
    }
    expect(calls.sort()).toEqual(["nft -j list counters", "nft -j list table inet metal", "nft -j list tables"]);
  });

  test.skipIf(!netlinkAvailable())("from netlink and the model (KernelSnapshots): the same status and exporter figures as the full listing; our table is listed once, tersely, and then never again", async () => {
    const full = await readSnapshot("nft", exec);
    const calls: string[] = [];
    const recording = (argv: readonly string[], o?: { stdin?: string }) => {
      calls.push(argv.join(" "));
      return exec(argv, o);
    };
    const kernel = kernelReader({ netns: ns });
    if (!kernel) throw new Error("netlink is not available");
    const snapshots = new KernelSnapshots({ nftPath: "nft", exec: recording, kernel });
    snapshots.applied({ table: "firewall", ruleset: rendered });
    for (let round = 0; round < 2; round++) {
      const cheap = await snapshots.read();
      expect(ruleStats(cheap)).toEqual(ruleStats(full));
      expect(deviceStats(cheap)).toEqual(deviceStats(full));
      expect(ruleStats(cheap).rules.accept["accept traffic for np allow-dns tcp"]).toEqual({ counter: { packets: 7, bytes: 420 } });
      // The exporter's series: the same, but for the marker chains (they change with every transaction).
      const series = async (s: typeof full) => (await nftablesRegistry(async () => s).metrics()).split("\n").filter((l) => !l.startsWith("#") && !/(revision|generation|fingerprint)\./.test(l)).sort();
      expect(await series(cheap)).toEqual(await series(full));
    }
    expect(calls.sort()).toEqual(["nft -j -t list table inet firewall", "nft -j list table inet metal", "nft -j list table inet metal"]);
  });

  test("without a model it reads the full listing", async () => {
    const calls: string[] = [];
    await statsSnapshot("nft", (argv, o) => {
      calls.push(argv.join(" "));
      return exec(argv, o);
    });
    expect(calls).toEqual(["nft -j list ruleset"]);
  });
});
