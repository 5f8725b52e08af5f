// The cheap statistics path against the full listing, in a real kernel: our
// ruleset (rendered from the examples, some counters with values) plus a base
// table; status.stats computed from named counters + the model must equal
// status.stats computed from `nft -j list ruleset`.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseCidr } from "../../lib/api/address.ts";
import { buildDesiredState } from "../../lib/desired-state.ts";
import { runCommand } from "../../lib/exec.ts";
import { loadManifests } from "../../lib/manifests/load.ts";
import { readSnapshot } from "../../lib/nft/snapshot.ts";
import { renderRuleset } from "../../lib/ruleset/render.ts";
import { deviceStats } from "../../lib/stats/devices.ts";
import { statsSnapshot } from "../../lib/stats/model-snapshot.ts";
import { ruleStats } from "../../lib/stats/rules.ts";
import { needs } from "../netns/topology.ts";

const env = needs(["ip", "nft"]);
const ROOT = join(import.meta.dir, "..", "..");

describe.skipIf(env.skip)("statistics from named counters and the model", () => {
  const ns = `fct-mstats-${randomBytes(3).toString("hex")}`;
  const exec = (argv: readonly string[], o?: { stdin?: string }) => runCommand(["ip", "netns", "exec", ns, ...argv], o);
  let countedRules: NonNullable<ReturnType<typeof renderRuleset>["countedRules"]>;

  beforeAll(async () => {
    expect((await runCommand(["ip", "netns", "add", ns])).code).toBe(0);
    const cluster = parseCidr("10.0.0.0/8");
    if (!cluster.ok) throw new Error(cluster.message);
    const desired = buildDesiredState(await loadManifests(join(ROOT, "examples")), { firewallName: "firewall", clusterPrefixes: [cluster.value], privateVrf: 42 });
    const rendered = renderRuleset(desired.state);
    countedRules = rendered.countedRules ?? [];
    // Values in some counters, so equality means more than zeros.
    const withValues = rendered.text
      .replace("\tcounter accept_established {\n\t}", "\tcounter accept_established {\n\t\tpackets 100 bytes 10000\n\t}")
      .replace("\tcounter drop_total {\n\t}", "\tcounter drop_total {\n\t\tpackets 7 bytes 420\n\t}")
      .replace("\tcounter external_out {\n\t}", "\tcounter external_out {\n\t\tpackets 3 bytes 999\n\t}")
      .replace(/\tcounter (np\.eg\.tcp\.[^ ]+) \{\n\t\}/, "\tcounter $1 {\n\t\tpackets 5 bytes 300\n\t}");
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
    const cheap = await statsSnapshot("nft", recording, { table: "firewall", countedRules });
    expect(ruleStats(cheap)).toEqual(ruleStats(full));
    expect(deviceStats(cheap)).toEqual(deviceStats(full));
    expect(ruleStats(cheap).rules.accept["accept established connections"]).toEqual({ counter: { packets: 200, bytes: 20000 } });
    expect(calls.sort()).toEqual(["nft -j list counters", "nft -j list table inet metal", "nft -j list tables"]);
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
