/**
 * Benchmark (SPEC §11): applying at scale against the baseline SPEC §11 names, side by side in
 * each run: `nft -f` of the one-rule-per-policy ruleset of the same objects (bench/naive.ts),
 * then ours cold, unchanged (verified: no transaction), and one policy changed — each in a fresh
 * throwaway network namespace, with the production client (nft + netlink). Prints medians and the
 * ratios the targets are judged by.
 *
 *   ./node_modules/.bin/bun bench/ruleset.ts [policies=1000] [services=1000] [runs=3]
 *   ./node_modules/.bin/bun bench/ruleset.ts budget    # a ruleset at the total element budget
 *
 * Needs root and nft. Prints one line per measured step.
 * @module
 */
import { randomBytes } from "node:crypto";
import { parseCidr } from "../lib/api/address.ts";
import { type Policy, parsePolicy } from "../lib/api/policy.ts";
import { type LoadBalancer, parseService } from "../lib/api/service.ts";
import { runCommand } from "../lib/exec.ts";
import { applyRuleset } from "../lib/nft/apply.ts";
import { type NftClient, nftClient } from "../lib/nft/client.ts";
import { kernelReader } from "../lib/nft/netlink.ts";
import { ELEMENT_BUDGET, policyElementCount } from "../lib/ruleset/budget.ts";
import { renderRuleset } from "../lib/ruleset/render.ts";
import { naiveRuleset } from "./naive.ts";

if (process.argv[2] === "budget") {
  await budgetBench();
  process.exit(0);
}

const nPolicies = Number(process.argv[2] ?? 1000);
const nServices = Number(process.argv[3] ?? 1000);

function must<T>(r: { ok: true; value: T } | { ok: false; problems: unknown }): T {
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  return r.value;
}

// Realistic mix: distinct /32 and /24 destinations, some overlapping wide blocks, port lists and ranges, v6.
function policy(i: number): Policy {
  const a = (i >> 8) & 255;
  const b = i & 255;
  const egress = [
    { to: [{ cidr: `198.18.${a}.${b}/32` }, { cidr: `2001:db8:${i.toString(16)}::/64` }], ports: [{ protocol: "TCP", port: 443 }, { protocol: "UDP", port: 53 }] },
    { to: [{ cidr: `203.0.${i % 256}.0/24`, except: [`203.0.${i % 256}.0/28`] }], ports: [{ port: 8000 + (i % 100), endPort: 8100 + (i % 100) }] },
  ];
  if (i % 50 === 0) egress.push({ to: [{ cidr: "198.51.100.0/24" }], ports: [] as never });
  return must(parsePolicy({ apiVersion: "metal-stack.io/v1", kind: "ClusterwideNetworkPolicy", metadata: { name: `policy-${i}`, namespace: "firewall" }, spec: { egress, ingress: i % 10 === 0 ? [{ from: [{ cidr: `192.0.2.${i % 256}/32` }], ports: [{ port: 22 }] }] : [] } }));
}

function service(i: number): LoadBalancer {
  return must(parseService({
    apiVersion: "v1", kind: "Service", metadata: { name: `svc-${i}`, namespace: `ns-${i % 20}` },
    spec: { type: "LoadBalancer", ports: [{ port: 443 }, { port: 80 }], loadBalancerSourceRanges: i % 3 === 0 ? ["192.0.2.0/24", "198.51.100.0/24"] : [] },
    status: { loadBalancer: { ingress: [{ ip: `10.${(i >> 8) & 255}.${i & 255}.1` }] } },
  }));
}

const cidr = (s: string) => {
  const r = parseCidr(s);
  if (!r.ok) throw new Error(r.message);
  return r.value;
};

