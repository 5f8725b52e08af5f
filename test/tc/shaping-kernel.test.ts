// Rate limiting measured with real traffic (SPEC §4.8): the firewall namespace
// shapes what it receives on vrf104009 (from the external side); iperf3 sends
// from the external host to a server on the cluster host.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Executor } from "../../lib/exec.ts";
import { applyShaping } from "../../lib/tc/apply.ts";
import { FILTER_PREF } from "../../lib/tc/plan.ts";
import { createTopology, HARNESS_TOOLS, needs, type Topology } from "../netns/topology.ts";

const env = needs([...HARNESS_TOOLS, "tc", "iperf3"]);
// bun's default per-test timeout (5 s) is shorter than two iperf3 runs.
const SLOW = 20_000;

describe.skipIf(env.skip)("shaping in the kernel", () => {
  let t: Topology;
  let nextPort = 5201;
  let exec: Executor;
  let commands: string[] = [];
  const mutations = () => commands.filter((c) => !c.includes(" -j "));

  beforeAll(async () => {
    t = await createTopology();
    const inFirewall = t.executor("firewall");
    exec = (argv, o) => {
      commands.push(argv.join(" "));
      return inFirewall(argv, o);
    };
    // Someone else's IFB in the firewall: it must survive every reconcile.
    const foreign = await t.exec("firewall", ["ip", "link", "add", "ifb7", "type", "ifb"]);
    if (foreign.code !== 0) throw new Error(foreign.stderr);
  });
  afterAll(async () => {
    await t?.destroy();
  });

  /** Mbit/s the cluster host received from one 3 s iperf3 TCP run started on the external host. */
  async function measure(to: string): Promise<number> {
    for (let attempt = 1; ; attempt++) {
      // A fresh one-shot server per run: a long-lived iperf3 server sometimes resets
      // the control connection of a client that arrives while it winds down the last test.
      const port = nextPort++;
      const server = t.start("cluster", ["iperf3", "-s", "-1", "-p", String(port)]);
      try {
        if (!(await t.waitForPort("cluster", port))) throw new Error("iperf3 server did not start");
        const r = await t.exec("external", ["iperf3", "-c", to, "-p", String(port), "-t", "3", "-J", "--connect-timeout", "2000"]);
        let report: { error?: string; end?: { sum_received?: { bits_per_second?: number } } };
        try {
          report = JSON.parse(r.stdout);
        } catch {
          report = { error: `no JSON from iperf3 (exit ${r.code}): ${r.stderr.trim()}` };
        }
        const error = r.code !== 0 || report.error ? (report.error ?? r.stderr.trim()) : undefined;
        if (error === undefined) return (report.end?.sum_received?.bits_per_second ?? 0) / 1e6;
        // Only the control connection is retried; a measured rate is never.
        if (attempt >= 3) throw new Error(`iperf3 to ${to} failed: ${error}`);
        console.warn(`iperf3 to ${to} failed (${error}); retrying`);
      } finally {
        await server.stop();
      }
    }
  }

  const apply = async (entries: readonly { interface: string; rateMbit: number }[]) => {
    commands = [];
    return await applyShaping(entries, { exec });
  };

  test("10 Mbit/s on vrf104009 delivers 7-11.5 Mbit/s over IPv4 and IPv6; a second apply runs nothing", async () => {
    const r = await apply([{ interface: "vrf104009", rateMbit: 10 }]);
    expect(r.problems).toEqual([]);
    expect(r.changed).toBe(true);
    const qdiscs = (await t.exec("firewall", ["tc", "qdisc", "show"])).stdout;
    expect(qdiscs).toContain("qdisc ingress ffff: dev vrf104009");
    expect(qdiscs).toMatch(/qdisc tbf \S+ dev fcifbvrf104009 root .*rate 10Mbit/);
    const filters = (await t.exec("firewall", ["tc", "filter", "show", "dev", "vrf104009", "parent", "ffff:"])).stdout;
    expect(filters).toContain(`pref ${FILTER_PREF} u32`);
    expect(filters).toContain("Redirect to device fcifbvrf104009");

    const v4 = await measure(t.addr.cluster.v4);
    const v6 = await measure(t.addr.cluster.v6);
    console.log(`shaped to 10 Mbit/s: v4 ${v4.toFixed(2)} Mbit/s, v6 ${v6.toFixed(2)} Mbit/s`);
    expect(v4).toBeGreaterThan(7);
    expect(v4).toBeLessThan(11.5);
    expect(v6).toBeGreaterThan(7);
    expect(v6).toBeLessThan(11.5);

    const again = await apply([{ interface: "vrf104009", rateMbit: 10 }]);
    expect(again).toEqual({ changed: false, problems: [], actions: [] });
    expect(commands.length).toBeGreaterThan(0);
    expect(mutations()).toEqual([]);
  }, SLOW);

  test("changing to 20 Mbit/s replaces only the TBF and delivers 14-23 Mbit/s", async () => {
    const r = await apply([{ interface: "vrf104009", rateMbit: 20 }]);
    expect(r.problems).toEqual([]);
    expect(r.actions).toEqual(["tc qdisc replace dev fcifbvrf104009 root tbf rate 20mbit burst 32768 latency 50ms"]);
    const v4 = await measure(t.addr.cluster.v4);
    console.log(`shaped to 20 Mbit/s: v4 ${v4.toFixed(2)} Mbit/s`);
    expect(v4).toBeGreaterThan(14);
    expect(v4).toBeLessThan(23);
  }, SLOW);

  test("a missing interface is reported while the present one stays as it is", async () => {
    const r = await apply([{ interface: "vlan404", rateMbit: 5 }, { interface: "vrf104009", rateMbit: 20 }]);
    expect(r.changed).toBe(false);
    expect(r.actions).toEqual([]);
    expect(r.problems).toEqual([{ interface: "vlan404", message: "interface vlan404 does not exist; its limit of 5 Mbit/s is not applied" }]);
    expect(mutations()).toEqual([]);
  }, SLOW);

  test("an IFB deleted by hand (its redirect left dangling, blackholing the interface) is repaired", async () => {
    await t.exec("firewall", ["ip", "link", "del", "dev", "fcifbvrf104009"]);
    expect(await t.tcpConnect("external", t.addr.cluster.v4, 7001, { timeoutMs: 500 })).toBe(false);
    const r = await apply([{ interface: "vrf104009", rateMbit: 20 }]);
    expect(r.problems).toEqual([]);
    expect(r.actions[0]).toBe(`tc filter del dev vrf104009 parent ffff: pref ${FILTER_PREF}`);
    expect(await t.tcpConnect("external", t.addr.cluster.v4, 7002)).toBe(true);
    expect((await apply([{ interface: "vrf104009", rateMbit: 20 }])).actions).toEqual([]);
  }, SLOW);

  test("removing the limit removes the ingress qdisc and our IFB only, and the path is unshaped again", async () => {
    const r = await apply([]);
    expect(r.problems).toEqual([]);
    expect(r.actions).toEqual(["tc qdisc del dev vrf104009 handle ffff: ingress", "ip link del dev fcifbvrf104009"]);
    const ifbs = (await t.exec("firewall", ["ip", "-br", "link", "show", "type", "ifb"])).stdout;
    expect(ifbs).not.toContain("fcifb");
    expect(ifbs).toContain("ifb7");
    const qdiscs = (await t.exec("firewall", ["tc", "qdisc", "show", "dev", "vrf104009"])).stdout;
    expect(qdiscs).not.toContain("ingress");

    const v4 = await measure(t.addr.cluster.v4);
    console.log(`unshaped: v4 ${v4.toFixed(0)} Mbit/s`);
    expect(v4).toBeGreaterThan(50);

    const again = await apply([]);
    expect(again).toEqual({ changed: false, problems: [], actions: [] });
    expect(mutations()).toEqual([]);
  }, SLOW);
});
