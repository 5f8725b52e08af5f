/**
 * Writes a file atomically (temp file in the same directory, fsync, rename),
 * so a reader (the OS at boot) never sees a half-written ruleset.
 *
 * @example
 * ```ts
 * import { writeFileAtomic } from "./atomic-file.ts";
 * await writeFileAtomic("/tmp/example.v4", "table inet firewall {\n}\n");
 * ```
 * @module
 */
import { mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/** Writes `content` to `path` unless it already holds exactly that; returns whether it wrote. */
export async function writeFileAtomic(path: string, content: string): Promise<boolean> {
  const current = await readFile(path, "utf8").catch(() => undefined);
  if (current === content) return false;
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
  try {
    const fh = await open(tmp, "w", 0o644);
    try {
      await fh.writeFile(content);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  return true;
}
