/** A real drop, logged by the kernel from a topology namespace, read back from /dev/kmsg (SPEC §10, §12). */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { KmsgReader, type KmsgItem } from "../../lib/droptailer/kmsg.ts";
import { createTopology, HARNESS_TOOLS, needs, type Topology } from "../netns/topology.ts";
import { waitUntil } from "../wait-until.ts";

const SYSCTL = "/proc/sys/net/netfilter/nf_log_all_netns";
const env = needs([...HARNESS_TOOLS, "nft"]);

describe.skipIf(env.skip)("drop log from the real kernel", () => {
  let t: Topology | undefined;
  let oldSysctl: string | undefined;
  const ac = new AbortController();
  let reader: KmsgReader;
  const items: KmsgItem[] = [];
  let follow: Promise<void> | undefined;
  const port = 20000 + Math.floor(Math.random() * 20000);

  beforeAll(async () => {
    oldSysctl = readFileSync(SYSCTL, "utf8").trim();
    writeFileSync(SYSCTL, "1");
    t = await createTopology();
    const r = await t.exec("firewall", ["nft", "-f", "-"], {
      stdin: `table inet fct_droplog_test {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    tcp dport ${port} log prefix "nftables-firewall-dropped: " drop\n  }\n}\n`,
    });
    expect(r.stderr).toBe("");
    reader = new KmsgReader({ signal: ac.signal, pollMs: 10 });
    expect((await reader.open()).mode).toBe("end");
    follow = (async () => {
      for await (const item of reader.events()) items.push(item);
    })();
  }, 30_000);

  afterAll(async () => {
    ac.abort();
    await follow;
    try {
      await t?.destroy();
    } finally {
      if (oldSysctl !== undefined) writeFileSync(SYSCTL, oldSysctl);
    }
  });

  test("a dropped SYN is read back with its fields; a userspace line with the prefix is not", async () => {
    // forged first: written by this process, with a "<4>" (kern.warning) prefix it cannot make facility 0
    writeFileSync("/dev/kmsg", `<4>nftables-firewall-dropped: IN=forged OUT= SRC=198.51.100.66 DST=10.0.1.1 PROTO=TCP DPT=${port} SYN\n`);
    const topo = t as Topology;
    expect(await topo.tcpConnect("cluster", topo.addr.firewallCluster.v4, port, { timeoutMs: 300 })).toBe(false);
    await waitUntil("the kernel's drop line", async () => items.some((i) => i.event.fields.DPT === String(port)), 10_000);
    const mine = items.filter((i) => i.event.fields.DPT === String(port));
    expect(mine.every((i) => i.event.fields.IN !== "forged")).toBe(true);
    expect(mine[0]?.event.fields).toMatchObject({
      IN: topo.ifaces.firewallCluster,
      OUT: "",
      SRC: topo.addr.cluster.v4,
      DST: topo.addr.firewallCluster.v4,
      PROTO: "TCP",
      DPT: String(port),
      SYN: "",
      ACTION: "drop",
    });
    const ts = mine[0]?.event.timestampUs ?? 0n;
    const now = BigInt(Date.now()) * 1000n;
    expect(ts <= now && ts > now - 30_000_000n).toBe(true); // within the last 30 s, never in the future
    expect(mine[0]?.bootId).toBe(readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim());
    expect(reader.lost).toBe(0n);
  }, 20_000);
});
