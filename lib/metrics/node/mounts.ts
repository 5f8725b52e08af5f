/**
 * Which filesystems `node_filesystem_*` reports: the mount table parsed as
 * node_exporter parses it (`\040` and `\011` unescaped in the mount point
 * only), filtered with node_exporter 1.5's upstream default exclusions.
 *
 * @example
 * ```ts
 * import { parseMounts, reportedMounts } from "./mounts.ts";
 * const m = parseMounts("/dev/vda / ext4 rw 0 0\nproc /proc proc rw 0 0\n/dev/vdb /my\\040data xfs ro 0 0\n");
 * console.log(reportedMounts(m).map((x) => x.mountPoint)); // ["/", "/my data"]
 * ```
 * @module
 */

/** node_exporter 1.5's `defMountPointsExcluded` (Debian's package ships a different default; upstream's is the contract). */
export const MOUNT_POINTS_EXCLUDED = /^\/(dev|proc|run\/credentials\/.+|sys|var\/lib\/docker\/.+|var\/lib\/containers\/storage\/.+)($|\/)/;

/** node_exporter 1.5's `defFSTypesExcluded`. */
export const FS_TYPES_EXCLUDED =
  /^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$/;

/** Filesystems beyond this are not reported: a bound on statfs calls per scrape (a host with thousands of container mounts). */
export const MAX_MOUNTS = 1000;

export interface Mount {
  readonly device: string;
  readonly mountPoint: string;
  readonly fsType: string;
  readonly options: string;
}

/** Lines with fewer than four fields are skipped (node_exporter fails the whole collector on one; a partial answer is more useful). */
export function parseMounts(text: string): Mount[] {
  const out: Mount[] = [];
  for (const line of text.split("\n")) {
    const p = line.trim().split(/\s+/);
    if (p.length < 4) continue;
    out.push({ device: p[0]!, mountPoint: p[1]!.replaceAll("\\040", " ").replaceAll("\\011", "\t"), fsType: p[2]!, options: p[3]! });
  }
  return out;
}

/**
 * The mounts to report, at most {@link MAX_MOUNTS}, once per label set
 * (device, mountpoint, fstype): a mount point mounted over twice would
 * otherwise give duplicate series, which Prometheus rejects.
 */
export function reportedMounts(mounts: readonly Mount[]): Mount[] {
  const seen = new Set<string>();
  const out: Mount[] = [];
  for (const m of mounts) {
    if (MOUNT_POINTS_EXCLUDED.test(m.mountPoint) || FS_TYPES_EXCLUDED.test(m.fsType)) continue;
    const key = JSON.stringify([m.device, m.mountPoint, m.fsType]);
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(m);
    if (out.length >= MAX_MOUNTS) break;
  }
  return out;
}
