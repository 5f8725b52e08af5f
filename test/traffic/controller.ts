/**
 * Helpers for the real-traffic tests: run the controller CLI inside the
 * firewall namespace of a {@link Topology}, build manifests, read nftables
 * state there, and check reachability in batches.
 *
 * Every command here runs in a namespace of the topology (or in a fresh
 * anonymous one via `unshare -n`), never in the host's own network namespace.
 *
 * @example
 * ```ts
 * import { createTopology } from "../netns/topology.ts";
 * import { controller, policy } from "./controller.ts";
 * const t = await createTopology();
 * const fc = controller(t);
 * const r = await fc.run([policy("allow-web", { egress: [{ to: [{ cidr: "203.0.113.0/24" }], ports: [{ port: 443 }] }] })]);
 * console.log(r.code, r.stderr);
 * fc.cleanup();
 * await t.destroy();
 * ```
 * @module
 */
import { ownerCounts } from "../owners.ts";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join, resolve } from "node:path";
import YAML from "yaml";
import type { CommandResult } from "../../lib/exec.ts";
import type { NsRef, Topology } from "../netns/topology.ts";

/** The project root (this file is test/traffic/controller.ts). */
export const ROOT = resolve(import.meta.dir, "..", "..");
export const BINARY = join(ROOT, "dist", "firewall-controller");
export const ICMP_PROBE = join(ROOT, "test", "fixtures", "traffic", "icmp_echo.py");

/** The flags every run gets (SPEC §5); the ruleset file always lives in a temp dir. */
export const CLUSTER_PREFIXES = "10.0.0.0/8,fd00:66::/64";
export const PRIVATE_VRF = "42";

/**
 * argv prefix that runs the controller: the compiled binary when it exists;
 * outside CI the sources under the current runtime as a fallback. Under
 * `CI=true` a missing binary is a failure (CI builds it before the tests).
 */
export function controllerArgv(): string[] {
  if (existsSync(BINARY)) return [BINARY];
  if (process.env.CI === "true") {
    throw new Error(`${BINARY} is missing; CI=true runs ./build.sh before the tests, so this is a failure`);
  }
  console.warn(`NOTE: ${BINARY} not built (./build.sh); running main.ts under ${process.execPath} instead`);
  return [process.execPath, join(ROOT, "main.ts")];
}

/** Full path of a tool on PATH (plus root's sbin dirs), or undefined. */
export function which(tool: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/local/sbin", "/usr/sbin", "/sbin"];
  for (const d of dirs) {
    if (d === "") continue;
    const p = join(d, tool);
    if (existsSync(p)) return p;
  }
  return undefined;
}

export interface RunOptions {
  readonly dryRun?: boolean;
  /** More flags after the standard ones. */
  readonly args?: readonly string[];
  /** Namespace to run in; default the topology's firewall. */
  readonly ns?: NsRef;
}

export interface Controller {
  /** The temp dir holding manifests and the ruleset file. */
  readonly dir: string;
  /** `--ruleset-file` of every run. */
  readonly rulesetFile: string;
  /** The argv prefix in use (binary or runtime + main.ts). */
  readonly argv: readonly string[];
  /**
   * Writes the manifests (each string one file, multi-document allowed) into a
   * fresh directory and runs `--once --manifests DIR` in the firewall namespace.
   */
  run(manifests: readonly string[], options?: RunOptions): Promise<CommandResult>;
  /** Like {@link run}, but fails the test with the controller's output unless the exit code is `code`. */
  apply(manifests: readonly string[], code?: number): Promise<CommandResult>;
  /** Removes the temp dir. */
  cleanup(): void;
}

/** A controller runner bound to one topology. */
export function controller(t: Topology): Controller {
  const argv = controllerArgv();
  const dir = mkdtempSync(join(tmpdir(), `fct-traffic-${t.suffix}-`));
  const rulesetFile = join(dir, "ruleset", "firewall-controller.v4");
  mkdirSync(join(dir, "ruleset"));
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  // Also when a test run dies without reaching afterAll (the harness does the same for namespaces).
  process.once("exit", cleanup);
  let seq = 0;
  const run: Controller["run"] = async (manifests, options = {}) => {
    const mdir = join(dir, `manifests-${++seq}`);
    mkdirSync(mdir);
    manifests.forEach((text, i) => writeFileSync(join(mdir, `${String(i).padStart(3, "0")}.yaml`), text));
    const flags = [
      "--once",
      "--manifests", mdir,
      "--private-vrf", PRIVATE_VRF,
      "--cluster-prefixes", CLUSTER_PREFIXES,
      "--ruleset-file", rulesetFile,
      // A Firewall's ipv4rulefile may only name a file in here (the default is /etc/nftables/).
      "--ruleset-dir", dir,
      ...(options.dryRun ? ["--dry-run"] : []),
      ...(options.args ?? []),
    ];
    return t.exec(options.ns ?? "firewall", [...argv, ...flags]);
  };
  return {
    dir,
    rulesetFile,
    argv,
    run,
    async apply(manifests, code = 0) {
      const r = await run(manifests);
      if (r.code !== code) {
        throw new Error(`controller exited ${r.code}, expected ${code}\nstderr:\n${r.stderr}\nstdout:\n${r.stdout}`);
      }
      return r;
    },
    cleanup: () => {
      process.removeListener("exit", cleanup);
      cleanup();
    },
  };
}

