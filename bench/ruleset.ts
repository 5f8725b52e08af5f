/**
 * Benchmark (SPEC §11): render + check + apply at scale, inside a throwaway
 * network namespace, and the unchanged case (no apply at all).
 *
 *   ./node_modules/.bin/bun bench/ruleset.ts [policies=1000] [services=1000]
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
import { nftClient } from "../lib/nft/client.ts";
import { ELEMENT_BUDGET, policyElementCount } from "../lib/ruleset/budget.ts";
import { renderRuleset } from "../lib/ruleset/render.ts";

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

const t0 = performance.now();
const state = {
  policies: Array.from({ length: nPolicies }, (_, i) => policy(i)),
  services: Array.from({ length: nServices }, (_, i) => service(i)),
  clusterPrefixes: [cidr("10.0.0.0/8"), cidr("fd00:66::/64")],
  internalPrefixes: [cidr("10.0.0.0/8")],
  privateVrf: 42,
};
const t1 = performance.now();
const ruleset = renderRuleset(state);
const t2 = performance.now();
console.log(`parse ${nPolicies} policies + ${nServices} services: ${(t1 - t0).toFixed(0)} ms`);
console.log(`render: ${(t2 - t1).toFixed(0)} ms, ${ruleset.text.length} bytes, ${ruleset.text.split("\n").length} lines`);

const ns = `fct-bench-${randomBytes(3).toString("hex")}`;
await runCommand(["ip", "netns", "add", ns]);
try {
  const nft = nftClient("nft", (argv, o) => runCommand(["ip", "netns", "exec", ns, ...argv], o));
  const t3 = performance.now();
  const first = await applyRuleset(ruleset, { nft, table: "firewall" });
  const t4 = performance.now();
  console.log(`check + apply (first): ${(t4 - t3).toFixed(0)} ms, changed=${first.changed}`);
  const t5 = performance.now();
  const again = await applyRuleset(ruleset, { nft, table: "firewall" });
  const t6 = performance.now();
  console.log(`unchanged input, verified against the fingerprint: ${(t6 - t5).toFixed(0)} ms, mode=${again.mode} (no nft transaction)`);
  const t5b = performance.now();
  const trusted = await applyRuleset(ruleset, { nft, table: "firewall", verify: false });
  const t6b = performance.now();
  console.log(`unchanged input, revision marker trusted: ${(t6b - t5b).toFixed(0)} ms, mode=${trusted.mode}`);
  const changedState = { ...state, policies: [...state.policies.slice(1), policy(nPolicies + 1)] };
  const t7 = performance.now();
  const r2 = renderRuleset(changedState);
  const t8 = performance.now();
  console.log(`one policy changed: render ${(t8 - t7).toFixed(0)} ms`);
  const t9 = performance.now();
  const verified = await applyRuleset(r2, { nft, table: "firewall", previous: ruleset });
  const t10 = performance.now();
  console.log(`  patched, verified before and fingerprinted after: ${(t10 - t9).toFixed(0)} ms, mode=${verified.mode}`);
  const t11 = performance.now();
  const unverified = await applyRuleset(ruleset, { nft, table: "firewall", previous: r2, verify: false });
  const t12 = performance.now();
  console.log(`  patched, unverified (revision marker trusted): ${(t12 - t11).toFixed(0)} ms, mode=${unverified.mode}`);
  const t13 = performance.now();
  const replaced = await applyRuleset(r2, { nft, table: "firewall" });
  const t14 = performance.now();
  console.log(`  replaced whole (no previous ruleset, as with --once), verified: ${(t14 - t13).toFixed(0)} ms, mode=${replaced.mode}`);
  console.log(`rss: ${(process.memoryUsage().rss / 1e6).toFixed(0)} MB`);
} finally {
  await runCommand(["ip", "netns", "del", ns]);
}

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