const RUNS = Number(process.argv[4] ?? 3);
const state = {
  policies: Array.from({ length: nPolicies }, (_, i) => policy(i)),
  services: Array.from({ length: nServices }, (_, i) => service(i)),
  clusterPrefixes: [cidr("10.0.0.0/8"), cidr("fd00:66::/64")],
  internalPrefixes: [cidr("10.0.0.0/8")],
  privateVrf: 42,
};
const naive = naiveRuleset(state.policies, state.services);
const median = (xs: number[]) => xs.toSorted((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const ms = async (f: () => Promise<unknown>) => {
  const t = performance.now();
  await f();
  return performance.now() - t;
};

/** A throwaway namespace with the production client: nft for transactions, netlink for reads. */
async function withNamespace<T>(f: (nft: NftClient, transactions: () => number) => Promise<T>): Promise<T> {
  const ns = `fct-bench-${randomBytes(3).toString("hex")}`;
  await runCommand(["ip", "netns", "add", ns]);
  try {
    const exec = (argv: readonly string[], o?: { stdin?: string }) => runCommand(["ip", "netns", "exec", ns, ...argv], { ...o, timeoutMs: 600_000 });
    const real = nftClient("nft", exec, kernelReader({ netns: ns }));
    let runs = 0;
    const counted: NftClient = { ...real, run: (script) => (runs++, real.run(script)) };
    if (real.applyElements) counted.applyElements = (load) => (runs++, (real.applyElements as NonNullable<NftClient["applyElements"]>)(load));
    return await f(counted, () => runs);
  } finally {
    await runCommand(["ip", "netns", "del", ns]);
  }
}

const rows = { naive: [] as number[], render: [] as number[], cold: [] as number[], unchanged: [] as number[], trusted: [] as number[], renderChanged: [] as number[], patched: [] as number[], patchedVerified: [] as number[], replaced: [] as number[] };
let unchangedTransactions = 0;
let elements = 0;
for (let run = 0; run < RUNS; run++) {
  // Side by side in each run: the baseline first, then ours, each into a fresh namespace.
  rows.naive.push(await withNamespace(async (nft) => ms(async () => {
    const r = await nft.run(naive);
    if (r.code !== 0) throw new Error(`naive ruleset refused: ${r.stderr.slice(0, 300)}`);
  })));
  let ruleset = renderRuleset(state);
  rows.render.push(await ms(async () => (ruleset = renderRuleset(state))));
  elements = ruleset.elementCount;
  await withNamespace(async (nft, transactions) => {
    rows.cold.push(await ms(() => applyRuleset(ruleset, { nft, table: "firewall" })));
    const before = transactions();
    let mode = "";
    rows.unchanged.push(await ms(async () => (mode = (await applyRuleset(ruleset, { nft, table: "firewall" })).mode)));
    if (mode !== "unchanged") throw new Error(`unchanged input applied as ${mode}`);
    unchangedTransactions += transactions() - before;
    rows.trusted.push(await ms(() => applyRuleset(ruleset, { nft, table: "firewall", verify: false })));
    const changedState = { ...state, policies: [...state.policies.slice(1), policy(nPolicies + 1 + run)] };
    let r2 = ruleset;
    rows.renderChanged.push(await ms(async () => (r2 = renderRuleset(changedState))));
    const first = await applyRuleset(ruleset, { nft, table: "firewall", verify: false });
    rows.patched.push(await ms(() => applyRuleset(r2, { nft, table: "firewall", previous: ruleset, previousFingerprint: first.fingerprint ?? null, previousGeneration: first.generation ?? null, verify: false })));
    rows.patchedVerified.push(await ms(() => applyRuleset(ruleset, { nft, table: "firewall", previous: r2 })));
    rows.replaced.push(await ms(() => applyRuleset(r2, { nft, table: "firewall" })));
  });
}
const naiveMs = median(rows.naive);
const line = (label: string, xs: number[], judged?: number) =>
  console.log(`${label.padEnd(62)} ${median(xs).toFixed(0).padStart(6)} ms${judged === undefined ? "" : `   ${(median(xs) / naiveMs).toFixed(2)}x the baseline (target <= ${judged})`}`);
console.log(`${nPolicies} policies + ${nServices} services: ${elements} map elements; baseline ${naive.split("\n").length - 6} rules; medians of ${RUNS} runs`);
line("baseline: nft -f of the one-rule-per-policy ruleset", rows.naive);
line("render", rows.render);
line("cold apply into an empty namespace (apply + proof)", rows.cold, 0.25);
line("unchanged, verified (what --once does)", rows.unchanged, 0.2);
console.log(`  transactions run by the unchanged applies: ${unchangedTransactions}`);
line("unchanged, revision marker trusted", rows.trusted);
line("one policy changed: render", rows.renderChanged);
line("  patched from the known state (the controller's event path)", rows.patched);
line("  patched, verified first", rows.patchedVerified);
line("  replaced whole (--once with a changed input)", rows.replaced);
console.log(`rss: ${(process.memoryUsage().rss / 1e6).toFixed(0)} MB`);

/**
 * The total budget in nft: 200 policies of 1,000 elements each (10 hosts x 100 ports, half of them
 * crossed by an any-destination policy, so layers are used), checked and loaded in a fresh namespace.
 */
async function budgetBench(): Promise<void> {
  const n = ELEMENT_BUDGET.total / 1000;
  const policies: Policy[] = [];
  for (let i = 0; i < n; i++) {
    const to = Array.from({ length: 10 }, (_, h) => ({ cidr: `198.18.${i}.${h * 2}/32` }));
    const ports = Array.from({ length: 100 }, (_, p) => ({ port: 1000 + 2 * p + (i % 2) }));
    policies.push(must(parsePolicy({ apiVersion: "metal-stack.io/v1", kind: "ClusterwideNetworkPolicy", metadata: { name: `budget-${String(i).padStart(3, "0")}`, namespace: "firewall" }, spec: { egress: [{ to, ports }] } })));
  }
  const budget = policies.reduce((s, p) => s + policyElementCount(p), 0);
  const t0 = performance.now();
  const cluster = parseCidr("10.0.0.0/8");
  if (!cluster.ok) throw new Error(cluster.message);
  const ruleset = renderRuleset({ policies, services: [], clusterPrefixes: [cluster.value], internalPrefixes: [], privateVrf: 42 });
  const t1 = performance.now();
  console.log(`budget: ${budget} counted, ${ruleset.elementCount} rendered in ${(t1 - t0).toFixed(0)} ms, ${(ruleset.text.length / 1e6).toFixed(1)} MB of text`);
  const ns = `fct-bench-${randomBytes(3).toString("hex")}`;
  await runCommand(["ip", "netns", "add", ns]);
  try {
    for (const argv of [["nft", "-c", "-f", "-"], ["nft", "-f", "-"]]) {
      const t2 = performance.now();
      const r = await runCommand(["ip", "netns", "exec", ns, ...argv], { stdin: ruleset.text, timeoutMs: 600_000 });
      console.log(`${argv.join(" ")}: ${((performance.now() - t2) / 1000).toFixed(2)} s, exit ${r.code}${r.code === 0 ? "" : `: ${r.stderr.slice(0, 300)}`}`);
    }
  } finally {
    await runCommand(["ip", "netns", "del", ns]);
  }
}
