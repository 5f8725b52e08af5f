/**
 * Keeps `node_cpu_seconds_total` monotonic as node_exporter does: the kernel's
 * per-CPU counters can step back a little (notably iowait and idle on NO_HZ
 * kernels), and a counter that decreases looks like a reset to Prometheus,
 * making rate() spike. A value lower than the last one is held; an idle drop
 * of 3 s or more means the CPU was hot-plugged, and its history is dropped.
 *
 * @example
 * ```ts
 * import { CpuTracker } from "./cpu-tracker.ts";
 * const t = new CpuTracker();
 * const z = { user: 0, nice: 0, system: 0, idle: 10, iowait: 5, irq: 0, softirq: 0, steal: 0 };
 * t.update([{ cpu: "0", times: z }]);
 * console.log(t.update([{ cpu: "0", times: { ...z, iowait: 4.99 } }])[0]?.times.iowait); // 5
 * ```
 * @module
 */
import { CPU_MODES, type CpuMode, type CpuTimes } from "./proc-stat.ts";

/** node_exporter's `jumpBackSeconds`. */
export const JUMP_BACK_SECONDS = 3;

export class CpuTracker {
  #last = new Map<string, Record<CpuMode, number>>();

  update(current: readonly CpuTimes[]): CpuTimes[] {
    const next = new Map<string, Record<CpuMode, number>>();
    const out: CpuTimes[] = [];
    for (const { cpu, times } of current) {
      let prev = this.#last.get(cpu);
      if (prev !== undefined && prev.idle - times.idle >= JUMP_BACK_SECONDS) prev = undefined;
      const merged = {} as Record<CpuMode, number>;
      for (const mode of CPU_MODES) merged[mode] = prev === undefined ? times[mode] : Math.max(prev[mode], times[mode]);
      next.set(cpu, merged);
      out.push({ cpu, times: merged });
    }
    // Only the CPUs seen now are kept, so the state stays as small as the machine.
    this.#last = next;
    return out;
  }
}
