/**
 * Benchmark (SPEC §11): the drop log's parse + ship rate. Kernel-format records are appended to a
 * file standing in for /dev/kmsg at a steady rate (the kernel's own rate limit is 10/s per rule,
 * so this measures our pipeline, not the kernel); the real reader, parser, queue and gRPC shipper
 * (mutual TLS) send them to a droptailer server in a process of its own (as in production, its
 * work is not ours). `FCT_BENCH_SERVER` picks it: `go` (default), bench/droptailer-go/ on grpc-go
 * as the real droptailer; `node`, bench/droptailer-node-server.ts on Node.js's HTTP/2 (nghttp2);
 * `grpc-js`, the test server under Bun (bench/droptailer-process.ts). The last two cannot take
 * 20,000 pushes a second on this machine (~8,000 and ~14,000). Judged by: every event arrives, none dropped from
 * the queue, at the offered rate; CPU is this process's alone.
 *
 *   ./node_modules/.bin/bun bench/drop-log.ts [events/s=20000] [seconds=5]
 *
 * Needs openssl; the default server needs Debian's golang-go and golang-google-grpc-dev.
 * @module
 */
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DropLog } from "../lib/droptailer/drop-log.ts";
import { droptailerTarget } from "../lib/droptailer/target.ts";
import { makePki } from "../test/droptailer/server.ts";

const RATE = Number(process.argv[2] ?? 20_000);
const SECONDS = Number(process.argv[3] ?? 5);
const TICK_MS = 50;

