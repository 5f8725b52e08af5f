// The drop log end to end without the kernel: kernel-format records appended to
// a file stand in for /dev/kmsg; a droptailer server requiring client
// certificates receives them. Exactly once across a restart (the position),
// nothing lost across a server outage, a forged userspace line never shipped.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { appendFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { DropLog } from "../../lib/droptailer/drop-log.ts";
import { writePosition } from "../../lib/droptailer/position.ts";
import { droptailerTarget } from "../../lib/droptailer/target.ts";
import { waitUntil } from "../wait-until.ts";
import { type Entry, needsJournalTools, writeJournal } from "./journal-files.ts";
import { DroptailerTestServer, makePki, type Pki } from "./server.ts";

const BOOT = "3f1c5e2a-9b8d-4c7e-a1f0-0123456789ab";
const line = (seq: number, text: string, pri = 4) => `${pri},${seq},${6_000_000_000 + seq * 1000},-;${text}\n`;
const drop = (seq: number, dpt: number) => line(seq, `nftables-firewall-dropped: IN=vrf104009 OUT=vlan42 SRC=198.51.100.1 DST=10.0.1.80 LEN=60 PROTO=TCP SPT=40000 DPT=${dpt} SYN`);

describe("drop log: kernel records to the droptailer server", () => {
  let dir: string;
  let pki: Pki;
  let server: DroptailerTestServer;
  const kmsg = () => join(dir, "kmsg");

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "fct-droplog-"));
    pki = await makePki(join(dir, "pki"));
    server = await DroptailerTestServer.start(pki);
    writeFileSync(join(dir, "boot_id"), `${BOOT}\n`);
    writeFileSync(join(dir, "uptime"), "7000.00 100.00\n");
    writeFileSync(kmsg(), "");
  }, 30_000);

  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const start = () => {
    const stop = new AbortController();
    const log = new DropLog({
      stateDir: join(dir, "state"),
      signal: stop.signal,
      port: server.port,
      kmsg: { path: kmsg(), bootIdPath: join(dir, "boot_id"), uptimePath: join(dir, "uptime"), pollMs: 20 },
    });
    const secret = { metadata: { name: "droptailer-client", namespace: "firewall" }, data: { "ca.crt": pki.ca.toString("base64"), "tls.crt": pki.clientCert.toString("base64"), "tls.key": pki.clientKey.toString("base64") } };
    const pod = { metadata: { name: "droptailer-7d9f", namespace: "firewall" }, status: { phase: "Running", podIP: "127.0.0.1" } };
    const t = droptailerTarget(secret, [pod]);
    if (!t.ok) throw new Error(t.reason);
    log.setTarget(t.target);
    const running = log.run();
    return { log, stop: async () => {
      stop.abort();
      await running;
    } };
  };
  const dpts = () => server.received.map((d) => d.fields.DPT);

  test("drops arrive with their fields and ACTION; a forged userspace line does not", async () => {
    const a = start();
    // It starts at the end of what is there: append once it is reading.
    await a.log.ready;
    appendFileSync(kmsg(), drop(1, 1001) + line(2, "nftables-firewall-dropped: forged SRC=203.0.113.9", 12) + drop(3, 1003));
    await waitUntil("two drops at the server", async () => server.received.length === 2, 10_000);
    expect(dpts()).toEqual(["1001", "1003"]);
    expect(server.received[0]?.fields).toMatchObject({ ACTION: "drop", SRC: "198.51.100.1", DST: "10.0.1.80", PROTO: "TCP", SYN: "" });
    // The server has them before our side has seen its answers: wait for those, not a guess.
    await waitUntil("both answered", async () => a.log.status().counters.shipped === 2, 10_000);
    expect(a.log.status()).toMatchObject({ shipping: true, queued: 0 });
    await a.stop();
    expect(existsSync(join(dir, "state", "droptailer-position.json"))).toBe(true);
  });

  test("a restart resumes after the last shipped event: nothing repeated, nothing lost", async () => {
    appendFileSync(kmsg(), drop(4, 1004) + drop(5, 1005));
    const b = start();
    await waitUntil("the two new drops", async () => server.received.length === 4, 10_000);
    expect(dpts()).toEqual(["1001", "1003", "1004", "1005"]);
    await b.stop();
  });

  test("the server away: events wait, then each arrives once (pushes in flight together may arrive in either order); the status says why meanwhile", async () => {
    const c = start();
    await server.stop();
    appendFileSync(kmsg(), drop(6, 1006) + drop(7, 1007));
    await waitUntil("not shipping", async () => c.log.status().shipping === false, 10_000);
    expect(c.log.status().reason).toStartWith("unavailable");
    await server.restart();
    await waitUntil("delivered after the outage", async () => {
      return server.received.length === 6;
    }, 30_000);
    expect(dpts().slice(0, 4)).toEqual(["1001", "1003", "1004", "1005"]);
    expect(dpts().slice(4).sort()).toEqual(["1006", "1007"]);
    await c.stop();
  }, 40_000);

  test("stopped while the server's answers are on their way: the answered drops are not shipped again after the restart", async () => {
    server.answerDelayMs = 300;
    const d = start();
    await d.log.ready;
    appendFileSync(kmsg(), drop(8, 1008) + drop(9, 1009));
    await waitUntil("both at the server", async () => server.received.length === 8, 10_000);
    await d.stop(); // the answers are 300 ms away
    server.answerDelayMs = 0;
    appendFileSync(kmsg(), drop(10, 1010));
    const e = start();
    await waitUntil("the drop after the restart", async () => server.received.length >= 9, 10_000);
    await waitUntil("answered", async () => e.log.status().counters.shipped === 1, 10_000);
    await e.stop();
    expect(dpts().slice(6)).toEqual(["1008", "1009", "1010"]);
  });
});

