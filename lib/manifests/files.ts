/**
 * Finding and reading manifest files without ever stalling (SPEC §8: regular
 * files only, with a size cap).
 *
 * - Only regular files are opened. A FIFO would block the read forever, a
 *   character device like `/dev/zero` never ends, and opening some devices has
 *   effects of its own; each is refused with its name, after `stat` and before
 *   any `open`. The open itself is non-blocking and checked again with `fstat`,
 *   so a FIFO swapped in between cannot hang it either.
 * - Size caps: {@link MAX_FILE_BYTES} per file, {@link MAX_TOTAL_BYTES} for
 *   all together. The largest real input (10,000 policies) is a few MB; parsing
 *   runs at about 1 MB/s at worst (one short key per line), so the caps also
 *   bound the time a run can spend on hostile input.
 * - File names are taken as bytes from the directory: a name that is not UTF-8
 *   is read like any other and shown escaped (`bad\xff.yaml`).
 * - Symlinks are followed (a ConfigMap volume is all symlinks); hidden entries
 *   are skipped (a ConfigMap volume's `..data` would give every object twice);
 *   a directory reached twice (a symlink loop) is read once.
 *
 * @example
 * ```ts
 * import { listManifestFiles, readManifestFile, ReadBudget } from "./files.ts";
 * const budget = new ReadBudget();
 * for (const f of await listManifestFiles("examples/")) console.log(f.name, (await readManifestFile(f, budget)).length);
 * ```
 * @module
 */
import { constants, type Stats } from "node:fs";
import { open, readdir, realpath, stat } from "node:fs/promises";
import { join } from "node:path";
import { FirewallError } from "../errors.ts";
import { escapeBytes, escapeText, groupDigits } from "../escape.ts";
import { FILE_NAME_MAX } from "./parse.ts";

/** Largest manifest file read: 16 MiB. */
export const MAX_FILE_BYTES = 16 * 1024 * 1024;
/** Largest total of all manifest files of one load: 64 MiB. */
export const MAX_TOTAL_BYTES = 64 * 1024 * 1024;

/** Caps of one load; tests pass smaller ones. */
export interface ReadLimits {
  readonly maxFileBytes?: number;
  readonly maxTotalBytes?: number;
}

/** What is left of the total cap during one load. */
export class ReadBudget {
  readonly maxFileBytes: number;
  readonly maxTotalBytes: number;
  used = 0;
  constructor(limits?: ReadLimits) {
    this.maxFileBytes = limits?.maxFileBytes ?? MAX_FILE_BYTES;
    this.maxTotalBytes = limits?.maxTotalBytes ?? MAX_TOTAL_BYTES;
  }
}

/** One file to read: the path to open (bytes, as the directory gave it) and its name for messages (escaped). */
export interface ManifestFile {
  readonly path: string | Buffer;
  readonly name: string;
}

const EXTENSIONS = /\.(ya?ml|json)$/i;

const fail = (message: string, cause?: unknown) => new FirewallError("input_unreadable", message, cause === undefined ? undefined : { cause });

const unreadable = (name: string, e: unknown) => fail(`${name}: cannot read (${escapeText((e as NodeJS.ErrnoException).code ?? String(e))})`, e);

const kindOf = (s: Stats): string =>
  s.isFIFO() ? "a FIFO" : s.isCharacterDevice() ? "a character device" : s.isBlockDevice() ? "a block device" : s.isSocket() ? "a socket" : s.isDirectory() ? "a directory" : "not a regular file";

const notRegular = (name: string, s: Stats) =>
  fail(`${name}: is ${kindOf(s)}, not a regular file; only regular files are read as manifests (remove it or point --manifests elsewhere)`);

const bytes = (n: number) => `${groupDigits(n)} bytes`;

const tooBig = (name: string, size: number, cap: number) =>
  fail(`${name}: ${bytes(size)} is more than the cap of ${bytes(cap)} per manifest file; split it`);

const overTotal = (name: string, used: number, cap: number) =>
  fail(`${name}: the manifests read so far and this file make ${bytes(used)}, more than the cap of ${bytes(cap)} for all manifest files together`);

