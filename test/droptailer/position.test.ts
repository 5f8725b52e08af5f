import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { formatPosition, MAX_POSITION_BYTES, parsePosition, POSITION_FILE, readPosition, writePosition } from "../../lib/droptailer/position.ts";

const BOOT = "0b6c3f0e-1111-4222-8333-444455556666";
let root: string;
let n = 0;
const fresh = () => {
  const d = join(root, String(n++));
  mkdirSync(d);
  return d;
};
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "fct-pos-"));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("droptailer position", () => {
  test("missing file: no position, no problem", async () => {
    expect(await readPosition(fresh())).toEqual({});
  });
  test("round trip kmsg (u64 seq as a decimal string) and journal", async () => {
    const d = fresh();
    const big = 18_446_744_073_709_551_615n;
    expect(await writePosition(d, { source: "kmsg", bootId: BOOT, seq: big })).toBe(true);
    expect(readFileSync(join(d, POSITION_FILE), "utf8")).toBe(`{"version":1,"source":"kmsg","bootId":"${BOOT}","seq":"18446744073709551615"}\n`);
    expect(await readPosition(d)).toEqual({ position: { source: "kmsg", bootId: BOOT, seq: big } });
    expect(await writePosition(d, { source: "kmsg", bootId: BOOT, seq: big })).toBe(false); // unchanged
    await writePosition(d, { source: "journal", cursor: "s=abc;i=1f;b=def;m=12;t=5f;x=99" });
    expect((await readPosition(d)).position).toEqual({ source: "journal", cursor: "s=abc;i=1f;b=def;m=12;t=5f;x=99" });
  });
  const corrupt: Array<[string, string, string]> = [
    ["not JSON", '{"version":1,"sou', "not JSON"],
    ["half written (empty)", "", "not JSON"],
    ["wrong boot id", JSON.stringify({ version: 1, source: "kmsg", bootId: "../etc", seq: "1" }), "bootId"],
    ["negative seq", JSON.stringify({ version: 1, source: "kmsg", bootId: BOOT, seq: "-1" }), "seq"],
    ["seq as a number", JSON.stringify({ version: 1, source: "kmsg", bootId: BOOT, seq: 5 }), "seq"],
    ["seq over u64", JSON.stringify({ version: 1, source: "kmsg", bootId: BOOT, seq: "18446744073709551616" }), "u64"],
    ["unknown source", JSON.stringify({ version: 1, source: "syslog", seq: "1" }), "source"],
    ["extra key", JSON.stringify({ version: 1, source: "kmsg", bootId: BOOT, seq: "1", x: 1 }), "x"],
    ["future version", JSON.stringify({ version: 2, source: "kmsg", bootId: BOOT, seq: "1" }), "version"],
  ];
  for (const [name, text, says] of corrupt) {
    test(`corrupt (${name}): no position, a problem that says to start from the end`, async () => {
      const d = fresh();
      writeFileSync(join(d, POSITION_FILE), text);
      const r = await readPosition(d);
      expect(r.position).toBeUndefined();
      expect(r.problem).toContain("starting from the current end");
      expect(r.problem).toContain(says);
    });
  }
  test("too large, a directory, a symlink: unusable, never followed", async () => {
    const a = fresh();
    writeFileSync(join(a, POSITION_FILE), "x".repeat(MAX_POSITION_BYTES + 10));
    expect((await readPosition(a)).problem).toContain("larger than");
    const b = fresh();
    mkdirSync(join(b, POSITION_FILE));
    expect((await readPosition(b)).problem).toContain("not a regular file");
    const c = fresh();
    writeFileSync(join(c, "elsewhere"), formatPosition({ source: "kmsg", bootId: BOOT, seq: 1n }));
    symlinkSync(join(c, "elsewhere"), join(c, POSITION_FILE));
    expect((await readPosition(c)).problem).toContain("ELOOP");
    await expect(writePosition(c, { source: "kmsg", bootId: BOOT, seq: 2n })).rejects.toThrow("symbolic link");
  });
  test("parsePosition directly", () => {
    expect(parsePosition(formatPosition({ source: "kmsg", bootId: BOOT, seq: 0n }))).toEqual({ source: "kmsg", bootId: BOOT, seq: 0n });
    expect(typeof parsePosition("null")).toBe("string");
  });
});
