import { describe, expect, test } from "bun:test";
import type { Executor } from "../../lib/exec.ts";
import { renderRuleset } from "../../lib/ruleset/render.ts";
import { type KernelCounters, KernelSnapshots } from "../../lib/stats/kernel-snapshot.ts";
import { policy, state } from "../ruleset/helpers.ts";

/** A kernel whose element counters go up by one packet per read, so each read is told from the others. */
function countingKernel(): KernelCounters & { reads: number; failNext: boolean } {
  const k = {
    reads: 0,
    failNext: false,
    tables: () => {
      if (k.failNext) {
        k.failNext = false;
        throw new Error("netlink broke");
      }
      k.reads++;
      return [{ family: "inet", name: "firewall" }];
    },
    namedCounters: () => new Map(),
    setElementCounters: () => [{ comment: "accept traffic for np a tcp", packets: k.reads, bytes: k.reads * 60 }],
  };
  return k;
}

const exec: Executor = async () => ({ code: 0, stdout: '{"nftables":[]}', stderr: "" });
const ruleset = renderRuleset(state({ policies: [policy("a", { egress: [{ to: [{ cidr: "198.51.100.0/24" }], ports: [{ port: 443 }] }] })] }));

function setup() {
  let now = 0;
  const kernel = countingKernel();
  const snapshots = new KernelSnapshots({ nftPath: "nft", exec, kernel, now: () => now });
  snapshots.applied({ table: "firewall", ruleset });
  return { kernel, snapshots, at: (ms: number) => (now = ms) };
}

describe("KernelSnapshots: when a read may be reused", () => {
  test("without a maximum age every read reads the kernel", async () => {
    const { kernel, snapshots } = setup();
    await snapshots.read();
    await snapshots.read();
    expect(kernel.reads).toBe(2);
  });

  test("a scrape within its maximum age of the last read shares it, a later one reads again", async () => {
    const { kernel, snapshots, at } = setup();
    const first = await snapshots.read({ maxAgeMs: 1000 });
    at(999);
    expect(await snapshots.read({ maxAgeMs: 1000 })).toBe(first);
    at(1001);
    expect(await snapshots.read({ maxAgeMs: 1000 })).not.toBe(first);
    expect(kernel.reads).toBe(2);
  });

  test("an interval's statistics take a scrape's read of that interval, never the one the previous interval took", async () => {
    const { kernel, snapshots, at } = setup();
    const interval = 10_000;
    const s0 = await snapshots.readForInterval(interval);
    expect(kernel.reads).toBe(1);
    // No scrape in between: the next interval reads anew (even though its last read is not older than an interval).
    at(10_000);
    const s1 = await snapshots.readForInterval(interval);
    expect(s1).not.toBe(s0);
    expect(kernel.reads).toBe(2);
    at(15_000);
    const scrape = await snapshots.read({ maxAgeMs: 1000 });
    expect(kernel.reads).toBe(3);
    at(20_000);
    expect(await snapshots.readForInterval(interval)).toBe(scrape);
    expect(kernel.reads).toBe(3);
    // The scrape's read served the last interval: this one reads.
    at(30_000);
    expect(await snapshots.readForInterval(interval)).not.toBe(scrape);
    expect(kernel.reads).toBe(4);
    // A read older than an interval does not serve.
    at(45_000);
    await snapshots.read({ maxAgeMs: 1000 });
    at(55_001);
    await snapshots.readForInterval(interval);
    expect(kernel.reads).toBe(6);
  });

  test("a new ruleset applied makes earlier reads stale; a failed read is not kept", async () => {
    const { kernel, snapshots, at } = setup();
    const first = await snapshots.read({ maxAgeMs: 1000 });
    snapshots.applied({ table: "firewall", ruleset: renderRuleset(state()) });
    expect(await snapshots.read({ maxAgeMs: 1000 })).not.toBe(first);
    expect(kernel.reads).toBe(2);
    at(5000);
    kernel.failNext = true;
    await expect(snapshots.read({ maxAgeMs: 1000 })).rejects.toThrow("netlink broke");
    const after = await snapshots.read({ maxAgeMs: 1000 });
    expect(kernel.reads).toBe(3);
    expect(after.rules.find((r) => r.fromElements)?.counter?.packets).toBe(3);
  });

  test("the counts of a reused read are those of the read (the kernel is not asked again)", async () => {
    const { snapshots, at } = setup();
    const a = await snapshots.read({ maxAgeMs: 1000 });
    at(500);
    const b = await snapshots.read({ maxAgeMs: 1000 });
    const count = (s: typeof a) => s.rules.find((r) => r.comment === "accept traffic for np a tcp")?.counter?.packets;
    expect(count(a)).toBe(1);
    expect(count(b)).toBe(1);
  });
});