describe.skipIf(needsJournalTools())("drop log from the systemd journal", () => {
  let dir: string;
  let pki: Pki;
  let server: DroptailerTestServer;
  const file = () => join(dir, "system.journal");
  const kernelDrop = (us: bigint, dpt: number): Entry => ({ us, transport: "kernel", message: `nftables-firewall-dropped: IN=vrf104009 OUT=vlan42 SRC=198.51.100.1 DST=10.0.1.80 PROTO=TCP DPT=${dpt} SYN` });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "fct-droplog-journal-"));
    pki = await makePki(join(dir, "pki"));
    server = await DroptailerTestServer.start(pki);
  }, 30_000);

  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const start = () => {
    const stop = new AbortController();
    const log = new DropLog({ stateDir: join(dir, "state"), signal: stop.signal, port: server.port, source: "journal", journal: { file: file() } });
    const t = droptailerTarget(
      { metadata: { name: "droptailer-client" }, data: { "ca.crt": pki.ca.toString("base64"), "tls.crt": pki.clientCert.toString("base64"), "tls.key": pki.clientKey.toString("base64") } },
      [{ metadata: { name: "droptailer-0" }, status: { phase: "Running", podIP: "127.0.0.1" } }],
    );
    if (!t.ok) throw new Error(t.reason);
    log.setTarget(t.target);
    const running = log.run();
    return { stop: async () => {
      stop.abort();
      await running;
    } };
  };

  test("kernel entries after the stored cursor arrive once; a forged syslog entry never; a restart repeats nothing", async () => {
    const t0 = BigInt(Date.now()) * 1000n;
    writeJournal(file(), [kernelDrop(t0, 2001)]);
    const first = spawnSync("journalctl", [`--file=${file()}`, "--output=json", "--lines=1", "--no-pager"], { encoding: "utf8" });
    const cursor = (JSON.parse(first.stdout.trim()) as { __CURSOR: string }).__CURSOR;
    await writePosition(join(dir, "state"), { source: "journal", cursor });
    writeJournal(file(), [
      kernelDrop(t0 + 1000n, 2002),
      { us: t0 + 2000n, transport: "syslog", message: "nftables-firewall-dropped: IN=forged SRC=203.0.113.9 DPT=2999", extra: { SYSLOG_IDENTIFIER: "kernel" } },
      kernelDrop(t0 + 3000n, 2003),
    ]);
    const a = start();
    await waitUntil("the two entries after the cursor", async () => server.received.length === 2, 15_000);
    expect(server.received.map((d) => d.fields.DPT)).toEqual(["2002", "2003"]);
    expect(server.received[0]?.timestampUs).toBe(t0 + 1000n);
    await a.stop();
    writeJournal(file(), [kernelDrop(t0 + 4000n, 2004)]);
    const b = start();
    await waitUntil("the entry written while it was stopped", async () => server.received.length === 3, 15_000);
    expect(server.received.map((d) => d.fields.DPT)).toEqual(["2002", "2003", "2004"]);
    await b.stop();
  }, 40_000);
});
