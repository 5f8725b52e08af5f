/**
 * Benchmark (SPEC §11): event → rules active in the kernel, with N policies in
 * the cluster. The controller runs in this process against the test API
 * server in a process of its own (bench/apiserver-process.ts: as in production, the API
 * server's work is not the controller's); its nft commands run in a throwaway network namespace, with the
 * production client (nft for transactions, netlink for reads). Each sample
 * creates one policy (an IPv4 host beside the N others in the big map, and an
 * IPv6 host alone in its map) and polls the kernel over netlink until the IPv6
 * element is in: both arrive in one transaction. Then each of those policies is edited (another
 * IPv6 block) and deleted, each until the controller's transaction is in the kernel (the
 * generation moves).
 *
 *   ./node_modules/.bin/bun bench/event-latency.ts [policies=1000] [samples=50]
 *
 * Needs root and nft.
 * @module
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { parseCidr } from "../lib/api/address.ts";
import { removeFileIfRegular, writeFileAtomic } from "../lib/atomic-file.ts";
import { Controller } from "../lib/controller.ts";
import { runCommand } from "../lib/exec.ts";
import { clusterApi } from "../lib/kube/api.ts";
import { EventRecorder } from "../lib/kube/events.ts";
import { createLogger } from "../lib/log.ts";
import { nftClient } from "../lib/nft/client.ts";
import { kernelReader } from "../lib/nft/netlink.ts";

const N = Number(process.argv[2] ?? 1000);
const SAMPLES = Number(process.argv[3] ?? 50);
const CWNP = "/apis/metal-stack.io/v1/namespaces/firewall/clusterwidenetworkpolicies";

const cidr = (s: string) => {
  const r = parseCidr(s);
  if (!r.ok) throw new Error(r.message);
  return r.value;
};
const policy = (name: string, i: number, v6 = false) => ({
  apiVersion: "metal-stack.io/v1",
  kind: "ClusterwideNetworkPolicy",
  metadata: { name, namespace: "firewall" },
  spec: { egress: [{ to: [{ cidr: `198.${18 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32` }, ...(v6 ? [{ cidr: `2001:db8:ffff::${i.toString(16)}/128` }] : [])], ports: [{ port: 443 }, { protocol: "UDP", port: 53 }] }] },
});

const ns = `fct-lat-${randomBytes(3).toString("hex")}`;
await runCommand(["ip", "netns", "add", ns]);
const apiserver = Bun.spawn([process.execPath, join(import.meta.dir, "apiserver-process.ts")], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
const firstLine = async () => {
  const reader = apiserver.stdout.getReader();
  let text = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) throw new Error("the API server process ended before it listened");
    text += new TextDecoder().decode(value);
    if (text.includes("\n")) return text.slice(0, text.indexOf("\n"));
  }
};
const kubeconfig = JSON.parse(await firstLine()) as string;
const dir = mkdtempSync(join(tmpdir(), "fct-lat-"));
const stop = new AbortController();
try {
  const kc = new KubeConfig();
  kc.loadFromString(kubeconfig);
  const api = clusterApi(kc);
  const post = async (path: string, body: unknown) => {
    const r = await api.request("POST", path, { body });
    if (r.status >= 300) throw new Error(`POST ${path}: ${r.status}`);
  };
  await post("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: "firewall" } });
  const exec = (argv: readonly string[], o?: { stdin?: string }) => runCommand(["ip", "netns", "exec", ns, ...argv], o);
  const kernel = kernelReader({ netns: ns });
  if (!kernel) throw new Error("netlink is not available in this runtime");
  const controller = new Controller(
    { firewallName: "firewall", clusterPrefixes: [cidr("10.0.0.0/8")], privateVrf: 42, serviceIp: "10.0.1.1", rulesetFile: join(dir, "r.v4") },
    { api, nft: nftClient("nft", exec, kernel), shaper: { describe: () => [], reconcile: async () => ({ changed: false, problems: [] }) }, writeFile: writeFileAtomic, removeFile: removeFileIfRegular,
    events: new EventRecorder(api, { component: "bench", host: "bench" }), log: createLogger(process.env.FCT_LOG ?? "silent") },
    stop.signal,
  );
  const running = controller.run();
  while ((await api.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/firewalls.metal-stack.io")).status !== 200) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 200));
  await post("/apis/metal-stack.io/v1/namespaces/firewall/firewalls", { apiVersion: "metal-stack.io/v1", kind: "Firewall", metadata: { name: "firewall", namespace: "firewall" }, spec: { interval: "1h" } });
  for (let i = 0; i < N; i++) await post(CWNP, policy(`p-${i}`, i));
  const inMap = (map: string, name: string) => {
    try {
      return kernel.setElementCounters("inet", "firewall", map).some((e) => e.comment === `accept traffic for np ${name} tcp`);
    } catch {
      return false; // the table is not there yet
    }
  };
  while (!inMap("egress4_ports", `p-${N - 1}`)) await new Promise((r) => setTimeout(r, 50));
  await controller.idle();

  const samples: number[] = [];
  for (let k = 0; k < SAMPLES; k++) {
    const name = `sample-${k}`;
    const t0 = performance.now();
    await post(CWNP, policy(name, N + k, true));
    while (!inMap("egress6_ports", name)) await new Promise((r) => setTimeout(r, 1));
    samples.push(performance.now() - t0);
    await controller.idle();
  }
  // Edits (another IPv6 block: one element out, one in) and deletions of the same policies: until
  // the controller's transaction is in the kernel (its generation moves; nothing else commits here).
  const untilCommitted = async (request: () => Promise<void>): Promise<number> => {
    const before = kernel.generation();
    const t0 = performance.now();
    await request();
    while (kernel.generation() === before) await new Promise((r) => setTimeout(r, 1));
    const ms = performance.now() - t0;
    await controller.idle();
    return ms;
  };
  const edits: number[] = [];
  const deletions: number[] = [];
  for (let k = 0; k < SAMPLES; k++) {
    edits.push(await untilCommitted(async () => {
      const body = { spec: { egress: [{ to: [{ cidr: `198.${18 + ((N + k) >> 16)}.${((N + k) >> 8) & 255}.${(N + k) & 255}/32` }, { cidr: `2001:db8:fffe::${k.toString(16)}/128` }], ports: [{ port: 443 }, { protocol: "UDP", port: 53 }] }] } };
      const r = await api.request("PATCH", `${CWNP}/sample-${k}`, { body, contentType: "application/merge-patch+json" });
      if (r.status >= 300) throw new Error(`PATCH sample-${k}: ${r.status}`);
    }));
  }
  for (let k = 0; k < SAMPLES; k++) {
    deletions.push(await untilCommitted(async () => {
      const r = await api.request("DELETE", `${CWNP}/sample-${k}`);
      if (r.status >= 300) throw new Error(`DELETE sample-${k}: ${r.status}`);
    }));
    if (inMap("egress6_ports", `sample-${k}`)) throw new Error(`sample-${k} is still in the kernel after its deletion`);
  }
  const report = (what: string, xs: number[]) => {
    const slowest = xs.map((ms, k) => ({ ms, k })).sort((a, b) => b.ms - a.ms).slice(0, 5);
    const sorted = xs.toSorted((a, b) => a - b);
    const q = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
    console.log(`${what}, ${N} policies, ${xs.length} samples: p50 ${q(0.5).toFixed(0)} ms, p90 ${q(0.9).toFixed(0)} ms, p99 ${q(0.99).toFixed(0)} ms, max ${q(1).toFixed(0)} ms; slowest five ${slowest.map((x) => `${x.ms.toFixed(0)} (#${x.k})`).join(", ")} ms`);
  };
  report("event → elements in the kernel (created)", samples);
  report("policy edited → its transaction in the kernel", edits);
  report("policy deleted → its transaction in the kernel", deletions);
  console.log(`rss: ${(process.memoryUsage().rss / 1e6).toFixed(0)} MB (controller and bench in one process)`);
  stop.abort();
  await running;
} finally {
  stop.abort();
  apiserver.stdin.end();
  await apiserver.exited;
  rmSync(dir, { recursive: true, force: true });
  await runCommand(["ip", "netns", "del", ns]);
}
