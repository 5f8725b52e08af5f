// Proves the namespace harness itself: it forwards both ways over IPv4 and IPv6
// with no ruleset, a drop policy in the firewall namespace stops it, and it
// leaves nothing behind on the host.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { runCommand } from "../../lib/exec.ts";
import { createTopology, HARNESS_TOOLS, needs, type Topology } from "./topology.ts";

// Above bun's default 5 s so a slow CI machine fails on the assertions, not the clock.
const SLOW = 15_000;

describe("needs", () => {
  test("skips loudly outside CI and fails under CI=true", () => {
    const saved = process.env.CI;
    const warn = console.warn;
    const warnings: string[] = [];
    console.warn = (...args: unknown[]) => void warnings.push(args.join(" "));
    try {
      delete process.env.CI;
      const r = needs(["fct-no-such-tool"]);
      expect(r.skip).toBe(true);
      expect(r.reason).toContain("fct-no-such-tool");
      expect(warnings.join("\n")).toContain("fct-no-such-tool");
      process.env.CI = "true";
      expect(() => needs(["fct-no-such-tool"])).toThrow(/CI=true/);
    } finally {
      console.warn = warn;
      if (saved === undefined) delete process.env.CI;
      else process.env.CI = saved;
    }
  }, SLOW);
});

const env = needs([...HARNESS_TOOLS, "nft"]);

const hostLinks = async () => {
  const r = await runCommand(["ip", "-j", "link", "show"]);
  return (JSON.parse(r.stdout) as { ifname: string }[]).map((l) => l.ifname).sort();
};
const hostSysctl = async (key: string) => (await runCommand(["sysctl", "-n", key])).stdout.trim();
const netnsList = async () => (await runCommand(["ip", "netns", "list"])).stdout;