// A path made of a directory's path and one entry's name, as bytes: the name may not be UTF-8.
const child = (dir: string | Buffer, entry: Buffer): Buffer => {
  const d = typeof dir === "string" ? Buffer.from(dir) : dir;
  return d.length > 0 && d[d.length - 1] === 0x2f ? Buffer.concat([d, entry]) : Buffer.concat([d, Buffer.from("/"), entry]);
};

/**
 * The manifest files under `path` (itself when it is a file), in sorted
 * order (by bytes). Refuses a non-regular file given or found by name.
 */
export async function listManifestFiles(path: string): Promise<ManifestFile[]> {
  const top = escapeText(path, { max: FILE_NAME_MAX });
  const s = await stat(path).catch((e) => {
    throw unreadable(top, e);
  });
  if (s.isFile()) return [{ path, name: top }];
  if (!s.isDirectory()) throw notRegular(top, s);
  const out: ManifestFile[] = [];
  const seen = new Set<string>();
  const walk = async (dir: string | Buffer, name: string): Promise<void> => {
    const real = await realpath(dir, { encoding: "buffer" }).catch((e) => {
      throw unreadable(name, e);
    });
    const key = real.toString("latin1");
    if (seen.has(key)) return;
    seen.add(key);
    const entries = await readdir(dir, { encoding: "buffer" }).catch((e) => {
      throw unreadable(name, e);
    });
    entries.sort(Buffer.compare);
    for (const entry of entries) {
      if (entry[0] === 0x2e) continue;
      const full = child(dir, entry);
      const fullName = join(name, escapeBytes(entry, { max: FILE_NAME_MAX }));
      const st = await stat(full).catch((e) => {
        throw unreadable(fullName, e);
      });
      // latin1 keeps one character per byte, enough to test an ASCII extension.
      const wanted = EXTENSIONS.test(entry.toString("latin1"));
      if (st.isDirectory()) await walk(full, fullName);
      else if (st.isFile() && wanted) out.push({ path: full, name: fullName });
      // Named like a manifest but a FIFO, device or socket: say so rather than skip a file the
      // operator meant us to read. Anything else not named like a manifest is not ours.
      else if (wanted) throw notRegular(fullName, st);
    }
  };
  await walk(path, top);
  return out;
}

// O_NONBLOCK: should a FIFO take the file's place after the stat, open returns at once instead of
// waiting for a writer. O_NOCTTY: a terminal put there must not become our controlling terminal.
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0);

const CHUNK = 64 * 1024;

/**
 * Reads one file as UTF-8 text within the caps, charging `budget`. Refuses a
 * file that is not regular (checked again on the open file), bigger than the
 * per-file cap, or past the total cap; a file that grows while being read is
 * cut at the cap and refused too.
 */
export async function readManifestFile(file: ManifestFile, budget: ReadBudget): Promise<string> {
  const fh = await open(file.path, OPEN_FLAGS).catch((e) => {
    throw unreadable(file.name, e);
  });
  try {
    const s = await fh.stat();
    if (!s.isFile()) throw notRegular(file.name, s);
    if (s.size > budget.maxFileBytes) throw tooBig(file.name, s.size, budget.maxFileBytes);
    if (budget.used + s.size > budget.maxTotalBytes) throw overTotal(file.name, budget.used + s.size, budget.maxTotalBytes);
    // st.size may be 0 (procfs) or stale: read in chunks, never more than the cap allows plus one byte.
    const limit = Math.min(budget.maxFileBytes, budget.maxTotalBytes - budget.used);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, limit + 1 - total));
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      chunks.push(bytesRead === buf.length ? buf : buf.subarray(0, bytesRead));
      total += bytesRead;
      if (total > limit) {
        throw total > budget.maxFileBytes ? tooBig(file.name, total, budget.maxFileBytes) : overTotal(file.name, budget.used + total, budget.maxTotalBytes);
      }
    }
    budget.used += total;
    return Buffer.concat(chunks, total).toString("utf8");
  } catch (e) {
    throw e instanceof FirewallError ? e : unreadable(file.name, e);
  } finally {
    await fh.close().catch(() => undefined);
  }
}
