/**
 * Writes a file atomically, so that a reader (the OS at boot, loading the
 * ruleset) sees the old file or the new one, never half of one (SPEC §4.7):
 * a temp file in the same directory, created with `O_EXCL|O_NOFOLLOW` (it
 * cannot be a file or link someone put there), written, fsynced, renamed over
 * the target, then the directory fsynced so the rename survives a power cut.
 *
 * Refused, each with what, where and what to do:
 * - a target that is a symbolic link: the rename would replace the link with
 *   a file, and whoever made it expects the file it points to to change; and
 *   a link is how a write is steered where it was never meant to go;
 * - a target that is not a regular file (a directory, FIFO, device, socket);
 * - a parent that is not a directory.
 *
 * A parent directory that is itself a symbolic link is followed. It is chosen
 * by the operator (`--ruleset-dir`, `--ruleset-file`), never by cluster input
 * (a Firewall's `ipv4rulefile` can only name a plain file directly in
 * `--ruleset-dir`, see `lib/api/firewall.ts`), and firewall images with a
 * read-only `/etc` commonly link `/etc/nftables` to persistent storage.
 *
 * @example
 * ```ts
 * import { writeFileAtomic } from "./atomic-file.ts";
 * await writeFileAtomic("/tmp/example.v4", "table inet firewall {\n}\n"); // true: written
 * await writeFileAtomic("/tmp/example.v4", "table inet firewall {\n}\n"); // false: already so
 * ```
 * @module
 */
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { lstat, mkdir, open, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { FirewallError } from "./errors.ts";
import { escapeText } from "./escape.ts";

/** Mode of a new file; an existing file keeps its own. */
export const DEFAULT_FILE_MODE = 0o644;

const PATH_MAX = 4096;

const code = (e: unknown): string | undefined => (e as NodeJS.ErrnoException | undefined)?.code;

const reason = (e: unknown): string => escapeText(code(e) ?? (e instanceof Error ? e.message : String(e)));

const kindOf = (s: { isDirectory(): boolean; isFIFO(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isSocket(): boolean }): string =>
  s.isDirectory() ? "a directory" : s.isFIFO() ? "a FIFO" : s.isCharacterDevice() ? "a character device" : s.isBlockDevice() ? "a block device" : s.isSocket() ? "a socket" : "not a regular file";

const failed = (message: string, cause?: unknown) => new FirewallError("ruleset_file_failed", message, cause === undefined ? undefined : { cause });

/** Whether the regular file at `path` holds exactly `content`; never blocks, never follows a link. */
async function holds(path: string, content: Buffer): Promise<boolean> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | (constants.O_NONBLOCK ?? 0)).catch(() => undefined);
  if (!fh) return false;
  try {
    const s = await fh.stat();
    if (!s.isFile() || s.size !== content.length) return false;
    const buf = Buffer.alloc(content.length + 1);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, null);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n > content.length) return false;
    }
    return n === content.length && buf.subarray(0, n).equals(content);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

export interface WriteOptions {
  /**
   * Replace an existing file only when it starts with this text (our own
   * header): a path chosen by cluster input must never clobber a file someone
   * else wrote into the same directory, such as the OS's base ruleset.
   */
  readonly replaceOnlyIfStartsWith?: string;
}

/** The first `n` bytes of the regular file at `path`. */
async function head(path: string, n: number): Promise<Buffer> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | (constants.O_NONBLOCK ?? 0));
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/**
 * Writes `content` to `path` unless it already holds exactly that; returns
 * whether it wrote. Errors are `ruleset_file_failed` and say what, where and
 * what to do; an error before the rename leaves the target as it was and no
 * temp file behind.
 */
