/**
 * `status.stats.devices` (SPEC §3.1, §4.5): bytes of our accounting counters.
 * Pure.
 *
 * @example
 * ```ts
 * import { deviceStats } from "./devices.ts";
 * const d = deviceStats({ tables: [], chains: [], rules: [], sets: [], counters: [
 *   { family: "inet", table: "firewall", name: "external_in", packets: 2, bytes: 120 },
 * ] });
 * console.log(d.external); // { in: 120, out: 0, total: 120 }
 * ```
 * @module
 */
import type { Snapshot } from "../nft/snapshot.ts";

export interface DeviceTraffic {
  readonly in: number;
  readonly out: number;
  /** in + out */
  readonly total: number;
}

export interface DeviceStats {
  readonly external: DeviceTraffic;
  readonly internal: DeviceTraffic;
}

/**
 * Bytes of the named counters `external_in/_out` and `internal_in/_out` of
 * `table inet <table>` (default `firewall`); a counter that is not there
 * (table not applied yet) counts 0.
 */
export function deviceStats(snapshot: Snapshot, table = "firewall"): DeviceStats {
  const bytes = (name: string) => snapshot.counters.find((c) => c.family === "inet" && c.table === table && c.name === name)?.bytes ?? 0;
  const traffic = (side: string): DeviceTraffic => {
    const i = bytes(`${side}_in`);
    const o = bytes(`${side}_out`);
    return { in: i, out: o, total: i + o };
  };
  return { external: traffic("external"), internal: traffic("internal") };
}
