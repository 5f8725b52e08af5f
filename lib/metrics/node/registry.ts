/**
 * The node_exporter-compatible registry of SPEC §7 (served on :9100): every
 * family with node_exporter 1.5's name, type, HELP text and label names,
 * filled at scrape time from /proc, /sys and statfs. A source that cannot be
 * read (no conntrack module, a missing file) gives its families no series
 * rather than failing the scrape, as node_exporter drops only that collector.
 *
 * @example
 * ```ts
 * import { nodeRegistry } from "./registry.ts";
 * const text = await nodeRegistry().metrics();
 * console.log(text.includes("# TYPE node_cpu_seconds_total counter")); // true
 * ```
 * @module
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Counter, Gauge, Registry } from "prom-client";
import { CpuTracker } from "./cpu-tracker.ts";
import { shareInFlight } from "./in-flight.ts";
import { parseLoadavg } from "./loadavg.ts";
import { MEMINFO_FIELDS, parseMeminfo } from "./meminfo.ts";
import { parseMounts, reportedMounts, type Mount } from "./mounts.ts";
import { NETDEV_STATS, parseNetDev } from "./netdev.ts";
import { CPU_MODES, parseProcStat } from "./proc-stat.ts";
import { StatfsGuard, type FilesystemSizes, type StatfsFunction } from "./statfs-guard.ts";
import { readUname } from "./uname.ts";

export interface NodeRegistryOptions {
  /** Where procfs is mounted; default `/proc` (a fixture directory in tests). */
  readonly procPath?: string;
  /** Where sysfs is mounted; default `/sys`. Reserved: no family of SPEC §7 needs it yet. */
  readonly sysPath?: string;
  /** The root the mount table's paths are relative to (node_exporter's `--path.rootfs`); default `/`. */
  readonly rootPath?: string;
  /** Per-mount statfs timeout; default 5 s (node_exporter's mount-timeout). */
  readonly statfsTimeoutMs?: number;
  /** Replaces statfs(2) (tests: a hung mount). */
  readonly statfs?: StatfsFunction;
  /** Clock for `node_time_seconds`, in ms since the epoch; default `Date.now`. */
  readonly now?: () => number;
  /** Told about a source that could not be read (its families then have no series). */
  readonly onError?: (source: string, error: unknown) => void;
}

const FS_LABELS = ["device", "fstype", "mountpoint"] as const;

interface FilesystemReport {
  readonly mount: Mount;
  readonly sizes: FilesystemSizes | undefined;
}

