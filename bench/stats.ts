/**
 * Benchmark (SPEC §11): CPU of one interval's statistics (status.stats) and one scrape of the
 * nftables metrics at N policies, the way the controller reads them (netlink and the applied
 * ruleset, lib/stats/kernel-snapshot.ts) side by side with a full `nft -j list ruleset` per read
 * (what the exporter and earlier versions did). CPU is this process's plus the nft it ran.
 *
 *   ./node_modules/.bin/bun bench/stats.ts [policies=10000] [rounds=5]
 *
 * Needs root and nft. Builds and removes its own namespace.
 * @module
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { parseCidr } from "../lib/api/address.ts";
import { type Policy, parsePolicy } from "../lib/api/policy.ts";
import { runCommand } from "../lib/exec.ts";
import { nftablesRegistry } from "../lib/metrics/nftables.ts";
import { kernelReader } from "../lib/nft/netlink.ts";
import { readSnapshot, type Snapshot } from "../lib/nft/snapshot.ts";
import { renderRuleset } from "../lib/ruleset/render.ts";
import { collectStats } from "../lib/stats/collect.ts";
import { type KernelCounters, KernelSnapshots, SCRAPE_MAX_AGE_MS } from "../lib/stats/kernel-snapshot.ts";

const N = Number(process.argv[2] ?? 10000);
const ROUNDS = Number(process.argv[3] ?? 5);

const cidr = (s: string) => {
  const r = parseCidr(s);
  if (!r.ok) throw new Error(r.message);
  return r.value;
};
function policy(i: number): Policy {
  const r = parsePolicy({
    apiVersion: "metal-stack.io/v1", kind: "ClusterwideNetworkPolicy", metadata: { name: `p-${i}`, namespace: "firewall" },
    spec: { egress: [{ to: [{ cidr: `198.${18 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32` }, { cidr: `2001:db8:${i.toString(16)}::/64` }], ports: [{ port: 443 }, { protocol: "UDP", port: 53 }] }] },
  });
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  return r.value;
}

/** utime+stime of this process and of the children it waited for, in ms (USER_HZ 100). */
function cpuMs(): number {
  const f = readFileSync("/proc/self/stat", "utf8").split(") ")[1]?.split(" ") ?? [];
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * 10;
}
const median = (xs: number[]) => xs.toSorted((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

const ruleset = renderRuleset({ policies: Array.from({ length: N }, (_, i) => policy(i)), services: [], clusterPrefixes: [cidr("10.0.0.0/8")], internalPrefixes: [], privateVrf: 42 });
const BASE = "table inet metal {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 22 counter accept comment \"ssh\"\n\t}\n}\n";
const ns = `fct-stats-${randomBytes(3).toString("hex")}`;
await runCommand(["ip", "netns", "add", ns]);
try {
  const exec = (argv: readonly string[], o?: { stdin?: string }) => runCommand(["ip", "netns", "exec", ns, ...argv], { ...o, timeoutMs: 600_000 });
  const loaded = await exec(["nft", "-f", "-"], { stdin: ruleset.text + BASE });
  if (loaded.code !== 0) throw new Error(loaded.stderr);
  const kernel = kernelReader({ netns: ns });
  if (!kernel) throw new Error("netlink is not available in this runtime");
  const snapshots = new KernelSnapshots({ nftPath: "nft", exec, kernel });
  snapshots.applied({ table: "firewall", ruleset });
  await snapshots.read(); // the one terse listing of our chains, after a change

  /**
   * One interval's statistics and one scrape, each reading its own snapshot (as they run apart in
   * time). The registry lives across rounds, as in the controller (it keeps the element rules'
   * label texts from one scrape to the next).
   */
  const measure = async (read: () => Promise<Snapshot>, registry: ReturnType<typeof nftablesRegistry>, before?: () => void) => {
    const c0 = cpuMs();
    const t0 = performance.now();
    // Shared: the scrape comes first and the interval's statistics take its read (see below).
    // As the metrics server takes it: as bytes where the registry prints itself so.
    const scrape = () => ((registry as { expositionParts?: () => Promise<Uint8Array[]> }).expositionParts?.() ?? registry.metrics().then((t) => [new TextEncoder().encode(t)]));
    let parts = before ? await scrape() : [];
    before?.();
    const stats = await collectStats({ snapshot: read });
    if (!before) parts = await scrape();
    const cpu = cpuMs() - c0;
    const wall = performance.now() - t0;
    // Counted without splitting 11 MB into 80,000 strings (their garbage would land in the next round).
    let series = 0;
    for (const body of parts) {
      for (let i = 0; i < body.length; ) {
        const nl = body.indexOf(10, i);
        const end = nl < 0 ? body.length : nl;
        if (end > i && body[i] !== 35 /* # */) series++;
        i = end + 1;
      }
    }
    return { cpu, wall, series, rules: Object.keys(stats.stats.rules.accept ?? {}).length };
  };
  const ours: { cpu: number; wall: number; series: number; rules: number }[] = [];
  const full: typeof ours = [];
  const lean: typeof ours = [];
  const shared: typeof ours = [];
  const busy: typeof ours = [];
  // As in the controller with a scrape during the interval: a clock of our own, 10 s per round;
  // the scrape at the round's start reads, the statistics 5 s later take its read. Twice: with
  // the counters as they are (no traffic in the namespace: nothing changes between reads), and
  // with every element counter grown between reads (each policy seeing traffic, as on a busy
  // firewall; the values are added in process after the kernel's dump, everything else is real).
  const sharedRounds = async (k: KernelCounters) => {
    let clock = 0;
    const sharing = new KernelSnapshots({ nftPath: "nft", exec, kernel: k, now: () => clock });
    sharing.applied({ table: "firewall", ruleset });
    await sharing.read();
    const registry = nftablesRegistry(() => sharing.read({ maxAgeMs: SCRAPE_MAX_AGE_MS }).catch(() => null), { perPolicySeries: true });
    await registry.metrics();
    Bun.gc(true);
    const out: typeof ours = [];
    for (let k = 0; k < ROUNDS; k++) {
      clock += 10_000;
      out.push(await measure(() => sharing.readForInterval(10_000), registry, () => (clock += 5000)));
    }
    return out;
  };
  shared.push(...(await sharedRounds(kernel)));
  let grown = 0;
  const busyKernel: KernelCounters = {
    tables: () => kernel.tables(),
    namedCounters: (family, table) => kernel.namedCounters(family, table),
    setElementCounters: (family, table, set) => kernel.setElementCounters(family, table, set),
    setElementSlots: (family, table, set, index, packets, bytes) => {
      const unknown = kernel.setElementSlots(family, table, set, index, packets, bytes);
      grown++;
      // Every value grows, some faster: their widths change now and then, as real counters' do.
      for (let i = 0; i < packets.length; i++) {
        const n = grown * (1 + (i % 7));
        packets[i] = (packets[i] as number) + n;
        bytes[i] = (bytes[i] as number) + n * 1400;
      }
      return unknown;
    },
  };
  busy.push(...(await sharedRounds(busyKernel)));
  // Each way its rounds in a row, a full collection between the ways: the garbage of a full
  // listing (megabytes of JSON) must not be collected during our rounds, nor ours during its.
  // Within a way its own garbage is collected as it comes, and counted.
  for (const [into, read, perPolicy] of [[ours, () => snapshots.read(), true], [lean, () => snapshots.read(), false], [full, () => readSnapshot("nft", exec), true]] as const) {
    const registry = nftablesRegistry(() => read().catch(() => null), { perPolicySeries: perPolicy });
    // The controller's first scrape labels every series; later ones reuse the labels.
    await registry.metrics();
    Bun.gc(true);
    for (let k = 0; k < ROUNDS; k++) into.push(await measure(read, registry));
  }
  const o = median(ours.map((x) => x.cpu));
  const f = median(full.map((x) => x.cpu));
  console.log(`${N} policies, ${ruleset.elementCount} map elements, medians of ${ROUNDS} rounds side by side (CPU of this process and the nft it ran):`);
  console.log(`  statistics + one scrape, netlink and the applied ruleset: ${o.toFixed(0)} ms CPU (${median(ours.map((x) => x.wall)).toFixed(0)} ms wall), ${ours[0]?.series} series (target <= 100 ms CPU)`);
  console.log(`  the statistics taking the read of a scrape in their interval: ${median(shared.map((x) => x.cpu)).toFixed(0)} ms CPU (${median(shared.map((x) => x.wall)).toFixed(0)} ms wall), ${shared[0]?.series} series`);
  console.log(`  the same, every element counter changed since the last read: ${median(busy.map((x) => x.cpu)).toFixed(0)} ms CPU (${median(busy.map((x) => x.wall)).toFixed(0)} ms wall), ${busy[0]?.series} series`);
  console.log(`  the same with --metrics-per-policy=false:                 ${median(lean.map((x) => x.cpu)).toFixed(0)} ms CPU (${median(lean.map((x) => x.wall)).toFixed(0)} ms wall), ${lean[0]?.series} series`);
  console.log(`  statistics + one scrape, a full nft -j list ruleset each:  ${f.toFixed(0)} ms CPU (${median(full.map((x) => x.wall)).toFixed(0)} ms wall), ${full[0]?.series} series`);
  console.log(`  ratio: ${(o / f).toFixed(2)}x`);
} finally {
  await runCommand(["ip", "netns", "del", ns]);
}
