/**
 * Benchmark (SPEC §11): the packet path. New-connection rate and throughput
 * from a cluster host through the firewall namespace to an external host, with
 *   (a) no filtering table at all (no conntrack either),
 *   (b) our ruleset with only the allowing policies (the "empty ruleset" of SPEC §11),
 *   (c) our ruleset with N more policies (sets and verdict maps),
 *   (d) a one-rule-per-policy ruleset with the allowing rule last (the baseline to beat).
 *
 *   ./node_modules/.bin/bun bench/packet-path.ts [policies=10000] [connections=3000]
 *
 * Needs root, nft, iperf3. Builds and removes its own namespaces.
 * @module
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseCidr } from "../lib/api/address.ts";
import { type Policy, parsePolicy } from "../lib/api/policy.ts";
import { applyRuleset } from "../lib/nft/apply.ts";
import { nftClient } from "../lib/nft/client.ts";
import { renderRuleset } from "../lib/ruleset/render.ts";
import { createTopology } from "../test/netns/topology.ts";

const N = Number(process.argv[2] ?? 10000);
const CONNECTIONS = Number(process.argv[3] ?? 3000);
const TARGET = "203.0.113.5";
const PORT = 5201;
const CONN_PORT = 7000;

const cidr = (s: string) => {
  const r = parseCidr(s);
  if (!r.ok) throw new Error(r.message);
  return r.value;
};

function policy(name: string, to: string, port: number): Policy {
  const r = parsePolicy({ apiVersion: "metal-stack.io/v1", kind: "ClusterwideNetworkPolicy", metadata: { name, namespace: "firewall" }, spec: { egress: [{ to: [{ cidr: to }], ports: [{ port }, { port: port + 1 }] }] } });
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  return r.value;
}

// Filler destinations in 198.18.0.0/15, never the target.
const filler = (i: number) => `198.${18 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32`;

const CONN_SCRIPT = `
import net from "node:net";
const [mode, addr, port, count] = process.argv.slice(2);
if (mode === "server") {
  net.createServer((s) => { s.on("error", () => {}); s.end(); }).listen(Number(port), addr);
} else {
  let done = 0; const n = Number(count); const t0 = performance.now();
  const one = () => { const s = net.connect({ host: addr, port: Number(port) }); s.on("error", () => {}); s.on("close", () => { if (++done === n) { console.log(JSON.stringify({ perSecond: n / ((performance.now() - t0) / 1000) })); process.exit(0); } else one(); }); s.resume(); };
  for (let i = 0; i < 4; i++) one();
}
`;

const topo = await createTopology();
const dir = mkdtempSync(join(tmpdir(), "fct-bench-"));
try {
  const script = join(dir, "conn.mjs");
  writeFileSync(script, CONN_SCRIPT);
  const fw = topo.executor("firewall");
  const nft = nftClient("nft", fw);
  const server = topo.start("external", ["iperf3", "-s", "-B", TARGET, "-p", String(PORT)]);
  const connServer = topo.start("external", [process.execPath, script, "server", TARGET, String(CONN_PORT)]);
  await topo.waitForPort("external", PORT);
  await topo.waitForPort("external", CONN_PORT);

  const measure = async (label: string) => {
    const rates: number[] = [];
    const tputs: number[] = [];
    for (let k = 0; k < 3; k++) {
      const c = await topo.exec("cluster", [process.execPath, script, "client", TARGET, String(CONN_PORT), String(CONNECTIONS)]);
      rates.push(JSON.parse(c.stdout).perSecond);
      const r = await topo.exec("cluster", ["iperf3", "-c", TARGET, "-p", String(PORT), "-t", "3", "-J"]);
      tputs.push(JSON.parse(r.stdout).end.sum_received.bits_per_second / 1e9);
    }
    const med = (xs: number[]) => xs.toSorted((a, b) => a - b)[1] as number;
    console.log(`${label.padEnd(40)} ${med(rates).toFixed(0).padStart(6)} conn/s   ${med(tputs).toFixed(2)} Gbit/s   (median of 3)`);
    return { rate: med(rates), tput: med(tputs) };
  };

  await fw(["nft", "flush", "ruleset"]);
  const empty = await measure("no table");

  const allowing = [policy("zz-target", `${TARGET}/32`, PORT), policy("zz-conn", `${TARGET}/32`, CONN_PORT)];
  const policies = [...Array.from({ length: N }, (_, i) => policy(`filler-${i}`, filler(i), 1000 + (i % 1000))), ...allowing];
  const render = (ps: Policy[]) => renderRuleset({ policies: ps, services: [], clusterPrefixes: [cidr("10.0.0.0/8"), cidr("fd00:66::/64")], internalPrefixes: [], privateVrf: 42 });
  await applyRuleset(render(allowing), { nft, table: "firewall" });
  const small = await measure("ours, only the 2 allowing policies");
  await applyRuleset(render(policies), { nft, table: "firewall" });
  const ours = await measure(`ours, ${N} policies (maps)`);

  await fw(["nft", "flush", "ruleset"]);
  const rules = policies.map((p) => {
    const rule = p.egress[0];
    const block = rule?.peers?.[0]?.cidr.text;
    const ports = rule?.ports?.map((x) => x.first).join(", ");
    return `\t\tip saddr 10.0.0.0/8 ip daddr ${block} tcp dport { ${ports} } counter accept comment "accept traffic for np ${p.name} tcp"`;
  });
  const naive = `table inet firewall {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n\t\tct state established,related accept\n${rules.join("\n")}\n\t}\n}\n`;
  const loaded = await fw(["nft", "-f", "-"], { stdin: naive });
  if (loaded.code !== 0) throw new Error(loaded.stderr);
  const baseline = await measure(`one rule per policy, ${N} rules`);

  const pct = (x: number, y: number) => `${(((x - y) / y) * 100).toFixed(1)}%`;
  console.log(`ours ${N} vs ours with 2: conn/s ${pct(ours.rate, small.rate)}, throughput ${pct(ours.tput, small.tput)}`);
  console.log(`ours ${N} vs no table: conn/s ${pct(ours.rate, empty.rate)}, throughput ${pct(ours.tput, empty.tput)}`);
  console.log(`one-rule-per-policy vs no table: conn/s ${pct(baseline.rate, empty.rate)}, throughput ${pct(baseline.tput, empty.tput)}`);
  await server.stop();
  await connServer.stop();
} finally {
  rmSync(dir, { recursive: true, force: true });
  await topo.destroy();
}
