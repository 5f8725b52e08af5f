/**
 * Real journal files for tests: entries in the journal export format
 * (https://systemd.io/JOURNAL_EXPORT_FORMATS/) turned into a journal file by
 * `systemd-journal-remote` (Debian package `systemd-journal-remote`).
 */
import { spawnSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

const REMOTE_CANDIDATES = ["/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote"];
export const BOOT = "0b6c3f0e11114222833344445555666a";

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
export const onPath = (tool: string) => (process.env.PATH ?? "").split(delimiter).some((d) => d !== "" && executable(join(d, tool)));
export const REMOTE = REMOTE_CANDIDATES.find(executable);

/** Skip loudly without the tools; under CI=true, fail instead (a skipped test would be a silent pass). */
export function needsJournalTools(): boolean {
  const missing = [...(REMOTE ? [] : ["systemd-journal-remote (apt-get install systemd-journal-remote)"]), ...(onPath("journalctl") ? [] : ["journalctl (package systemd)"])];
  if (missing.length === 0) return false;
  const reason = `journal tests need ${missing.join(", ")}`;
  if (process.env.CI === "true") throw new Error(`${reason}; CI=true, so this fails instead of skipping`);
  console.warn(`SKIPPING: ${reason}`);
  return true;
}

export interface Entry {
  readonly us: bigint;
  readonly transport: string;
  readonly message: string | Buffer;
  readonly extra?: Record<string, string>;
}

/** One entry in the export format; a Buffer field is written in the binary form (name, LF, u64 LE length, bytes, LF). */
function exportEntry(e: Entry, mono: bigint): Buffer {
  const parts: Buffer[] = [];
  const text = (k: string, val: string) => parts.push(Buffer.from(`${k}=${val}\n`, "utf8"));
  text("__REALTIME_TIMESTAMP", e.us.toString());
  text("__MONOTONIC_TIMESTAMP", mono.toString());
  text("_BOOT_ID", BOOT);
  text("_TRANSPORT", e.transport);
  text("PRIORITY", "4");
  for (const [k, val] of Object.entries(e.extra ?? {})) text(k, val);
  if (typeof e.message === "string" && !e.message.includes("\n")) text("MESSAGE", e.message);
  else {
    const bytes = Buffer.from(e.message);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(bytes.length));
    parts.push(Buffer.from("MESSAGE\n"), len, bytes, Buffer.from("\n"));
  }
  parts.push(Buffer.from("\n"));
  return Buffer.concat(parts);
}

let mono = 1_000_000n;
/** Appends entries to `file` (systemd-journal-remote appends to an existing file). */
export function writeJournal(file: string, entries: readonly Entry[]): void {
  const input = Buffer.concat(entries.map((e) => exportEntry(e, (mono += 1000n))));
  const r = spawnSync(REMOTE ?? "systemd-journal-remote", [`--output=${file}`, "--split-mode=none", "-"], { input });
  if (r.status !== 0) throw new Error(`systemd-journal-remote failed (${r.status}): ${r.stderr.toString()}`);
}