export async function writeFileAtomic(path: string, content: string, options: WriteOptions = {}): Promise<boolean> {
  const shown = escapeText(path, { max: PATH_MAX });
  const dir = dirname(path);
  const shownDir = escapeText(dir, { max: PATH_MAX });
  const data = Buffer.from(content, "utf8");

  const target = await lstat(path).catch((e) => {
    if (code(e) === "ENOENT") return undefined;
    throw failed(`cannot look at ${shown} (${reason(e)}); check that its directory exists and is readable`, e);
  });
  if (target?.isSymbolicLink()) {
    throw failed(`${shown} is a symbolic link; the ruleset file is written only as a regular file: remove the link, or point the ruleset file where the link points`);
  }
  if (target && !target.isFile()) {
    throw failed(`${shown} is ${kindOf(target)}, not a regular file; remove it or choose another ruleset file`);
  }
  if (target && (await holds(path, data))) return false;
  const mark = options.replaceOnlyIfStartsWith;
  if (target && mark !== undefined) {
    const first = await head(path, Buffer.byteLength(mark)).catch((e) => {
      throw failed(`cannot read ${shown} (${reason(e)})`, e);
    });
    if (!first.equals(Buffer.from(mark))) {
      throw failed(`${shown} exists and was not written by firewall-controller (it does not start with ${JSON.stringify(mark)}); it is left alone: choose another spec.ipv4rulefile, or remove the file if it is stale`);
    }
  }

  await mkdir(dir, { recursive: true, mode: 0o755 }).catch((e) => {
    throw failed(`cannot create the directory ${shownDir} for ${shown} (${reason(e)})`, e);
  });
  const parent = await stat(dir).catch((e) => {
    throw failed(`cannot look at the directory ${shownDir} (${reason(e)})`, e);
  });
  if (!parent.isDirectory()) throw failed(`${shownDir} is ${kindOf(parent)}, not a directory; ${shown} cannot be written there`);

  // A fresh random name, created exclusively and never through a link: nothing anyone put in the
  // directory can be written to or taken over.
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  const mode = target ? target.mode & 0o7777 : DEFAULT_FILE_MODE;
  try {
    const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
    try {
      // Explicitly: the process umask must not decide who may read the ruleset.
      await fh.chmod(mode);
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw failed(`cannot write ${shown} (${reason(e)}); check the space and permissions of ${shownDir}`, e);
  }
  // The rename is durable only once the directory is on disk. Some file systems cannot fsync a
  // directory (EINVAL); the file is written either way.
  const d = await open(dir, constants.O_RDONLY | (constants.O_DIRECTORY ?? 0)).catch(() => undefined);
  if (d) {
    try {
      await d.sync().catch((e) => {
        if (code(e) !== "EINVAL" && code(e) !== "ENOTSUP") throw failed(`${shown} was written, but syncing the directory ${shownDir} failed (${reason(e)})`, e);
      });
    } finally {
      await d.close().catch(() => undefined);
    }
  }
  return true;
}

/**
 * Removes a ruleset file this program wrote: a regular file is unlinked (and
 * the removal made durable); a missing one is fine; anything else (a symlink,
 * a directory, a device) is left alone and reported, as for writes.
 *
 * @example
 * ```ts
 * import { removeFileIfRegular } from "./atomic-file.ts";
 * await removeFileIfRegular("/tmp/fct-example-does-not-exist.v4"); // nothing to do
 * ```
 */
export async function removeFileIfRegular(path: string): Promise<void> {
  const shown = escapeText(path, { max: 4096 });
  const st = await lstat(path).catch((e) => {
    if (code(e) === "ENOENT") return undefined;
    throw failed(`cannot look at ${shown} (${reason(e)})`, e);
  });
  if (st === undefined) return;
  if (!st.isFile()) throw failed(`${shown} is not a regular file; it is left alone, remove it by hand if it is ours`);
  await rm(path).catch((e) => {
    throw failed(`cannot remove ${shown} (${reason(e)})`, e);
  });
  const d = await open(dirname(path), constants.O_RDONLY | (constants.O_DIRECTORY ?? 0)).catch(() => undefined);
  await d?.sync().catch(() => undefined);
  await d?.close().catch(() => undefined);
}
