import { describe, expect, test } from "bun:test";
import type { Snapshot } from "../../lib/nft/snapshot.ts";
import { collectStats } from "../../lib/stats/collect.ts";

const empty: Snapshot = { tables: [], chains: [], rules: [], counters: [], sets: [] };

describe("collectStats", () => {
  test("suricata down: the counters are still reported, and the reason is a note", async () => {
    const s = await collectStats({ snapshot: async () => empty, ids: async () => ({ ok: false, reason: "suricata socket /run/x: ENOENT (is suricata running with unix-command enabled?)" }) });
    expect(s.stats.idsstats).toEqual({});
    expect(s.stats.devices).toEqual({ external: { in: 0, out: 0, total: 0 }, internal: { in: 0, out: 0, total: 0 } });
    expect(s.notes).toEqual(["IDS statistics unavailable: suricata socket /run/x: ENOENT (is suricata running with unix-command enabled?)"]);
  });

  test("nft unreadable: the IDS counters are still reported, and the reason is a note", async () => {
    const s = await collectStats({
      snapshot: async () => {
        throw new Error("nft did not finish within 60 s and was killed");
      },
      ids: async () => ({ ok: true, stats: { eth0: { packets: 5, drop: 1, invalidchecksums: 0 } } }),
    });
    expect(s.stats.idsstats).toEqual({ eth0: { packets: 5, drop: 1, invalidchecksums: 0 } });
    expect(s.notes).toEqual(["counters unavailable: nft did not finish within 60 s and was killed"]);
  });

  test("without IDS (--enable-ids=false) idsstats is empty and nothing is said about it", async () => {
    const s = await collectStats({ snapshot: async () => empty });
    expect(s).toEqual({ stats: { devices: { external: { in: 0, out: 0, total: 0 }, internal: { in: 0, out: 0, total: 0 } }, rules: { accept: {}, drop: {}, other: {} }, idsstats: {} }, notes: [] });
  });
});

describe("collectStats: the output gate", () => {
  test("interface names reach the status escaped", async () => {
    const s = await collectStats({ snapshot: async () => empty, ids: async () => ({ ok: true, stats: { "eth0\u001b[31m": { packets: 1, drop: 0, invalidchecksums: 0 } } }) });
    expect(Object.keys(s.stats.idsstats)).toEqual(["eth0\\x1b[31m"]);
  });
});
