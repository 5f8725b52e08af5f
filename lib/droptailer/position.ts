/**
 * The persisted position of the last SHIPPED drop event (SPEC §10), so that a
 * restart neither loses nor repeats events: `{ source: "kmsg", bootId, seq }`
 * for `/dev/kmsg`, `{ source: "journal", cursor }` for the journal.
 *
 * Stored as JSON in `<stateDir>/droptailer-position.json`, written with
 * {@link writeFileAtomic} (temp file, fsync, rename, directory fsync: a crash
 * leaves the old position or the new one). `seq` is a decimal string (it is a
 * u64 in the kernel). Reading validates with a valibot schema; a file that is
 * missing gives no position, one that is unreadable, too large, not JSON or
 * not of the schema gives no position AND a `problem` saying so: the caller
 * starts from the current end (nothing old is re-shipped) and logs it.
 *
 * @example
 * ```ts
 * import { readPosition, writePosition } from "./position.ts";
 * await writePosition("/var/lib/firewall-controller", { source: "kmsg", bootId: "0b6c…", seq: 1234n });
 * const { position, problem } = await readPosition("/var/lib/firewall-controller");
 * ```
 * @module
 */
import { constants } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import * as v from "valibot";
import { writeFileAtomic } from "../atomic-file.ts";
import { escapeText } from "../escape.ts";

export const POSITION_FILE = "droptailer-position.json";
/** A position file is a few hundred bytes; anything larger is not ours. */
export const MAX_POSITION_BYTES = 64 * 1024;

export type Position =
  | { readonly source: "kmsg"; readonly bootId: string; readonly seq: bigint }
  | { readonly source: "journal"; readonly cursor: string };

const BOOT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const PositionSchema = v.variant("source", [
  v.strictObject({
    version: v.literal(1),
    source: v.literal("kmsg"),
    bootId: v.pipe(v.string(), v.regex(BOOT_ID, "bootId must be a boot id (lowercase UUID)")),
    seq: v.pipe(v.string(), v.regex(/^(0|[1-9]\d{0,19})$/, "seq must be a decimal number")),
  }),
  v.strictObject({
    version: v.literal(1),
    source: v.literal("journal"),
    cursor: v.pipe(v.string(), v.minLength(1), v.maxLength(4096)),
  }),
]);

/** Path of the position file in `stateDir`. */
export const positionPath = (stateDir: string): string => join(stateDir, POSITION_FILE);

/** The JSON text written for `p` (one line plus newline). */
export function formatPosition(p: Position): string {
  const body = p.source === "kmsg" ? { version: 1, source: p.source, bootId: p.bootId, seq: p.seq.toString() } : { version: 1, source: p.source, cursor: p.cursor };
  return `${JSON.stringify(body)}\n`;
}

/** Parses the text of a position file; a string is the problem. */
export function parsePosition(text: string): Position | string {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return `not JSON (${e instanceof Error ? e.message : String(e)})`;
  }
  const r = v.safeParse(PositionSchema, json);
  if (!r.success) return r.issues.map((i) => `${v.getDotPath(i) ?? "(root)"}: ${i.message}`).join("; ");
  const o = r.output;
  if (o.source === "kmsg") {
    const seq = BigInt(o.seq);
    if (seq > 0xffff_ffff_ffff_ffffn) return "seq: larger than a u64";
    return { source: "kmsg", bootId: o.bootId, seq };
  }
  return { source: "journal", cursor: o.cursor };
}

export interface ReadPosition {
  /** undefined: start at the current end of the log. */
  readonly position?: Position;
  /** Set when a file was there but could not be used (say so in a warn line). */
  readonly problem?: string;
}

/** Reads the stored position; never throws. */
export async function readPosition(stateDir: string): Promise<ReadPosition> {
  const path = positionPath(stateDir);
  const shown = escapeText(path, { max: 4096 });
  const unusable = (why: string): ReadPosition => ({
    problem: `the drop log position ${shown} is unusable (${escapeText(why, { max: 512 })}); starting from the current end of the kernel log, drops logged while the controller was down are not shipped`,
  });
  let fh;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | (constants.O_NONBLOCK ?? 0));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return {};
    return unusable(code ?? String(e));
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) return unusable("not a regular file");
    const buf = Buffer.alloc(MAX_POSITION_BYTES + 1);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, null);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n > MAX_POSITION_BYTES) return unusable(`larger than ${MAX_POSITION_BYTES} bytes`);
    }
    const p = parsePosition(buf.subarray(0, n).toString("utf8"));
    return typeof p === "string" ? unusable(p) : { position: p };
  } catch (e) {
    return unusable((e as NodeJS.ErrnoException).code ?? String(e));
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/** Stores `p` atomically; returns whether the file changed. Throws `ruleset_file_failed` (from writeFileAtomic) on failure. */
export function writePosition(stateDir: string, p: Position): Promise<boolean> {
  return writeFileAtomic(positionPath(stateDir), formatPosition(p));
}