const dir = mkdtempSync(join(tmpdir(), "fct-droplog-bench-"));
const kind = process.env.FCT_BENCH_SERVER ?? "go";
const grpcJs = kind === "grpc-js";
const pki = await makePki(join(dir, "pki"));
const build = (cmd: string[], env?: Record<string, string>, cwd = import.meta.dir) => {
  const r = Bun.spawnSync(cmd, { cwd, ...(env ? { env: { ...process.env, ...env } } : {}) });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed: ${r.stderr}`);
};
let command: string[];
let serverName: string;
if (kind === "go") {
  // The interop test's server (test/droptailer/go-server/), GOPATH mode: no module download.
  build(["go", "build", "-o", join(dir, "droptailer-go"), "."], { GO111MODULE: "off", GOPATH: "/usr/share/gocode", GOCACHE: join(tmpdir(), "fct-gocache"), GOFLAGS: "" }, join(import.meta.dir, "../test/droptailer/go-server"));
  command = [join(dir, "droptailer-go"), join(dir, "pki")];
  serverName = `grpc-go (${Bun.spawnSync(["go", "version"]).stdout.toString().trim()})`;
} else if (kind === "node") {
  build([process.execPath, "build", "--target=node", "droptailer-node-server.ts", "--outfile", join(dir, "server.mjs")]);
  command = ["node", join(dir, "server.mjs"), join(dir, "pki")];
  serverName = `node:http2 under Node.js ${Bun.spawnSync(["node", "--version"]).stdout.toString().trim()}`;
} else if (grpcJs) {
  command = [process.execPath, join(import.meta.dir, "droptailer-process.ts"), join(dir, "pki")];
  serverName = "grpc-js under Bun";
} else throw new Error(`FCT_BENCH_SERVER must be go, node or grpc-js, not ${kind}`);
const child = Bun.spawn(command, { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
const reader = child.stdout.getReader();
let buffered = "";
/** The child's next line of output. */
async function nextLine(): Promise<string> {
  for (;;) {
    const nl = buffered.indexOf("\n");
    if (nl >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      return line;
    }
    const { done, value } = await reader.read();
    if (done) throw new Error("the droptailer process ended");
    buffered += new TextDecoder().decode(value);
  }
}
const hello = JSON.parse(await nextLine()) as { port: number; ca?: string; cert?: string; key?: string };
const counts = async (): Promise<{ received: number; distinct: number }> => {
  child.stdin.write("count\n");
  child.stdin.flush();
  return JSON.parse(await nextLine()) as { received: number; distinct: number };
};
const server = { port: hello.port };
writeFileSync(join(dir, "boot_id"), "3f1c5e2a-9b8d-4c7e-a1f0-0123456789ab\n");
writeFileSync(join(dir, "uptime"), "7000.00 100.00\n");
const kmsg = join(dir, "kmsg");
writeFileSync(kmsg, "");
const stop = new AbortController();
try {
  const log = new DropLog({ stateDir: join(dir, "state"), signal: stop.signal, port: server.port, kmsg: { path: kmsg, bootIdPath: join(dir, "boot_id"), uptimePath: join(dir, "uptime"), pollMs: 5 } });
  const secret = { metadata: { name: "droptailer-client", namespace: "firewall" }, data: grpcJs
    // That server made its own PKI (in the same directory) and says which.
    ? { "ca.crt": hello.ca, "tls.crt": hello.cert, "tls.key": hello.key }
    : { "ca.crt": pki.ca.toString("base64"), "tls.crt": pki.clientCert.toString("base64"), "tls.key": pki.clientKey.toString("base64") } };
  const t = droptailerTarget(secret, [{ metadata: { name: "droptailer-0", namespace: "firewall" }, status: { phase: "Running", podIP: "127.0.0.1" } }]);
  if (!t.ok) throw new Error(t.reason);
  log.setTarget(t.target);
  const running = log.run();
  await log.ready;

  const total = RATE * SECONDS;
  const perTick = Math.round((RATE * TICK_MS) / 1000);
  const line = (seq: number) =>
    `4,${seq},${6_000_000_000 + seq},-;nftables-firewall-dropped: IN=vrf104009 OUT=vlan42 MAC=aa:bb:cc:dd:ee:ff SRC=198.51.100.${seq % 250} DST=10.0.1.80 LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=${seq % 65536} DF PROTO=TCP SPT=${1024 + (seq % 60000)} DPT=443 WINDOW=64240 RES=0x00 SYN URGP=0\n`;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let sent = 0;
  let maxQueue = 0;
  while (sent < total) {
    const due = Math.min(total, Math.round(((performance.now() - t0) / 1000) * RATE) + perTick);
    let chunk = "";
    for (; sent < due; sent++) chunk += line(sent + 1);
    if (chunk) appendFileSync(kmsg, chunk);
    maxQueue = Math.max(maxQueue, log.status().queued);
    await new Promise((r) => setTimeout(r, TICK_MS));
  }
  const offeredS = (performance.now() - t0) / 1000;
  // Until all arrived, or nothing more arrived for a while (the rest was dropped).
  let lastCount = -1;
  let lastAt = performance.now();
  let at = await counts();
  while (at.received < total && performance.now() - lastAt < 3000) {
    if (at.received !== lastCount) {
      lastCount = at.received;
      lastAt = performance.now();
    }
    maxQueue = Math.max(maxQueue, log.status().queued);
    await new Promise((r) => setTimeout(r, 20));
    at = await counts();
  }
  const doneS = ((at.received < total ? lastAt : performance.now()) - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const s = log.status();
  console.log(`server: ${serverName}`);
  console.log(`offered ${total} events at ${RATE}/s over ${offeredS.toFixed(1)} s; received ${at.received} (${at.distinct} distinct) after ${doneS.toFixed(1)} s: ${(at.received / doneS).toFixed(0)} events/s end to end`);
  console.log(`queue: shipped ${s.counters.shipped}, dropped ${s.counters.dropped}, retried ${s.counters.retried}, at most ${maxQueue} waiting; CPU of this process (reader, parser, queue, shipper): ${((cpu.user + cpu.system) / 1000 / doneS / 10).toFixed(0)} % of one core`);
  console.log(at.received === total && s.counters.dropped === 0 ? "no loss" : "LOSS");
  stop.abort();
  await running;
} finally {
  stop.abort();
  child.stdin.end();
  await child.exited;
  rmSync(dir, { recursive: true, force: true });
}
