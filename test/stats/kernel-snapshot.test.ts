import { describe, expect, test } from "bun:test";
import type { Executor } from "../../lib/exec.ts";
import { elementRules, type Snapshot } from "../../lib/nft/snapshot.ts";
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
    expect(elementRules(after).find((r) => r.fromElements)?.counter?.packets).toBe(3);
  });

  test("the counts of a reused read are those of the read (the kernel is not asked again)", async () => {
    const { snapshots, at } = setup();
    const a = await snapshots.read({ maxAgeMs: 1000 });
    at(500);
    const b = await snapshots.read({ maxAgeMs: 1000 });
    const count = (s: typeof a) => elementRules(s).find((r) => r.comment === "accept traffic for np a tcp")?.counter?.packets;
    expect(count(a)).toBe(1);
    expect(count(b)).toBe(1);
  });
});

describe("KernelSnapshots: element sums", () => {
  const egress = (name: string, cidr: string) => policy(name, { egress: [{ to: [{ cidr }], ports: [{ port: 443 }] }] });
  const rulesetOf = (...names: string[]) => renderRuleset(state({ policies: names.map((n, i) => egress(n, `198.51.${i}.0/24`)) }));
  /** A kernel holding, in every map, one element per owner comment the ruleset gives it, counting 2 packets; and one element of an owner no ruleset knows. */
  const kernelFor = (ruleset: { owners: ReadonlyMap<string, string>; elements: ReadonlyMap<string, ReadonlyMap<string, string>> }): KernelCounters => ({
    tables: () => [{ family: "inet", name: "firewall" }],
    namedCounters: () => new Map(),
    setElementCounters: (_f, _t, map) => [
      ...[...new Set(ruleset.elements.get(map)?.values())].map((o) => ({ comment: ruleset.owners.get(o) ?? null, packets: 2, bytes: 120 })),
      ...(map === "egress4_ports" ? [{ comment: "someone else's", packets: 1, bytes: 1 }] : []),
    ],
  });
  const block = (s: Snapshot, map: string) => s.elements?.filter((e) => e.map === map) ?? [];

  test("a map's comments are the same array across reads, and across rulesets that leave its owners as they were; new owners give a new one", async () => {
    const r1 = rulesetOf("a", "b");
    let kernel = kernelFor(r1);
    const snapshots = new KernelSnapshots({ nftPath: "nft", exec, kernel: { tables: () => kernel.tables(), namedCounters: (f, t) => kernel.namedCounters(f, t), setElementCounters: (f, t, m) => kernel.setElementCounters(f, t, m) } });
    snapshots.applied({ table: "firewall", ruleset: r1 });
    const s1 = await snapshots.read();
    const s2 = await snapshots.read();
    const [ours1, unknown1] = block(s1, "egress4_ports");
    expect(ours1?.comments).toEqual(["accept traffic for np a tcp", "accept traffic for np b tcp"]);
    expect([...(ours1?.packets ?? [])]).toEqual([2, 2]);
    expect(block(s2, "egress4_ports")[0]?.comments).toBe(ours1?.comments as string[]);
    // Elements of an owner the ruleset does not know: their own block, summed by comment.
    expect(unknown1?.comments).toEqual(["someone else's"]);
    expect([...(unknown1?.bytes ?? [])]).toEqual([1]);

    // Rendered again from the same policies: other objects, the same owners.
    const r2 = rulesetOf("a", "b");
    expect(r2.elements.get("egress4_ports")).not.toBe(r1.elements.get("egress4_ports"));
    snapshots.applied({ table: "firewall", ruleset: r2 });
    expect(block(await snapshots.read(), "egress4_ports")[0]?.comments).toBe(ours1?.comments as string[]);

    const r3 = rulesetOf("a", "b", "c");
    kernel = kernelFor(r3);
    snapshots.applied({ table: "firewall", ruleset: r3 });
    const s3 = await snapshots.read();
    const ours3 = block(s3, "egress4_ports")[0];
    expect(ours3?.comments).toEqual(["accept traffic for np a tcp", "accept traffic for np b tcp", "accept traffic for np c tcp"]);
    expect([...(ours3?.packets ?? [])]).toEqual([2, 2, 2]);
    // As status.stats sees them: every owner's count once.
    expect(elementRules(s3).filter((r) => r.chain === "egress4_ports").map((r) => [r.comment, r.counter?.packets])).toEqual([
      ["accept traffic for np a tcp", 2], ["accept traffic for np b tcp", 2], ["accept traffic for np c tcp", 2], ["someone else's", 1],
    ]);
  });
});
