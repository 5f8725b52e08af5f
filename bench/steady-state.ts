/**
 * Benchmark (SPEC §11): steady state of the built binary at N policies with a
 * 10 s interval and a 15 s scrape of both metrics endpoints — CPU share and
 * RSS over a measured window after it settled.
 * The whole bench runs inside a throwaway network namespace (it re-executes
 * itself there), so the controller — `dist/firewall-controller`, started as in
 * production — runs nft, tc and ip, and reads the kernel over netlink, in that
 * namespace; the API server (test/apiserver) runs in the bench's process.
 *
 *   ./node_modules/.bin/bun bench/steady-state.ts [policies=1000] [seconds=60]
 *
 * Needs root, nft, tc and a built dist/firewall-controller. With FCT_BENCH_PROFILE=<dir> the
 * controller runs from source under this Bun instead, writing a CPU profile (Chrome JSON and Markdown) into <dir>
 * when it ends: where the steady state's time goes. FCT_BENCH_FLAGS adds flags to the controller's
 * (`--drop-log=false`, say: what a part costs).
 * @module
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { runCommand } from "../lib/exec.ts";
import { clusterApi } from "../lib/kube/api.ts";
import { TestApiServer } from "../test/apiserver/server.ts";

const N = Number(process.argv[2] ?? 1000);
const SECONDS = Number(process.argv[3] ?? 60);
const ROOT = join(import.meta.dir, "..");
if (process.env.FCT_BENCH_NETNS === undefined) {
  const ns = `fct-steady-${randomBytes(3).toString("hex")}`;
  await runCommand(["ip", "netns", "add", ns]);
  try {
    await runCommand(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"]);
    const r = spawn("ip", ["netns", "exec", ns, process.execPath, ...process.argv.slice(1)], { stdio: "inherit", env: { ...process.env, FCT_BENCH_NETNS: ns } });
    await new Promise((resolve) => r.once("exit", resolve));
  } finally {
    await runCommand(["ip", "netns", "del", ns]);
  }
  process.exit(0);
}
const ports = { nftables: 20000 + Math.floor(Math.random() * 20000), node: 0 };
ports.node = ports.nftables + 1;
const dir = mkdtempSync(join(tmpdir(), "fct-steady-"));
const server = await new TestApiServer().start();
try {
  const kubeconfig = join(dir, "kubeconfig");
  writeFileSync(kubeconfig, server.kubeconfig());
  const kc = new KubeConfig();
  kc.loadFromString(server.kubeconfig());
  const api = clusterApi(kc);
  const post = async (path: string, body: unknown) => {
    const r = await api.request("POST", path, { body });
    if (r.status >= 300) throw new Error(`POST ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  };
  await post("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: "firewall" } });
  const profile = process.env.FCT_BENCH_PROFILE;
  const command = profile ? [process.execPath, "--cpu-prof", "--cpu-prof-md", `--cpu-prof-dir=${profile}`, join(ROOT, "main.ts")] : [join(ROOT, "dist/firewall-controller")];
  const child = spawn(command[0] as string, [...command.slice(1), "--kubeconfig", kubeconfig, "--private-vrf", "42", "--ruleset-file", join(dir, "r.v4"), "--health-addr", "127.0.0.1:0", "--log-level", "warn", "--enable-ids=false", "--state-dir", join(dir, "state"), "--nftables-metrics-addr", `127.0.0.1:${ports.nftables}`, "--node-metrics-addr", `127.0.0.1:${ports.node}`, ...(process.env.FCT_BENCH_FLAGS ?? "").split(" ").filter((f) => f !== "")], { stdio: ["ignore", "ignore", "inherit"] });
  while ((await api.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/firewalls.metal-stack.io")).status !== 200) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 500));
  await post("/apis/metal-stack.io/v1/namespaces/firewall/firewalls", { apiVersion: "metal-stack.io/v1", kind: "Firewall", metadata: { name: "firewall", namespace: "firewall" }, spec: { interval: "10s" } });
  for (let i = 0; i < N; i++) {
    await post("/apis/metal-stack.io/v1/namespaces/firewall/clusterwidenetworkpolicies", {
      apiVersion: "metal-stack.io/v1", kind: "ClusterwideNetworkPolicy", metadata: { name: `p-${i}`, namespace: "firewall" },
      spec: { egress: [{ to: [{ cidr: `198.${18 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32` }], ports: [{ port: 443 }, { protocol: "UDP", port: 53 }] }] },
    });
  }
  // Settle: the first reconciles, the first verification.
  await new Promise((r) => setTimeout(r, 20_000));
  const hz = 100; // USER_HZ on Linux
  // utime+stime of the controller and the nft/tc/ip processes it waited for (cutime+cstime).
  const cpu = () => {
    const f = readFileSync(`/proc/${child.pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / hz;
  };
  /** CPU seconds by thread name (main, the collector's, the runtime's pools), and of the children. */
  const threads = () => {
    const out = new Map<string, number>();
    const add = (k: string, v: number) => out.set(k, (out.get(k) ?? 0) + v);
    for (const tid of readdirSync(`/proc/${child.pid}/task`)) {
      try {
        const f = readFileSync(`/proc/${child.pid}/task/${tid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
        const name = readFileSync(`/proc/${child.pid}/task/${tid}/comm`, "utf8").trim();
        add(String(tid) === String(child.pid) ? "main" : name, (Number(f[11]) + Number(f[12])) / hz);
      } catch {
        // the thread ended between listing and reading
      }
    }
    const f = readFileSync(`/proc/${child.pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    add("children (nft, tc, ip)", (Number(f[13]) + Number(f[14])) / hz);
    return out;
  };
  const th0 = threads();
  const c0 = cpu();
  const t0 = performance.now();
  let scrapes = 0;
  let bytes = 0;
  const scrape = async () => {
    for (const port of [ports.nftables, ports.node]) {
      const r = await fetch(`http://127.0.0.1:${port}/metrics`);
      if (r.status !== 200) throw new Error(`scrape of :${port}: ${r.status}`);
      bytes += (await r.text()).length;
    }
    scrapes++;
  };
  await scrape();
  const timer = setInterval(() => void scrape(), 15_000);
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  clearInterval(timer);
  const used = cpu() - c0;
  const th1 = threads();
  const wall = (performance.now() - t0) / 1000;
  const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"))?.[1]) / 1024;
  console.log(`steady state, ${N} policies, interval 10s, ${scrapes} scrapes of both endpoints (every 15 s, ${(bytes / scrapes / 1e6).toFixed(1)} MB each), ${wall.toFixed(0)} s measured: ${((used / wall) * 100).toFixed(2)} % of one core (controller plus the nft/tc/ip it ran), RSS ${rss.toFixed(0)} MB`);
  // Threads that ended during the window are missing from the split (not from the total).
  const split = [...th1].map(([k, v]) => [k, v - (th0.get(k) ?? 0)] as const).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]);
  console.log(`  by thread: ${split.map(([k, v]) => `${k} ${((v / wall) * 100).toFixed(2)} %`).join(", ")}`);
  child.kill("SIGTERM");
  await new Promise((r) => child.once("exit", r));
} finally {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}
