import { afterAll, describe, expect, test } from "bun:test";
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeFileAtomic } from "../lib/atomic-file.ts";
import { expectFirewallError } from "./firewall-error.ts";

const temp = mkdtempSync(join(tmpdir(), "fct-atomic-"));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

let n = 0;
const fresh = (): string => {
  const d = join(temp, `case-${n++}`);
  mkdirSync(d);
  return d;
};

const RULESET = "table inet firewall {\n}\n";

describe("writeFileAtomic: writes", () => {
  test("a new file gets the content and mode 0644, and no temp file is left", async () => {
    const d = fresh();
    const f = join(d, "firewall-controller.v4");
    expect(await writeFileAtomic(f, RULESET)).toBe(true);
    expect(readFileSync(f, "utf8")).toBe(RULESET);
    expect(statSync(f).mode & 0o7777).toBe(0o644);
    expect(readdirSync(d)).toEqual(["firewall-controller.v4"]);
  });

  test("an existing file is replaced (a new inode: readers see old or new, never half) and keeps its mode", async () => {
    const d = fresh();
    const f = join(d, "rules.v4");
    writeFileSync(f, "old\n");
    chmodSync(f, 0o600);
    const before = statSync(f).ino;
    expect(await writeFileAtomic(f, RULESET)).toBe(true);
    expect(readFileSync(f, "utf8")).toBe(RULESET);
    expect(statSync(f).ino).not.toBe(before);
    expect(statSync(f).mode & 0o7777).toBe(0o600);
    expect(readdirSync(d)).toEqual(["rules.v4"]);
  });

  test("a file that already holds the content is not written", async () => {
    const d = fresh();
    const f = join(d, "rules.v4");
    writeFileSync(f, RULESET);
    const before = statSync(f).ino;
    expect(await writeFileAtomic(f, RULESET)).toBe(false);
    expect(statSync(f).ino).toBe(before);
  });

  test("a missing directory is created", async () => {
    const f = join(fresh(), "etc", "nftables", "rules.v4");
    expect(await writeFileAtomic(f, RULESET)).toBe(true);
    expect(readFileSync(f, "utf8")).toBe(RULESET);
  });

  test("a directory that is a symlink is followed (the operator's layout, never cluster input)", async () => {
    const d = fresh();
    mkdirSync(join(d, "persistent"));
    symlinkSync("persistent", join(d, "nftables"));
    expect(await writeFileAtomic(join(d, "nftables", "rules.v4"), RULESET)).toBe(true);
    expect(readFileSync(join(d, "persistent", "rules.v4"), "utf8")).toBe(RULESET);
  });
});

describe("writeFileAtomic: refuses what is not a regular file, saying what, where and what to do", () => {
  test("a symlink target is refused and what it points to is untouched", async () => {
    const d = fresh();
    writeFileSync(join(d, "passwd"), "root:x:0:0\n");
    symlinkSync(join(d, "passwd"), join(d, "rules.v4"));
    const e = await expectFirewallError(writeFileAtomic(join(d, "rules.v4"), RULESET));
    expect(e.code).toBe("ruleset_file_failed");
    expect(e.message).toBe(`${join(d, "rules.v4")} is a symbolic link; the ruleset file is written only as a regular file: remove the link, or point the ruleset file where the link points`);
    expect(readFileSync(join(d, "passwd"), "utf8")).toBe("root:x:0:0\n");
    expect(readdirSync(d).sort()).toEqual(["passwd", "rules.v4"]);
  });

  test("a dangling symlink target is refused too", async () => {
    const d = fresh();
    symlinkSync(join(d, "nowhere"), join(d, "rules.v4"));
    const e = await expectFirewallError(writeFileAtomic(join(d, "rules.v4"), RULESET));
    expect(e.message).toStartWith(`${join(d, "rules.v4")} is a symbolic link`);
    expect(readdirSync(d)).toEqual(["rules.v4"]);
  });

  // Never opened: reading a FIFO without a writer would block this test until its timeout.
  test("a FIFO target is refused without being opened", async () => {
    const d = fresh();
    execFileSync("mkfifo", [join(d, "rules.v4")]);
    const e = await expectFirewallError(writeFileAtomic(join(d, "rules.v4"), RULESET));
    expect(e.message).toBe(`${join(d, "rules.v4")} is a FIFO, not a regular file; remove it or choose another ruleset file`);
    expect(readdirSync(d)).toEqual(["rules.v4"]);
  });

  test("a directory target is refused", async () => {
    const d = fresh();
    mkdirSync(join(d, "rules.v4"));
    const e = await expectFirewallError(writeFileAtomic(join(d, "rules.v4"), RULESET));
    expect(e.message).toBe(`${join(d, "rules.v4")} is a directory, not a regular file; remove it or choose another ruleset file`);
  });

  test("a character device target is refused", async () => {
    const e = await expectFirewallError(writeFileAtomic("/dev/null", RULESET));
    expect(e.message).toBe("/dev/null is a character device, not a regular file; remove it or choose another ruleset file");
  });

  test("a parent that is a file is refused", async () => {
    const d = fresh();
    writeFileSync(join(d, "etc"), "");
    const e = await expectFirewallError(writeFileAtomic(join(d, "etc", "rules.v4"), RULESET));
    expect(e.code).toBe("ruleset_file_failed");
    expect(e.message).toStartWith(`cannot look at ${join(d, "etc", "rules.v4")} (ENOTDIR)`);
  });

  test("a path with control characters is shown escaped", async () => {
    const d = fresh();
    mkdirSync(join(d, "a\nb\u202e"));
    const e = await expectFirewallError(writeFileAtomic(join(d, "a\nb\u202e"), RULESET));
    expect(e.message).toBe(`${d}/a\\nb\\u202e is a directory, not a regular file; remove it or choose another ruleset file`);
  });
});
