import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { appendFileSync, copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { type KmsgIo, KmsgReader, nodeKmsgIo, parseKmsgRecord, unescapeKmsg } from "../../lib/droptailer/kmsg.ts";

const FIXTURE = resolve(import.meta.dir, "..", "fixtures", "droptailer", "kmsg-records.txt");
const BOOT = "0b6c3f0e-1111-4222-8333-444455556666";
const BOOT_WALL = 1_700_000_000_000_000n;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "fct-kmsg-"));
  writeFileSync(join(dir, "boot_id"), `${BOOT}\n`);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function fixtureCopy(): string {
  const p = join(dir, `kmsg-${Math.random().toString(16).slice(2)}`);
  copyFileSync(FIXTURE, p);
  return p;
}
const opts = (path: string, extra: object = {}) => ({ path, bootIdPath: join(dir, "boot_id"), bootWallUs: () => BOOT_WALL, ...extra });

describe("kmsg record format", () => {
  test("header, facility, level, continuation lines", () => {
    const r = parseKmsgRecord("6,377,5790700100,-;device veth1 entered promiscuous mode\n SUBSYSTEM=net\n");
    expect(r).toEqual({ facility: 0, level: 6, seq: 377n, usec: 5790700100n, flags: "-", text: "device veth1 entered promiscuous mode" });
    expect(parseKmsgRecord("12,5,10,-,caller=T1;hello")?.facility).toBe(1);
    expect(parseKmsgRecord("garbage")).toBeNull();
    expect(parseKmsgRecord("x,1,2,-;text")).toBeNull();
  });
  test("\\xNN escapes are undone (UTF-8 bytes too)", () => {
    expect(unescapeKmsg("a\\x5cb\\x0ac")).toBe("a\\b\nc");
    expect(unescapeKmsg("caf\\xc3\\xa9")).toBe("café");
    expect(unescapeKmsg("plain \\xZZ")).toBe("plain \\xZZ");
  });
});

describe("KmsgReader on a fixture file", () => {
  test("from a stored position of this boot: only kernel drop/accept lines after it, facility user ignored", async () => {
    const r = new KmsgReader(opts(fixtureCopy(), { resume: { bootId: BOOT, seq: 377n } }));
    const start = await r.open();
    expect(start).toEqual({ bootId: BOOT, mode: "resume", afterSeq: 377n });
    const items = r.drain();
    // 379 (pri 12 = user.warning) and 381 (a forged "<4>" still user) are not reported
    expect(items.map((i) => i.seq)).toEqual([378n, 380n, 382n, 383n, 384n]);
    expect(items[0]?.event.fields).toMatchObject({ SRC: "10.9.0.1", DST: "10.9.0.2", PROTO: "TCP", DPT: "22", SYN: "", ACTION: "drop" });
    expect(items[0]?.event.timestampUs).toBe(BOOT_WALL + 6_032_898_268n);
    expect(items[0]?.bootId).toBe(BOOT);
    expect(items[3]?.event.fields.ACTION).toBe("accept");
    expect(items[4]?.event.fields.IN).toBe("we\\irdé"); // unescaped
    expect(r.lost).toBe(0n);
    expect(r.lastSeq).toBe(384n);
    r.close();
  });

  test("resume skips what was shipped; a gap to the first record counts as lost", async () => {
    const lost: bigint[] = [];
    const r = new KmsgReader(opts(fixtureCopy(), { resume: { bootId: BOOT, seq: 380n }, onLost: (n: bigint) => lost.push(n) }));
    await r.open();
    expect(r.drain().map((i) => i.seq)).toEqual([382n, 383n, 384n]);
    expect(lost).toEqual([]);
    r.close();
    const r2 = new KmsgReader(opts(fixtureCopy(), { resume: { bootId: BOOT, seq: 300n }, onLost: (n: bigint) => lost.push(n) }));
    await r2.open();
    expect(r2.drain().length).toBe(5);
    expect(lost).toEqual([75n]); // 301..375 were overwritten before we came back
    r2.close();
  });

  test("a position of another boot starts at the oldest record (seq 376: 376 records of this boot lost)", async () => {
    const lost: bigint[] = [];
    const r = new KmsgReader(opts(fixtureCopy(), { resume: { bootId: "ffffffff-1111-4222-8333-444455556666", seq: 999_999n }, onLost: (n: bigint) => lost.push(n) }));
    expect((await r.open()).mode).toBe("new-boot");
    expect(r.drain().map((i) => i.seq)).toEqual([378n, 380n, 382n, 383n, 384n]);
    expect(lost).toEqual([376n]);
    r.close();
  });

  test("without a position it starts at the end and follows appended records", async () => {
    const path = fixtureCopy();
    const ac = new AbortController();
    const r = new KmsgReader(opts(path, { signal: ac.signal, pollMs: 5 }));
    expect(await r.open()).toEqual({ bootId: BOOT, mode: "end", afterSeq: 384n });
    const got: bigint[] = [];
    const follow = (async () => {
      for await (const item of r.events()) {
        got.push(item.seq);
        if (item.event.fields.DPT === "25") ac.abort();
      }
    })();
    appendFileSync(path, "14,385,6040000000,-;nftables-firewall-dropped: SRC=1.1.1.1 DPT=24\n");
    appendFileSync(path, "4,386,6040000001,-;nftables-firewall-dropped: SRC=10.0.0.1 DST=10.0.0.2 PROTO=TCP DPT=25\n");
    await follow;
    expect(got).toEqual([386n]);
    expect(r.lost).toBe(0n);
  });

  test("EPIPE (records overwritten under us): continue at the oldest record and count the gap", async () => {
    const lines = [
      "4,10,100,-;nftables-firewall-dropped: SRC=10.0.0.1 DPT=1\n",
      "4,11,110,-;nftables-firewall-dropped: SRC=10.0.0.1 DPT=2\n",
      "EPIPE",
      "4,15,150,-;nftables-firewall-dropped: SRC=10.0.0.1 DPT=6\n",
      "EAGAIN",
    ];
    let i = 0;
    const io: KmsgIo = {
      open: () => 42,
      read: (_fd, buf) => {
        const l = lines[i++] ?? "EAGAIN";
        if (l === "EPIPE" || l === "EAGAIN") throw Object.assign(new Error(l), { code: l });
        return buf.write(l, "latin1");
      },
      close: () => {},
    };
    const lost: Array<[bigint, string]> = [];
    const r = new KmsgReader(opts("/nonexistent", { io, resume: { bootId: BOOT, seq: 9n }, onLost: (n: bigint, why: string) => lost.push([n, why]) }));
    await r.open();
    expect(r.drain().map((x) => x.event.fields.DPT)).toEqual(["1", "2", "6"]);
    expect(r.lost).toBe(3n);
    expect(lost[0]?.[0]).toBe(3n);
    expect(lost[0]?.[1]).toContain("records 12..14 were overwritten");
  });

  test("an unexpected read error surfaces; nodeKmsgIo opens non-blocking", () => {
    expect(() => nodeKmsgIo.open(join(dir, "missing"))).toThrow();
    const p = fixtureCopy();
    const fd = nodeKmsgIo.open(p);
    const buf = Buffer.alloc(16384);
    expect(nodeKmsgIo.read(fd, buf)).toBe(readFileSync(p).length);
    nodeKmsgIo.close(fd);
  });
});
