/**
 * JournalReader against real journal files: entries are written in the journal
 * export format (https://systemd.io/JOURNAL_EXPORT_FORMATS/) and turned into a
 * journal file by `systemd-journal-remote` (Debian package
 * `systemd-journal-remote`), then read back through `journalctl --file`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type JournalItem, JournalReader, parseJournalLine } from "../../lib/droptailer/journal.ts";
import { type Entry, needsJournalTools, writeJournal } from "./journal-files.ts";

const skip = needsJournalTools();
let dir: string;
/** Cursor of the file's last entry, via journalctl. */
function lastCursor(file: string): string {
  const r = spawnSync("journalctl", [`--file=${file}`, "--output=json", "--lines=1", "--no-pager"], { encoding: "utf8" });
  const e = parseJournalLine(r.stdout.trim());
  if (typeof e === "string") throw new Error(`no entry in ${file}: ${e}`);
  return e.cursor;
}

const T0 = 1_700_000_000_123_456n;
const DROP = "nftables-firewall-dropped: IN=vrf104009 OUT=eth1 SRC=192.0.2.2 DST=10.0.1.2 PROTO=TCP SPT=40000 DPT=22 SYN";
const BASE: readonly Entry[] = [
  { us: T0, transport: "kernel", message: DROP },
  { us: T0 + 1n, transport: "kernel", message: "device veth1 entered promiscuous mode" },
  { us: T0 + 2n, transport: "syslog", message: "nftables-firewall-dropped: IN=forged SRC=6.6.6.6", extra: { SYSLOG_IDENTIFIER: "kernel", SYSLOG_FACILITY: "0" } },
  { us: T0 + 3n, transport: "kernel", message: "nftables-firewall-accepted: IN=eth1 SRC=10.0.1.2 DST=1.1.1.1 PROTO=UDP DPT=53" },
  { us: T0 + 4n, transport: "kernel", message: Buffer.concat([Buffer.from("nftables-firewall-dropped: IN=eth0 SRC=198.51.100.7 X="), Buffer.from([0xff, 0xfe]), Buffer.from(" DPT=80")]) },
];