// ---------------------------------------------------------------- manifests

export interface PortSpec {
  protocol?: "TCP" | "UDP" | "SCTP";
  port?: number;
  endPort?: number;
}
export interface IPBlockSpec {
  cidr: string;
  except?: string[];
}
export interface PolicySpec {
  description?: string;
  egress?: { to?: IPBlockSpec[]; ports?: PortSpec[] }[];
  ingress?: { from?: IPBlockSpec[]; ports?: PortSpec[] }[];
}

/** A ClusterwideNetworkPolicy as YAML (namespace `firewall` unless told). */
export function policy(name: string, spec: PolicySpec, namespace = "firewall"): string {
  return YAML.stringify({
    apiVersion: "metal-stack.io/v1",
    kind: "ClusterwideNetworkPolicy",
    metadata: { name, namespace },
    spec,
  });
}

export interface ServiceOptions {
  namespace?: string;
  type?: string;
  ports: { port: number; protocol?: "TCP" | "UDP" }[];
  /** status.loadBalancer.ingress[].ip */
  ingressIps?: string[];
  loadBalancerIP?: string;
  sourceRanges?: string[];
}

/** A core/v1 Service as YAML (type LoadBalancer unless told). */
export function service(name: string, o: ServiceOptions): string {
  return YAML.stringify({
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, namespace: o.namespace ?? "default" },
    spec: {
      type: o.type ?? "LoadBalancer",
      ...(o.type === "ClusterIP" ? { clusterIP: "10.96.0.10" } : {}),
      ports: o.ports.map((p) => ({ port: p.port, protocol: p.protocol ?? "TCP", targetPort: p.port })),
      ...(o.loadBalancerIP ? { loadBalancerIP: o.loadBalancerIP } : {}),
      ...(o.sourceRanges ? { loadBalancerSourceRanges: o.sourceRanges } : {}),
    },
    status: { loadBalancer: { ingress: (o.ingressIps ?? []).map((ip) => ({ ip })) } },
  });
}

/** The Firewall object `firewall/firewall` as YAML. */
export function firewall(spec: { internalprefixes?: string[]; interval?: string; dryrun?: boolean; ipv4rulefile?: string }): string {
  return YAML.stringify({
    apiVersion: "metal-stack.io/v1",
    kind: "Firewall",
    metadata: { name: "firewall", namespace: "firewall" },
    spec: { interval: spec.interval ?? "10s", ...spec },
  });
}

// ---------------------------------------------------------------- nftables in the firewall namespace

