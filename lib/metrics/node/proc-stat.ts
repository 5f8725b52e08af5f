/**
 * Parsing `/proc/stat` the way node_exporter's cpu and stat collectors read it
 * (through procfs): per-CPU times in USER_HZ ticks turned into seconds, and
 * `btime`.
 *
 * @example
 * ```ts
 * import { parseProcStat } from "./proc-stat.ts";
 * const s = parseProcStat("cpu  1 0 0 0\ncpu0 250 0 100 900 0 0 0 0 0 0\nbtime 1700000000\n");
 * console.log(s.cpus[0]?.times.user, s.bootTime); // 2.5 1700000000
 * ```
 * @module
 */

/** The modes of `node_cpu_seconds_total`, in node_exporter's order (guest and guest_nice are a separate family there). */
export const CPU_MODES = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"] as const;
export type CpuMode = (typeof CPU_MODES)[number];

/**
 * The kernel reports `/proc/stat` in USER_HZ, which is 100 on every Linux ABI
 * (independent of CONFIG_HZ); procfs hard-codes the same.
 */
export const USER_HZ = 100;

/** No real machine has this many CPUs; a bound on the work a corrupt or hostile file can cause. */
export const MAX_CPUS = 1000;

export interface CpuTimes {
  /** The number from the `cpuN` line (not its position, so an offline CPU does not shift the others). */
  readonly cpu: string;
  readonly times: Readonly<Record<CpuMode, number>>;
}

export interface ProcStat {
  readonly cpus: readonly CpuTimes[];
  /** `btime`: boot time in seconds since the epoch; undefined if the line is missing. */
  readonly bootTime: number | undefined;
}

export function parseProcStat(text: string): ProcStat {
  const cpus: CpuTimes[] = [];
  let bootTime: number | undefined;
  for (const line of text.split("\n")) {
    const fields = line.trim().split(/\s+/);
    const key = fields[0] ?? "";
    if (key === "btime") {
      const v = Number(fields[1]);
      if (Number.isFinite(v)) bootTime = v;
    } else if (/^cpu\d+$/.test(key) && cpus.length < MAX_CPUS) {
      // The aggregate "cpu" line is not exported: node_exporter only has per-CPU series.
      const times = {} as Record<CpuMode, number>;
      CPU_MODES.forEach((mode, i) => {
        const ticks = Number(fields[i + 1] ?? 0); // old kernels lack the later columns: procfs reads them as 0
        times[mode] = Number.isFinite(ticks) ? ticks / USER_HZ : 0;
      });
      cpus.push({ cpu: key.slice(3), times });
    }
  }
  return { cpus, bootTime };
}
