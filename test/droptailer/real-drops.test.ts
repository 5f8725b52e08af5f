/**
 * Real kernel drops to a droptailer server requiring client certificates,
 * exactly once across a restart of the drop log (SPEC §10): the drop log reads
 * the real /dev/kmsg, a topology namespace drops and logs with our prefix
 * (`nf_log_all_netns=1`, restored after), a forged userspace line is not shipped.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DropLog } from "../../lib/droptailer/drop-log.ts";
import { droptailerTarget } from "../../lib/droptailer/target.ts";
import { createTopology, HARNESS_TOOLS, needs, type Topology } from "../netns/topology.ts";
import { waitUntil } from "../wait-until.ts";
import { DroptailerTestServer, makePki, type Pki } from "./server.ts";

const SYSCTL = "/proc/sys/net/netfilter/nf_log_all_netns";
const env = needs([...HARNESS_TOOLS, "nft", "openssl"]);

describe.skipIf(env.skip)("real kernel drops shipped exactly once", () => {
  let t: Topology | undefined;
  let oldSysctl: string | undefined;
  let dir: string;
  let pki: Pki;
  let server: DroptailerTestServer;
  const port = 20000 + Math.floor(Math.random() * 20000);

  beforeAll(async () => {
    oldSysctl = readFileSync(SYSCTL, "utf8").trim();
    writeFileSync(SYSCTL, "1");
    dir = mkdtempSync(join(tmpdir(), "fct-realdrops-"));
    pki = await makePki(join(dir, "pki"));
    server = await DroptailerTestServer.start(pki);
    t = await createTopology();
    const r = await t.exec("firewall", ["nft", "-f", "-"], {
      stdin: `table inet fct_realdrops_test {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    tcp dport ${port} log prefix "nftables-firewall-dropped: " drop\n  }\n}\n`,
    });
    expect(r.stderr).toBe("");
  }, 60_000);

  afterAll(async () => {
    await server?.stop();
    try {
      await t?.destroy();
    } finally {
      if (oldSysctl !== undefined) writeFileSync(SYSCTL, oldSysctl);
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  });

  const start = () => {
    const stop = new AbortController();
    const log = new DropLog({ stateDir: join(dir, "state"), signal: stop.signal, port: server.port, kmsg: { pollMs: 10 } });
    const target = droptailerTarget(
      { metadata: { name: "droptailer-client" }, data: { "ca.crt": pki.ca.toString("base64"), "tls.crt": pki.clientCert.toString("base64"), "tls.key": pki.clientKey.toString("base64") } },
      [{ metadata: { name: "droptailer-0" }, status: { phase: "Running", podIP: "127.0.0.1" } }],
    );
    if (!target.ok) throw new Error(target.reason);
    log.setTarget(target.target);
    const running = log.run();
    return { log, stop: async () => {
      stop.abort();
      await running;
    } };
  };
  /** SYNs to the blocked port from the cluster host, each from its own source port. */
  const mine = () => server.received.filter((d) => d.fields.DPT === String(port) && d.fields.IN !== "forged");
  const syn = async () => {
    const topo = t as Topology;
    expect(await topo.tcpConnect("cluster", topo.addr.firewallCluster.v4, port, { timeoutMs: 300 })).toBe(false);
  };

  test("a dropped SYN arrives with its fields; a forged userspace line does not", async () => {
    const a = start();
    await a.log.ready;
    writeFileSync("/dev/kmsg", `<4>nftables-firewall-dropped: IN=forged OUT= SRC=198.51.100.66 DST=10.0.1.1 PROTO=TCP DPT=${port} SYN\n`);
    await syn();
    await waitUntil("the drop at the server", async () => mine().length >= 1, 15_000);
    const topo = t as Topology;
    expect(mine()[0]?.fields).toMatchObject({ IN: topo.ifaces.firewallCluster, SRC: topo.addr.cluster.v4, PROTO: "TCP", DPT: String(port), SYN: "", ACTION: "drop" });
    expect(server.received.some((d) => d.fields.IN === "forged")).toBe(false);
    await a.stop();
  }, 30_000);

  test("drops while the drop log is stopped arrive after its restart, and none twice", async () => {
    const before = mine().map((d) => d.fields.SPT);
    await syn();
    await syn();
    const b = start();
    // The kernel retransmits a SYN it got no answer for, so count by source port: each connection's first line.
    await waitUntil("the drops made while it was stopped", async () => new Set(mine().map((d) => d.fields.SPT)).size >= before.length + 2, 15_000);
    const spts = mine().map((d) => d.fields.SPT);
    // No line shipped before the restart came again: every earlier source port still appears only as often as before.
    for (const spt of new Set(before)) expect(spts.filter((s) => s === spt).length).toBe(before.filter((s) => s === spt).length);
    await b.stop();
  }, 30_000);
});