describe.skipIf(env.skip)("topology", () => {
  let t: Topology;
  let linksBefore: string[];
  const forwardingBefore: Record<string, string> = {};
  const forwardingKeys = ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"];

  beforeAll(async () => {
    linksBefore = await hostLinks();
    for (const k of forwardingKeys) forwardingBefore[k] = await hostSysctl(k);
    t = await createTopology();
  });
  afterAll(async () => {
    await t?.destroy();
  }, SLOW);

  test("namespaces are named fct-<role>-<6 hex> and the host gains no interface and no forwarding", async () => {
    expect(t.ns.cluster).toMatch(/^fct-cluster-[0-9a-f]{6}$/);
    expect(t.ns.firewall).toBe(`fct-firewall-${t.suffix}`);
    expect(t.ns.external).toBe(`fct-external-${t.suffix}`);
    expect(await hostLinks()).toEqual(linksBefore);
    for (const k of forwardingKeys) expect(await hostSysctl(k)).toBe(forwardingBefore[k]!);
    const fwd = await t.exec("firewall", ["sysctl", "-n", ...forwardingKeys]);
    expect(fwd.stdout.split("\n").filter(Boolean)).toEqual(["1", "1"]);
    const clusterFwd = await t.exec("cluster", ["sysctl", "-n", "net.ipv4.ip_forward"]);
    expect(clusterFwd.stdout.trim()).toBe("0");
  }, SLOW);

  test("no namespace has a route that leaves the topology", async () => {
    for (const role of ["cluster", "external"] as const) {
      const v4 = (await t.exec(role, ["ip", "-4", "route", "show", "default"])).stdout;
      const v6 = (await t.exec(role, ["ip", "-6", "route", "show", "default"])).stdout;
      const gw = role === "cluster" ? t.addr.firewallCluster : t.addr.firewallExternal;
      expect(v4.trim()).toStartWith(`default via ${gw.v4}`);
      expect(v6.trim()).toStartWith(`default via ${gw.v6}`);
    }
    const fwRoutes = (await t.exec("firewall", ["ip", "-4", "route"])).stdout;
    expect(fwRoutes).not.toContain("default");
  }, SLOW);

  test("nsOf finds the owner of every address", () => {
    expect(t.nsOf("10.0.1.2")).toBe(t.ns.cluster);
    expect(t.nsOf("fd00:66:0::2")).toBe(t.ns.cluster);
    expect(t.nsOf("2001:db8:1::1")).toBe(t.ns.firewall);
    expect(t.nsOf("203.0.113.200")).toBe(t.ns.external);
    expect(t.nsOf("2001:0db8:2::10")).toBe(t.ns.external);
    expect(t.nsOf("198.51.100.99")).toBeUndefined();
  });

  const flows = [
    ["cluster", "203.0.113.5"],
    ["cluster", "2001:db8:2::10"],
    ["cluster", "192.0.2.2"],
    ["external", "10.0.1.2"],
    ["external", "fd00:66::2"],
  ] as const;

  test("without a ruleset the firewall forwards TCP and UDP both ways over v4 and v6, quickly", async () => {
    for (const [from, to] of flows) {
      const started = Date.now();
      expect({ from, to, tcp: await t.tcpConnect(from, to, 8080) }).toEqual({ from, to, tcp: true });
      expect({ from, to, udp: await t.udpExchange(from, to, 5353) }).toEqual({ from, to, udp: true });
      expect(Date.now() - started).toBeLessThan(2000);
    }
  }, SLOW);

  test("a source address can be chosen", async () => {
    expect(await t.tcpConnect("external", t.addr.cluster.v4, 8081, { sourceAddr: "198.51.100.10" })).toBe(true);
    expect(await t.udpExchange("external", t.addr.cluster.v6, 8081, { sourceAddr: "2001:db8:2::10" })).toBe(true);
  }, SLOW);

  test("a drop policy on the firewall's forward hook stops everything, within about a second", async () => {
    const add = await t.exec("firewall", ["nft", "-f", "-"], {
      stdin: "add table inet t\nadd chain inet t f { type filter hook forward priority 0; policy drop; }\n",
    });
    expect(add.stderr).toBe("");
    try {
      const started = Date.now();
      // Distinct ports so the checks can wait out their timeouts side by side.
      const results = await Promise.all(
        flows.flatMap(([from, to], i) => [
          t.tcpConnect(from, to, 9000 + i).then((ok) => ({ from, to, proto: "tcp", ok })),
          t.udpExchange(from, to, 9100 + i).then((ok) => ({ from, to, proto: "udp", ok })),
        ]),
      );
      for (const r of results) expect(r).toEqual({ ...r, ok: false });
      expect(Date.now() - started).toBeLessThan(4000);
    } finally {
      await t.exec("firewall", ["nft", "delete", "table", "inet", "t"]);
    }
    expect(await t.tcpConnect("cluster", "203.0.113.5", 8082)).toBe(true);
  }, SLOW);

  test("start() runs a process in a namespace and stop() ends it", async () => {
    const p = t.start("cluster", ["sleep", "30"]);
    const started = Date.now();
    const r = await p.stop();
    expect(r.code).not.toBe(0);
    expect(Date.now() - started).toBeLessThan(2500);
  }, SLOW);

  test("destroy() removes namespaces and processes, and is idempotent", async () => {
    const extra = await createTopology({ externalAddresses: ["198.51.100.77", "2001:db8:77::7"] });
    // The extra v6 address is outside the routed /48: the harness must have added a host route.
    expect(await extra.tcpConnect("cluster", "2001:db8:77::7", 7000)).toBe(true);
    const sleeper = extra.start("external", ["sleep", "60"]);
    expect(await netnsList()).toContain(extra.ns.firewall);
    await Promise.all([extra.destroy(), extra.destroy()]);
    await extra.destroy();
    expect((await sleeper.done).code).not.toBe(0);
    const list = await netnsList();
    for (const name of Object.values(extra.ns)) expect(list).not.toContain(name);
    expect(await hostLinks()).toEqual(linksBefore);
  }, SLOW);

  test("rejects addresses outside the documentation ranges", async () => {
    await expect(createTopology({ externalAddresses: ["8.8.8.8"] })).rejects.toThrow(/outside/);
    await expect(createTopology({ clusterAddresses: ["192.168.1.1"] })).rejects.toThrow(/outside/);
  }, SLOW);
});

describe.skipIf(env.skip)("topology cleanup", () => {
  test("a finished topology leaves no namespace and no temp dir", async () => {
    const t = await createTopology();
    const names = Object.values(t.ns);
    await t.destroy();
    const list = await netnsList();
    for (const n of names) expect(list).not.toContain(n);
    expect(readdirSync(tmpdir()).filter((f) => f.startsWith(`fct-${t.suffix}-`))).toEqual([]);
  }, SLOW);
});