/** A fresh registry; register it with nothing else (its names are node_exporter's, `node_` prefixed). */
export function nodeRegistry(options: NodeRegistryOptions = {}): Registry {
  const procPath = options.procPath ?? "/proc";
  const rootPath = options.rootPath ?? "/";
  const now = options.now ?? Date.now;
  const registers: Registry[] = [new Registry()];
  const registry = registers[0]!;
  const proc = (name: string) => readFile(join(procPath, name), "utf8");

  /** Runs a read; on failure tells onError and yields undefined, so the family is left empty. */
  const attempt = async <T>(source: string, read: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await read();
    } catch (e) {
      options.onError?.(source, e);
      return undefined;
    }
  };

  const cpuTracker = new CpuTracker();
  const procStat = shareInFlight(() => attempt("stat", async () => parseProcStat(await proc("stat"))));
  const meminfo = shareInFlight(() => attempt("meminfo", async () => parseMeminfo(await proc("meminfo"))));
  const loadavg = shareInFlight(() => attempt("loadavg", async () => parseLoadavg(await proc("loadavg"))));
  const netdev = shareInFlight(() => attempt("net/dev", async () => parseNetDev(await proc("net/dev"))));
  const guard = new StatfsGuard({ statfs: options.statfs, timeoutMs: options.statfsTimeoutMs });
  const filesystems = shareInFlight(() =>
    attempt("mounts", async (): Promise<FilesystemReport[]> => {
      // PID 1's table, as node_exporter: ours may be a private mount namespace; /proc/mounts when hidepid hides PID 1.
      const text = await proc("1/mounts").catch(() => proc("mounts"));
      const out: FilesystemReport[] = [];
      // One by one, as node_exporter: a scrape costs at most MAX_STUCK timeouts (see StatfsGuard), not one per mount.
      for (const m of reportedMounts(parseMounts(text).map((x) => ({ ...x, mountPoint: stripRoot(rootPath, x.mountPoint) })).filter((x) => x.mountPoint !== undefined) as Mount[])) {
        out.push({ mount: m, sizes: await guard.stat(m.mountPoint, join(rootPath, m.mountPoint)) });
      }
      return out;
    })
  );

  const counter = (name: string, help: string, labelNames: readonly string[], fill: (c: Counter) => Promise<void>) =>
    new Counter({ name, help, labelNames, registers, async collect() { this.reset(); await fill(this); } });
  const gauge = (name: string, help: string, labelNames: readonly string[], fill: (g: Gauge) => Promise<void>) =>
    new Gauge({
      name, help, labelNames, registers,
      async collect() {
        this.reset();
        // An unlabelled prom-client gauge always holds a 0 after reset; dropped so an unread source shows no sample, not a false 0.
        if (labelNames.length === 0) this.remove();
        await fill(this);
      },
    });

  counter("node_cpu_seconds_total", "Seconds the CPUs spent in each mode.", ["cpu", "mode"], async (c) => {
    const s = await procStat();
    if (s === undefined) return;
    for (const { cpu, times } of cpuTracker.update(s.cpus)) for (const mode of CPU_MODES) c.inc({ cpu, mode }, times[mode]);
  });

  (["1m", "5m", "15m"] as const).forEach((period, i) =>
    gauge(`node_load${period.slice(0, -1)}`, `${period} load average.`, [], async (g) => {
      const l = await loadavg();
      if (l !== undefined) g.set(l[i]!);
    })
  );

  for (const field of MEMINFO_FIELDS) {
    gauge(`node_memory_${field}_bytes`, `Memory information field ${field}_bytes.`, [], async (g) => {
      const v = (await meminfo())?.get(field);
      if (v !== undefined) g.set(v);
    });
  }

  const fsFamilies: [string, string, (s: FilesystemSizes) => number][] = [
    ["size", "Filesystem size in bytes.", (s) => s.size],
    ["free", "Filesystem free space in bytes.", (s) => s.free],
    ["avail", "Filesystem space available to non-root users in bytes.", (s) => s.avail],
  ];
  for (const [what, help, value] of fsFamilies) {
    gauge(`node_filesystem_${what}_bytes`, help, FS_LABELS, async (g) => {
      for (const { mount, sizes } of (await filesystems()) ?? []) if (sizes !== undefined) g.set(fsLabels(mount), value(sizes));
    });
  }
  gauge("node_filesystem_device_error", "Whether an error occurred while getting statistics for the given device.", FS_LABELS, async (g) => {
    for (const { mount, sizes } of (await filesystems()) ?? []) g.set(fsLabels(mount), sizes === undefined ? 1 : 0);
  });

  for (const direction of ["receive", "transmit"] as const) {
    for (const stat of NETDEV_STATS) {
      counter(`node_network_${direction}_${stat}_total`, `Network device statistic ${direction}_${stat}.`, ["device"], async (c) => {
        for (const d of (await netdev()) ?? []) c.inc({ device: d.device }, d[direction][stat]);
      });
    }
  }

  gauge("node_boot_time_seconds", "Node boot time, in unixtime.", [], async (g) => {
    const b = (await procStat())?.bootTime;
    if (b !== undefined) g.set(b);
  });

  gauge("node_time_seconds", "System time in seconds since epoch (1970).", [], async (g) => {
    g.set(now() / 1000);
  });

  gauge("node_uname_info", "Labeled system information as provided by the uname system call.", ["domainname", "machine", "nodename", "release", "sysname", "version"], async (g) => {
    const u = await attempt("uname", () => readUname(procPath));
    if (u !== undefined) g.set({ ...u }, 1);
  });

  const conntrack: [string, string, string][] = [
    ["node_nf_conntrack_entries", "Number of currently allocated flow entries for connection tracking.", "nf_conntrack_count"],
    ["node_nf_conntrack_entries_limit", "Maximum size of connection tracking table.", "nf_conntrack_max"],
  ];
  for (const [name, help, file] of conntrack) {
    gauge(name, help, [], async (g) => {
      // Absent while the nf_conntrack module is not loaded; node_exporter then reports nothing either.
      const v = await attempt(file, async () => Number((await proc(`sys/net/netfilter/${file}`)).trim()));
      if (v !== undefined && Number.isFinite(v)) g.set(v);
    });
  }

  return registry;
}

function fsLabels(m: Mount): Record<(typeof FS_LABELS)[number], string> {
  return { device: m.device, fstype: m.fsType, mountpoint: m.mountPoint };
}

/** node_exporter's rootfsStripPrefix: mount points as seen from `rootPath`; undefined for one outside it. */
function stripRoot(rootPath: string, mountPoint: string): string | undefined {
  if (rootPath === "/" || rootPath === "") return mountPoint;
  const root = rootPath.replace(/\/+$/, "");
  if (mountPoint === root) return "/";
  return mountPoint.startsWith(`${root}/`) ? mountPoint.slice(root.length) : undefined;
}
