import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseSnapshot, type Snapshot, type SnapshotCounter } from "../../lib/nft/snapshot.ts";
import { deviceStats } from "../../lib/stats/devices.ts";

const only = (counters: SnapshotCounter[]): Snapshot => ({ tables: [], chains: [], rules: [], sets: [], counters });
const counter = (name: string, bytes: number, table = "firewall", family = "inet"): SnapshotCounter => ({ family, table, name, packets: 1, bytes });

describe("deviceStats", () => {
  test("bytes of the accounting counters of the captured snapshot, total = in + out", () => {
    const r = parseSnapshot(JSON.parse(readFileSync(join(import.meta.dir, "../fixtures/nft/ruleset.json"), "utf8")));
    if (!r.ok) throw new Error(r.message);
    expect(deviceStats(r.value)).toEqual({ external: { in: 91696, out: 34600, total: 126296 }, internal: { in: 300, out: 0, total: 300 } });
  });

  test.each([
    ["no table yet", [], { in: 0, out: 0, total: 0 }],
    ["another table's counter", [counter("external_in", 5, "metal")], { in: 0, out: 0, total: 0 }],
    ["another family's counter", [counter("external_in", 5, "firewall", "ip")], { in: 0, out: 0, total: 0 }],
    ["only in", [counter("external_in", 5)], { in: 5, out: 0, total: 5 }],
  ] as const)("external with %s", (_what, counters, expected) => {
    expect(deviceStats(only([...counters])).external).toEqual(expected);
  });

  test("reads another table when told", () => {
    expect(deviceStats(only([counter("internal_out", 7, "fw2")]), "fw2").internal).toEqual({ in: 0, out: 7, total: 7 });
  });
});
