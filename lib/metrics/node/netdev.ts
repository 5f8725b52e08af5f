/**
 * Parsing `/proc/net/dev` (the network namespace of the reading process), the
 * source of `node_network_{receive,transmit}_{bytes,packets,errs,drop}_total`.
 * node_exporter 1.5 reads the same kernel counters over netlink by default;
 * its legacy names map onto these columns (`drop` there is rx_dropped +
 * rx_missed_errors, which is what this file's drop column holds).
 *
 * @example
 * ```ts
 * import { parseNetDev } from "./netdev.ts";
 * const head = "Inter-|   Receive\n face |bytes\n";
 * const d = parseNetDev(head + "    lo: 100 2 0 0 0 0 0 0 100 2 0 0 0 0 0 0\n");
 * console.log(d[0]?.device, d[0]?.receive.bytes); // lo 100
 * ```
 * @module
 */

/** Devices beyond this are not reported: a bound on scrape size and work (a firewall has tens). */
export const MAX_DEVICES = 1000;

export const NETDEV_STATS = ["bytes", "packets", "errs", "drop"] as const;
export type NetDevStat = (typeof NETDEV_STATS)[number];

export interface NetDevice {
  readonly device: string;
  readonly receive: Readonly<Record<NetDevStat, number>>;
  readonly transmit: Readonly<Record<NetDevStat, number>>;
}

export function parseNetDev(text: string): NetDevice[] {
  const out: NetDevice[] = [];
  for (const line of text.split("\n").slice(2)) {
    // The last colon, as procfs does: the counters never contain one.
    const colon = line.lastIndexOf(":");
    if (colon < 0) continue;
    const device = line.slice(0, colon).trim();
    const v = line.slice(colon + 1).trim().split(/\s+/).map(Number);
    if (device === "" || v.length < 16 || v.some((n) => !Number.isFinite(n))) continue;
    // Columns: rx bytes packets errs drop fifo frame compressed multicast, then tx bytes packets errs drop ...
    out.push({
      device,
      receive: { bytes: v[0]!, packets: v[1]!, errs: v[2]!, drop: v[3]! },
      transmit: { bytes: v[8]!, packets: v[9]!, errs: v[10]!, drop: v[11]! },
    });
    if (out.length >= MAX_DEVICES) break;
  }
  return out;
}
