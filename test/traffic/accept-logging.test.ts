// Accept logging with real traffic (SPEC §3.1 `logacceptedconnections`, §10): with the flag on, an
// accepted new TCP connection is logged by the kernel with prefix `nftables-firewall-accepted: ` and
// still works; with the flag off nothing is logged. The lines are read back from /dev/kmsg with the
// droptailer's own reader (net.netfilter.nf_log_all_netns=1 for the test only, restored after).
import { ownerCount } from "../owners.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import YAML from "yaml";
import { type KmsgItem, KmsgReader } from "../../lib/droptailer/kmsg.ts";
import { ACCEPT_LOG_CHAIN } from "../../lib/ruleset/render.ts";
import { createTopology, HARNESS_TOOLS, needs, type Topology } from "../netns/topology.ts";
import { waitUntil } from "../wait-until.ts";
import { type Controller, controller, nft, policy } from "./controller.ts";

const SYSCTL = "/proc/sys/net/netfilter/nf_log_all_netns";
const env = needs([...HARNESS_TOOLS, "nft"]);

const EXT4 = "203.0.113.5";
const EXT6 = "2001:db8:1::2";
const CL4 = "10.0.1.2";
// The kernel logs IPv6 addresses in full.
const KERNEL_CL6 = "fd00:0066:0000:0000:0000:0000:0000:0002";
const KERNEL_EXT6 = "2001:0db8:0001:0000:0000:0000:0000:0002";
// Ports of this run only, so lines of other runs (or other tests logging at the same time) never match.
const BASE = 20000 + Math.floor(Math.random() * 20000);
const PORT_ON = BASE;
const PORT_ON6 = BASE + 1;
const PORT_OFF = BASE + 2;
const PORT_MARK = BASE + 3; // not allowed: its drop line marks "everything before it has been read"

const firewall = (logacceptedconnections: boolean) =>
  YAML.stringify({ apiVersion: "metal-stack.io/v1", kind: "Firewall", metadata: { name: "firewall", namespace: "firewall" }, spec: { interval: "10s", logacceptedconnections } });
const allow = policy("allow-logged", {
  egress: [{ to: [{ cidr: "203.0.113.0/24" }, { cidr: "2001:db8:1::/64" }], ports: [{ protocol: "TCP", port: PORT_ON, endPort: PORT_OFF }] }],
});

describe.skipIf(env.skip)("accept logging with real traffic (SPEC §3.1, §10)", () => {
  let t: Topology;
  let fc: Controller;
  let oldSysctl: string | undefined;
  const ac = new AbortController();
  const items: KmsgItem[] = [];
  let follow: Promise<void> | undefined;

  const lines = (action: "accept" | "drop", port: number) => items.filter((i) => i.event.fields.ACTION === action && i.event.fields.DPT === String(port));
  /** Waits for the drop line of a blocked connection to PORT_MARK: every earlier kernel line has been read by then. */
  let marks = 0;
  const barrier = async () => {
    const before = lines("drop", PORT_MARK).length;
    expect(await t.tcpConnect("cluster", EXT4, PORT_MARK, { timeoutMs: 300 })).toBe(false);
    marks++;
    await waitUntil("the marker's drop line", async () => lines("drop", PORT_MARK).length > before, 10_000);
  };

  beforeAll(async () => {
    oldSysctl = readFileSync(SYSCTL, "utf8").trim();
    writeFileSync(SYSCTL, "1");
    t = await createTopology();
    fc = controller(t);
    const reader = new KmsgReader({ signal: ac.signal, pollMs: 10 });
    expect((await reader.open()).mode).toBe("end");
    follow = (async () => {
      for await (const item of reader.events()) items.push(item);
    })();
  }, 30_000);

  afterAll(async () => {
    ac.abort();
    try {
      await follow;
      fc?.cleanup();
      await t?.destroy();
    } finally {
      if (oldSysctl !== undefined) writeFileSync(SYSCTL, oldSysctl);
    }
  });

  test("on: an accepted TCP connection (IPv4 and IPv6) is logged as accepted, once, and still works; a drop is not logged as accepted", async () => {
    await fc.apply([firewall(true), allow]);
    expect(await nft(t, ["list", "chain", "inet", "firewall", ACCEPT_LOG_CHAIN])).toContain("nftables-firewall-accepted: ");
    expect(await t.tcpConnect("cluster", EXT4, PORT_ON)).toBe(true);
    expect(await t.tcpConnect("cluster", EXT6, PORT_ON6)).toBe(true);
    await waitUntil("the accepted lines", async () => lines("accept", PORT_ON).length > 0 && lines("accept", PORT_ON6).length > 0, 10_000);
    await barrier();
    // Only the connection's first packet (ct state new) is logged; replies and the rest are established.
    expect(lines("accept", PORT_ON)).toHaveLength(1);
    expect(lines("accept", PORT_ON6)).toHaveLength(1);
    expect(lines("accept", PORT_ON)[0]?.event.fields).toMatchObject({ IN: t.ifaces.firewallCluster, OUT: t.ifaces.firewallExternal, SRC: CL4, DST: EXT4, PROTO: "TCP", DPT: String(PORT_ON), SYN: "", ACTION: "accept" });
    expect(lines("accept", PORT_ON6)[0]?.event.fields).toMatchObject({ IN: t.ifaces.firewallCluster, OUT: t.ifaces.firewallExternal, SRC: KERNEL_CL6, DST: KERNEL_EXT6, PROTO: "TCP", DPT: String(PORT_ON6), SYN: "", ACTION: "accept" });
    expect(lines("accept", PORT_MARK)).toEqual([]);
  }, 30_000);

  test("the accept still counts: the policy's counter moves with the logged connection", async () => {
    await fc.apply([firewall(true), allow]);
    const counter = async () => {
      return (await ownerCount((argv) => t.exec("firewall", argv), "np.eg.tcp.allow-logged")).packets;
    };
    const before = await counter();
    expect(await t.tcpConnect("cluster", EXT4, PORT_ON)).toBe(true);
    expect(await counter()).toBe(before + 1);
  }, 30_000);

  test("off: the connection works and nothing is logged as accepted; the log chain is gone", async () => {
    await fc.apply([firewall(false), allow]);
    const chains = await nft(t, ["-j", "list", "chains", "inet"]);
    expect(chains).not.toContain(`"${ACCEPT_LOG_CHAIN}"`);
    expect(await t.tcpConnect("cluster", EXT4, PORT_OFF)).toBe(true);
    expect(await t.tcpConnect("cluster", EXT6, PORT_OFF)).toBe(true);
    await barrier();
    expect(lines("accept", PORT_OFF)).toEqual([]);
  }, 30_000);

  test("on again: logging resumes", async () => {
    await fc.apply([firewall(true), allow]);
    expect(await t.tcpConnect("cluster", EXT4, PORT_OFF)).toBe(true);
    await waitUntil("the accepted line", async () => lines("accept", PORT_OFF).length > 0, 10_000);
    expect(marks).toBe(2);
  }, 30_000);
});
