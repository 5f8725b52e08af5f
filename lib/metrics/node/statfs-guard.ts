/**
 * `statfs` that never blocks a scrape: a hung NFS or FUSE mount makes statfs
 * wait forever. Each call is raced against a timeout; a mount that timed out
 * is "stuck" and is not asked again until its pending call returns (as
 * node_exporter's stuckMounts), so one hung mount costs one timeout once and
 * holds at most one thread. At most {@link MAX_STUCK} calls may hang at a
 * time, because each holds a libuv thread-pool thread (4 by default) that file
 * reads need too; beyond that every not-yet-stated mount reports an error.
 * An error is reported as node_exporter does: `node_filesystem_device_error` 1.
 *
 * @example
 * ```ts
 * import { StatfsGuard } from "./statfs-guard.ts";
 * const g = new StatfsGuard({ timeoutMs: 50, statfs: () => new Promise(() => {}) });
 * console.log(await g.stat("/mnt/nfs", "/mnt/nfs")); // undefined (timed out: device error)
 * console.log(g.isStuck("/mnt/nfs")); // true
 * ```
 * @module
 */
import { statfs as nodeStatfs } from "node:fs";

/** The numbers of statfs(2) we use; node:fs `StatFs` in Bun, Node and Deno has them. */
export interface StatfsResult {
  readonly bsize: number;
  readonly blocks: number;
  readonly bfree: number;
  readonly bavail: number;
}

export type StatfsFunction = (path: string) => Promise<StatfsResult>;

/** Sizes in bytes as node_exporter computes them (blocks × f_bsize). */
export interface FilesystemSizes {
  readonly size: number;
  readonly free: number;
  readonly avail: number;
}

/** node_exporter's `--collector.filesystem.mount-timeout` default. */
export const DEFAULT_STATFS_TIMEOUT_MS = 5_000;

/** Hung statfs calls allowed at once; leaves the rest of the 4-thread pool to everything else. */
export const MAX_STUCK = 2;

/** The real statfs, through the callback API: available alike in Bun, Node and Deno. */
export const realStatfs: StatfsFunction = (path) =>
  new Promise((resolve, reject) => nodeStatfs(path, (err, s) => (err ? reject(err) : resolve(s))));

export class StatfsGuard {
  readonly #statfs: StatfsFunction;
  readonly #timeoutMs: number;
  /** Mount points whose statfs timed out and has not returned yet. */
  readonly #stuck = new Set<string>();

  constructor(options: { statfs?: StatfsFunction; timeoutMs?: number } = {}) {
    this.#statfs = options.statfs ?? realStatfs;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_STATFS_TIMEOUT_MS;
  }

  isStuck(mountPoint: string): boolean {
    return this.#stuck.has(mountPoint);
  }

  /** Sizes of the filesystem at `path` (mounted at `mountPoint`), or undefined for a device error. Never rejects. */
  async stat(mountPoint: string, path: string): Promise<FilesystemSizes | undefined> {
    if (this.#stuck.has(mountPoint) || this.#stuck.size >= MAX_STUCK) return undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let timedOut = false;
    const call = this.#statfs(path).finally(() => {
      // Returned after all: ask it again on the next scrape.
      if (timedOut) this.#stuck.delete(mountPoint);
    });
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => {
        timedOut = true;
        this.#stuck.add(mountPoint);
        resolve(undefined);
      }, this.#timeoutMs);
    });
    try {
      const s = await Promise.race([call, timeout]);
      if (s === undefined) return undefined;
      return { size: s.blocks * s.bsize, free: s.bfree * s.bsize, avail: s.bavail * s.bsize };
    } catch {
      return undefined; // EACCES, ENOENT (unmounted meanwhile), EIO: node_exporter's device error too
    } finally {
      clearTimeout(timer);
      call.catch(() => {}); // a late rejection after a timeout is expected, not unhandled
    }
  }
}