/** Collects items from a reader in the background; `until` waits for a state (no fixed sleeps). */
function collect(r: JournalReader) {
  const items: JournalItem[] = [];
  const waiters: Array<() => void> = [];
  const done = (async () => {
    for await (const item of r.events()) {
      items.push(item);
      for (const w of waiters.splice(0)) w();
    }
  })();
  const until = (pred: () => boolean, what: string, ms = 10_000) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}; have ${JSON.stringify(items.map((i) => i.event.fields.SRC))}`)), ms);
      const check = () => {
        if (pred()) {
          clearTimeout(timer);
          resolve();
        } else waiters.push(check);
      };
      check();
    });
  return { items, done, until, poke: () => waiters.splice(0).forEach((w) => w()) };
}

describe.skipIf(skip)("JournalReader on real journal files", () => {
  let file: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "fct-journal-"));
    file = join(dir, "base.journal");
    writeJournal(file, BASE);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("invocation", () => {
    const r = new JournalReader({ file: "/x.journal" });
    expect(r.followArgs({ cursor: "s=1" })).toEqual(["--output=json", "--all", "--no-pager", "--file=/x.journal", "--follow", "--after-cursor=s=1", "_TRANSPORT=kernel"]);
    expect(new JournalReader({ directory: "/var/log/journal" }).followArgs("all")).toEqual(["--output=json", "--all", "--no-pager", "--directory=/var/log/journal", "--follow", "--lines=all", "_TRANSPORT=kernel"]);
  });

  test("kernel drop/accept lines become events; syslog 'kernel' and non-drop lines do not", async () => {
    // resume "after" a cursor that precedes everything: a fresh file for a known first cursor
    const f = join(dir, "all.journal");
    writeJournal(f, [{ us: T0 - 10n, transport: "kernel", message: "Linux version 6.1.0" }]);
    const start = lastCursor(f);
    writeJournal(f, BASE);
    const ac = new AbortController();
    const problems: string[] = [];
    const r = new JournalReader({ file: f, after: start, signal: ac.signal, onProblem: (m) => problems.push(m) });
    const c = collect(r);
    await c.until(() => c.items.length >= 3, "three events");
    ac.abort();
    await c.done;
    expect(c.items.map((i) => i.event.fields.ACTION)).toEqual(["drop", "accept", "drop"]);
    const [a, b, x] = c.items;
    expect(a?.event.timestampUs).toBe(T0);
    expect(a?.event.fields).toEqual(Object.assign(Object.create(null), { IN: "vrf104009", OUT: "eth1", SRC: "192.0.2.2", DST: "10.0.1.2", PROTO: "TCP", SPT: "40000", DPT: "22", SYN: "", ACTION: "drop" }));
    expect(b?.event.timestampUs).toBe(T0 + 3n);
    expect(b?.event.fields.DPT).toBe("53");
    expect(x?.event.timestampUs).toBe(T0 + 4n);
    expect(x?.event.fields.SRC).toBe("198.51.100.7"); // MESSAGE stored as bytes (non-UTF-8)
    expect(x?.event.fields.X).toBe("\ufffd\ufffd");
    expect(x?.event.fields.DPT).toBe("80");
    expect(c.items.some((i) => i.event.fields.IN === "forged")).toBe(false);
    expect(new Set(c.items.map((i) => i.cursor)).size).toBe(3);
    expect(problems).toEqual([]);
    expect(r.skipped).toBe(0);
  });

  test("resume after a cursor: only later entries", async () => {
    const f = join(dir, "resume.journal");
    writeJournal(f, BASE);
    const r0 = spawnSync("journalctl", [`--file=${f}`, "--output=json", "--no-pager"], { encoding: "utf8" });
    const cursors = r0.stdout.trim().split("\n").map((l) => parseJournalLine(l)).filter((e) => typeof e !== "string");
    const afterFirstDrop = cursors[0]?.cursor ?? "";
    const ac2 = new AbortController();
    const c = collect(new JournalReader({ file: f, after: afterFirstDrop, signal: ac2.signal }));
    await c.until(() => c.items.length >= 2, "two events after the cursor");
    ac2.abort();
    await c.done;
    expect(c.items.map((i) => i.event.timestampUs)).toEqual([T0 + 3n, T0 + 4n]);
  });

  test("follow: entries appended later show up; start at the end skips what is there", async () => {
    const f = join(dir, "follow.journal");
    writeJournal(f, BASE);
    const ac = new AbortController();
    const r = new JournalReader({ file: f, signal: ac.signal });
    const c = collect(r);
    await c.until(() => (r.cursor !== undefined ? true : (setTimeout(c.poke, 20), false)), "the end to be resolved");
    expect(r.cursor).toBe(lastCursor(f));
    writeJournal(f, [{ us: T0 + 100n, transport: "kernel", message: "nftables-firewall-dropped: SRC=203.0.113.9 DPT=443" }]);
    await c.until(() => c.items.length >= 1, "the appended drop");
    writeJournal(f, [
      { us: T0 + 101n, transport: "syslog", message: "nftables-firewall-dropped: SRC=6.6.6.6", extra: { SYSLOG_IDENTIFIER: "kernel" } },
      { us: T0 + 102n, transport: "kernel", message: "nftables-firewall-accepted: SRC=203.0.113.10" },
    ]);
    await c.until(() => c.items.length >= 2, "the second appended entry");
    ac.abort();
    await c.done;
    expect(c.items.map((i) => [i.event.fields.SRC, i.event.timestampUs])).toEqual([
      ["203.0.113.9", T0 + 100n],
      ["203.0.113.10", T0 + 102n],
    ]);
  });

  test("a bogus cursor is reported and reading starts at the current end", async () => {
    const f = join(dir, "bogus.journal");
    writeJournal(f, BASE);
    const ac = new AbortController();
    const problems: string[] = [];
    const r = new JournalReader({ file: f, after: "not-a-cursor", signal: ac.signal, onProblem: (m) => problems.push(m) });
    const c = collect(r);
    await c.until(() => (problems.length > 0 ? true : (setTimeout(c.poke, 20), false)), "the problem report");
    expect(problems[0]).toContain("rejected the drop log cursor");
    expect(problems[0]).toContain("not-a-cursor");
    expect(r.cursor).toBe(lastCursor(f)); // the end was resolved before the report
    writeJournal(f, [{ us: T0 + 200n, transport: "kernel", message: "nftables-firewall-dropped: SRC=203.0.113.20" }]);
    await c.until(() => c.items.length >= 1, "the drop after the problem");
    ac.abort();
    await c.done;
    expect(c.items.map((i) => i.event.fields.SRC)).toEqual(["203.0.113.20"]);
    expect(problems).toHaveLength(1);
  });

  test("lines over the bound are skipped and counted, later ones still read", async () => {
    const f = join(dir, "long.journal");
    writeJournal(f, [{ us: T0 - 10n, transport: "kernel", message: "Linux version 6.1.0" }]);
    const start = lastCursor(f);
    writeJournal(f, [
      { us: T0, transport: "kernel", message: `nftables-firewall-dropped: SRC=192.0.2.99 PAD=${"x".repeat(3000)}` },
      { us: T0 + 1n, transport: "kernel", message: "nftables-firewall-dropped: SRC=192.0.2.100" },
    ]);
    const ac = new AbortController();
    const problems: string[] = [];
    const r = new JournalReader({ file: f, after: start, signal: ac.signal, maxLineBytes: 2048, onProblem: (m) => problems.push(m) });
    const c = collect(r);
    await c.until(() => c.items.length >= 1, "the short drop");
    ac.abort();
    await c.done;
    expect(c.items.map((i) => i.event.fields.SRC)).toEqual(["192.0.2.100"]);
    expect(r.skipped).toBe(1);
    expect(problems[0]).toContain("longer than 2048 bytes");
  });

  test("journalctl that cannot start is reported and retried with backoff until aborted", async () => {
    const ac = new AbortController();
    const problems: string[] = [];
    const r = new JournalReader({ file: join(dir, "missing.journal"), after: "s=0", journalctl: "journalctl", signal: ac.signal, backoff: { initialMs: 5, maxMs: 20 }, onProblem: (m) => problems.push(m) });
    const c = collect(r);
    await c.until(() => (problems.length >= 3 ? true : (setTimeout(c.poke, 10), false)), "three restarts");
    ac.abort();
    await c.done;
    expect(problems[0]).toMatch(/journalctl exited with 1.*restarting in 5 ms/);
    expect(problems[1]).toContain("restarting in 10 ms");
    expect(r.restarts).toBeGreaterThanOrEqual(2);
  });
});

describe("parseJournalLine", () => {
  test("string and byte-array MESSAGE, multi-valued fields, bad lines", () => {
    expect(parseJournalLine('{"__CURSOR":"c","__REALTIME_TIMESTAMP":"12","_TRANSPORT":"kernel","MESSAGE":[104,105]}')).toEqual({ cursor: "c", realtimeUs: 12n, transport: "kernel", message: "hi" });
    expect(parseJournalLine('{"__CURSOR":"c","__REALTIME_TIMESTAMP":"12","_TRANSPORT":["kernel","syslog"],"MESSAGE":["a","b"]}')).toEqual({ cursor: "c", realtimeUs: 12n, transport: undefined, message: undefined });
    expect(parseJournalLine('{"__CURSOR":"c","__REALTIME_TIMESTAMP":"x"}')).toContain("__REALTIME_TIMESTAMP");
    expect(parseJournalLine("{")).toContain("not JSON");
  });
});

describe("JournalReader without a usable journalctl", () => {
  test("a missing program is reported and retried until aborted (probe and follower)", async () => {
    for (const after of ["s=0", undefined]) {
      const ac = new AbortController();
      const problems: string[] = [];
      const onProblem = (m: string) => {
        problems.push(m);
        if (problems.length >= 2) ac.abort();
      };
      const r = new JournalReader({ journalctl: "/nonexistent/journalctl", after, signal: ac.signal, backoff: { initialMs: 1, maxMs: 2 }, onProblem });
      for await (const _ of r.events()) throw new Error("no events expected");
      expect(problems[0]).toMatch(after ? /could not be started.*ENOENT.*restarting in 1 ms/ : /cannot find the end of the journal.*ENOENT.*retrying in 1 ms/);
      expect(problems[1]).toContain("2 ms");
    }
  });
});