async function must(t: Topology, ns: NsRef, argv: readonly string[], stdin?: string): Promise<string> {
  const r = await t.exec(ns, argv, stdin === undefined ? undefined : { stdin });
  if (r.code !== 0) throw new Error(`\`${argv.join(" ")}\` in ${t.nsName(ns)} failed (exit ${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** Runs nft in the firewall namespace and returns stdout (throws on failure). */
export const nft = (t: Topology, args: readonly string[], stdin?: string): Promise<string> => must(t, "firewall", ["nft", ...args], stdin);

export interface CounterValue {
  packets: number;
  bytes: number;
}

/** Named counters of `table inet firewall` in the firewall namespace. */
export async function counters(t: Topology): Promise<Record<string, CounterValue>> {
  const doc = JSON.parse(await nft(t, ["-j", "list", "counters", "table", "inet", "firewall"])) as {
    nftables?: { counter?: { name: string; table: string; packets: number; bytes: number } }[];
  };
  const out: Record<string, CounterValue> = {};
  for (const o of doc.nftables ?? []) {
    if (o.counter && o.counter.table === "firewall") out[o.counter.name] = { packets: o.counter.packets, bytes: o.counter.bytes };
  }
  // Policies and services count in their map elements: summed by the owner comment each carries.
  for (const [comment, c] of await ownerCounts((argv) => t.exec("firewall", argv))) out[comment] = c;
  return out;
}

export { ownerComment } from "../owners.ts";

/** Table names (`family name`) in the firewall namespace. */
export async function tables(t: Topology, ns: NsRef = "firewall"): Promise<string[]> {
  const out = await must(t, ns, ["nft", "list", "tables"]);
  return out.split("\n").map((l) => l.replace(/^table /, "").trim()).filter(Boolean).sort();
}

/** Deletes `table inet firewall` in the firewall namespace if it is there. */
export async function dropFirewallTable(t: Topology): Promise<void> {
  if ((await tables(t)).includes("inet firewall")) await nft(t, ["delete", "table", "inet", "firewall"]);
}

/**
 * Runs a shell script in a fresh, empty network namespace (`unshare -n`), which
 * disappears when the script ends: for "loads standalone" checks.
 */
export function inFreshNetns(script: string, env: Record<string, string> = {}): CommandResult {
  const r = spawnSync("unshare", ["-n", "sh", "-ec", script], { encoding: "utf8", env: { ...process.env, ...env } });
  return { code: r.status ?? 1, stdout: r.stdout ?? "", stderr: r.stderr ?? String(r.error ?? "") };
}

// ---------------------------------------------------------------- traffic

export type Proto = "tcp" | "udp" | "icmp";

export interface Check {
  readonly proto: Proto;
  readonly from: "cluster" | "external";
  readonly to: string;
  /** Ignored for icmp. */
  readonly port?: number;
  /** Source address on the sending side. */
  readonly src?: string;
  /** Should it get through? */
  readonly pass: boolean;
}

/** One ICMP echo exchange: `ping -c1 -W1` where installed, else a raw-socket probe under python3. */
export async function ping(t: Topology, from: NsRef, to: string, timeoutMs = 1000): Promise<boolean> {
  const p = which("ping");
  const argv = p
    ? [p, "-n", "-q", "-c1", `-W${Math.max(1, Math.round(timeoutMs / 1000))}`, to]
    : ["python3", ICMP_PROBE, to, String(timeoutMs)];
  const r = await t.exec(from, argv);
  if (r.code !== 0 && r.code !== 1) throw new Error(`icmp probe ${argv.join(" ")} failed to run (exit ${r.code}): ${r.stderr.trim()}`);
  return r.code === 0;
}

/** Tool needed for ICMP checks on this machine. */
export const icmpTool = (): string => (which("ping") ? "ping" : "python3");

const describeCheck = (c: Check): string =>
  `${c.proto} ${c.from}${c.src ? `(${c.src})` : ""} -> ${c.to}${c.proto === "icmp" ? "" : `:${c.port}`}`;

async function probe(t: Topology, c: Check, timeoutMs: number): Promise<boolean> {
  const opts = { timeoutMs, ...(c.src ? { sourceAddr: c.src } : {}) };
  if (c.proto === "icmp") return ping(t, c.from, c.to, timeoutMs);
  if (c.port === undefined) throw new Error(`${describeCheck(c)}: needs a port`);
  return c.proto === "tcp" ? t.tcpConnect(c.from, c.to, c.port, opts) : t.udpExchange(c.from, c.to, c.port, opts);
}

/**
 * Runs the checks (a few at a time; two checks on the same listener never
 * overlap) and returns one line per check whose outcome differs from `pass`,
 * so `expect(await mismatches(t, checks)).toEqual([])` names every failure.
 */
export async function mismatches(t: Topology, checks: readonly Check[], options: { concurrency?: number; timeoutMs?: number } = {}): Promise<string[]> {
  const concurrency = options.concurrency ?? 4;
  const timeoutMs = options.timeoutMs ?? 1000;
  const keyOf = (c: Check) => (c.proto === "icmp" ? `icmp ${c.from} ${c.to}` : `${c.proto} ${c.to} ${c.port}`);
  const busy = new Set<string>();
  const queue = checks.map((c, i) => ({ c, i }));
  const results: (boolean | undefined)[] = new Array(checks.length);
  const worker = async () => {
    for (;;) {
      const idx = queue.findIndex((q) => !busy.has(keyOf(q.c)));
      if (idx < 0) {
        if (queue.length === 0) return;
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      const [item] = queue.splice(idx, 1);
      if (!item) continue;
      const key = keyOf(item.c);
      busy.add(key);
      try {
        results[item.i] = await probe(t, item.c, timeoutMs);
      } finally {
        busy.delete(key);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, checks.length) }, worker));
  return checks.flatMap((c, i) =>
    results[i] === c.pass ? [] : [`${describeCheck(c)}: expected ${c.pass ? "to pass" : "to be blocked"}, ${results[i] ? "passed" : "was blocked"}`],
  );
}

/** Shorthands for building check lists. */
export const pass = (proto: Proto, from: Check["from"], to: string, port?: number, src?: string): Check => ({
  proto, from, to, pass: true, ...(port === undefined ? {} : { port }), ...(src ? { src } : {}),
});
export const block = (proto: Proto, from: Check["from"], to: string, port?: number, src?: string): Check => ({
  ...pass(proto, from, to, port, src), pass: false,
});

/** Reads a file as text (for persisted ruleset checks). */
export const readText = (path: string): string => readFileSync(path, "utf8");
