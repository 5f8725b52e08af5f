/**
 * A throw-away network of namespaces for traffic tests (SPEC §12):
 *
 * ```text
 *  cluster host                 firewall                          external host
 *  eth0 ──────────── vlan42 [forwarding] vrf104009 ──────────── eth0
 *  10.0.1.2/24        10.0.1.1/24         192.0.2.1/24           192.0.2.2/24 (+ 198.51.100.10,
 *  fd00:66::2/64      fd00:66::1/64       2001:db8:1::1/64       2001:db8:1::2/64  203.0.113.5, ...)
 * ```
 *
 * Every namespace is named `fct-<role>-<6 hex>` so parallel runs never collide,
 * the veth pairs are created directly inside the namespaces (the host's own
 * namespace is never touched, not even briefly), forwarding is switched on only
 * inside the firewall namespace, and no namespace has a route that leaves the
 * topology. {@link Topology.destroy} (also run on process exit) kills what runs
 * in the namespaces and deletes them, which takes their sysctls and devices along.
 *
 * Traffic checks ({@link Topology.tcpConnect}, {@link Topology.udpExchange}) run
 * a tiny `node:`-only probe script under the current runtime, so they need no
 * `nc`/`socat`. SCTP checks are not offered: the test kernel has no SCTP
 * socket support (CONFIG_IP_SCTP is off), only conntrack's SCTP tracker.
 *
 * @example
 * ```ts
 * import { afterAll, beforeAll, describe, expect, test } from "bun:test";
 * import { createTopology, HARNESS_TOOLS, needs, type Topology } from "./topology.ts";
 *
 * const env = needs([...HARNESS_TOOLS, "nft"]);
 * describe.skipIf(env.skip)("forwarding", () => {
 *   let t: Topology;
 *   beforeAll(async () => { t = await createTopology(); });
 *   afterAll(() => t.destroy());
 *   test("cluster reaches the internet", async () => {
 *     expect(await t.tcpConnect("cluster", "203.0.113.5", 8080)).toBe(true);
 *   });
 * });
 * ```
 * @module
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, delimiter, join } from "node:path";
import ipaddr from "ipaddr.js";
import { type CommandResult, type ExecOptions, type Executor, runCommand } from "../../lib/exec.ts";

/** Debian packages a CI machine needs for the harness and the traffic tests built on it. */
export const APT_PACKAGES: readonly string[] = ["iproute2", "procps", "nftables", "iperf3"];

/** The three parts of the topology. */
export type Role = "cluster" | "firewall" | "external";

/** A role, or a full namespace name as found in {@link Topology.ns}. */
export type NsRef = Role | string;

/** True when the process can create namespaces and configure them. */
export function isRoot(): boolean {
  return typeof process.getuid === "function" && process.getuid() === 0;
}

/** Full path of an executable found on PATH (plus the sbin dirs root uses), or undefined. */
function findTool(tool: string): string | undefined {
  const executable = (path: string) => {
    try {
      accessSync(path, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  if (tool.includes("/")) return executable(tool) ? tool : undefined;
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/local/sbin", "/usr/sbin", "/sbin"];
  for (const dir of dirs) {
    if (dir !== "" && executable(join(dir, tool))) return join(dir, tool);
  }
  return undefined;
}

/**
 * Decides whether a test that needs root and `tools` can run. Where something is
 * missing it warns and says skip, except under `CI=true`, where it throws: on CI
 * a skipped traffic test would be a silent pass.
 *
 * @example
 * ```ts
 * import { describe } from "bun:test";
 * import { needs } from "./topology.ts";
 * describe.skipIf(needs(["ip", "tc", "iperf3"]).skip)("shaping", () => {});
 * ```
 */
export function needs(tools: readonly string[]): { skip: boolean; reason?: string } {
  const missingTools = tools.filter((tool) => findTool(tool) === undefined);
  const missing = [...(isRoot() ? [] : ["root privileges"]), ...missingTools.map((tool) => `\`${tool}\` on PATH`)];
  if (missing.length === 0) return { skip: false };
  const hint = missingTools.length > 0 ? ` (apt-get install ${APT_PACKAGES.join(" ")})` : "";
  const reason = `traffic test needs ${missing.join(", ")}${hint}`;
  if (process.env.CI === "true") throw new Error(`${reason}; CI=true, so this fails instead of skipping`);
  console.warn(`SKIPPING: ${reason}`);
  return { skip: true, reason };
}

/** What the harness itself runs: `ip` (namespaces, links), `sysctl` (forwarding, DAD), `ss` (waitForPort). */
export const HARNESS_TOOLS: readonly string[] = ["ip", "sysctl", "ss"];

/**
 * {@link needs} for root, the {@link HARNESS_TOOLS} and `extraTools`, as a plain "skip?" boolean.
 *
 * @example
 * ```ts
 * import { describe } from "bun:test";
 * import { requireRootOrSkip } from "./topology.ts";
 * describe.skipIf(requireRootOrSkip(["nft"]))("ruleset in the kernel", () => {});
 * ```
 */
export function requireRootOrSkip(extraTools: readonly string[] = []): boolean {
  return needs([...HARNESS_TOOLS, ...extraTools]).skip;
}

/**
 * An executor that runs every command inside network namespace `ns`.
 *
 * @example
 * ```ts
 * import { runCommand } from "../../lib/exec.ts";
 * import { netnsExecutor } from "./topology.ts";
 * const inFirewall = netnsExecutor("fct-firewall-0a1b2c", runCommand);
 * await inFirewall(["tc", "-j", "qdisc", "show"]);
 * ```
 */
export function netnsExecutor(ns: string, base: Executor = runCommand): Executor {
  return (argv, options) => base(["ip", "netns", "exec", ns, ...argv], options);
}

/** Addresses of one side of a link. */
export interface DualStack {
  readonly v4: string;
  readonly v6: string;
}

export interface TopologyOptions {
  /**
   * More host addresses for the external namespace, from the documentation and
   * benchmark ranges only (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
   * 198.18.0.0/15, 2001:db8::/32); the firewall gets a route where needed.
   */
  readonly externalAddresses?: readonly string[];
  /** More host addresses for the cluster namespace, inside 10.0.0.0/8 or fd00::/8. */
  readonly clusterAddresses?: readonly string[];
  /** Runs every command; defaults to {@link runCommand}. */
  readonly exec?: Executor;
}

export interface CheckOptions {
  /** How long the client waits for an answer; a dropped flow fails after this. Default 1000. */
  readonly timeoutMs?: number;
  /** Source address for the client (must be one of `fromNs`'s addresses). */
  readonly sourceAddr?: string;
}

/** A process started with {@link Topology.start}. */
export interface Background {
  /** Settles when the process exits. */
  readonly done: Promise<CommandResult>;
  /** SIGTERM (SIGKILL after a grace period), then its result. */
  stop(): Promise<CommandResult>;
}

export interface Topology {
  /** The random part shared by all three namespace names. */
  readonly suffix: string;
  readonly ns: { readonly cluster: string; readonly firewall: string; readonly external: string };
  /** Interface names, by where they sit. */
  readonly ifaces: {
    readonly cluster: "eth0";
    readonly firewallCluster: "vlan42";
    readonly firewallExternal: "vrf104009";
    readonly external: "eth0";
  };
  readonly addr: {
    readonly cluster: DualStack;
    readonly firewallCluster: DualStack;
    readonly firewallExternal: DualStack;
    readonly external: DualStack;
    /** 198.51.100.10, 203.0.113.5, 203.0.113.200, 2001:db8:2::10 and the ones asked for. */
    readonly externalExtra: readonly string[];
    readonly clusterExtra: readonly string[];
  };
  /** The namespace name of a role (a full name passes through). */
  nsName(ref: NsRef): string;
  /** The namespace that holds `addr`, if any. */
  nsOf(addr: string): string | undefined;
  /** Runs argv inside the namespace (`ip netns exec <ns> ...`). */
  exec(ref: NsRef, argv: readonly string[], options?: ExecOptions): Promise<CommandResult>;
  /** An {@link Executor} bound to the namespace, for code under test. */
  executor(ref: NsRef): Executor;
  /** Starts a long-running process in the namespace; destroy() kills it if the test does not. */
  start(ref: NsRef, argv: readonly string[]): Background;
  /** Waits until something listens on `port` in the namespace; false on timeout. */
  waitForPort(ref: NsRef, port: number, options?: { proto?: "tcp" | "udp"; timeoutMs?: number }): Promise<boolean>;
  /** One TCP connection from `fromNs` to a one-shot listener on `toAddr:port`: did it get through? */
  tcpConnect(fromNs: NsRef, toAddr: string, port: number, options?: CheckOptions): Promise<boolean>;
  /** One datagram from `fromNs` to `toAddr:port` and the listener's reply: did it come back? */
  udpExchange(fromNs: NsRef, toAddr: string, port: number, options?: CheckOptions): Promise<boolean>;
  /** Kills everything in the namespaces and deletes them. Safe to call more than once. */
  destroy(): Promise<void>;
}

// Listener and client in one file so every check costs two short runtime starts.
// It is plain JavaScript with node: imports only, so Bun, Node and Deno all run it.
const PROBE_SOURCE = `
import net from "node:net";
import dgram from "node:dgram";
import fs from "node:fs";
const [mode, proto, addr, portText, timeoutText, readyFile, sourceAddr] = process.argv.slice(2);
const port = Number(portText);
const finish = (code) => process.exit(code);
setTimeout(() => finish(2), Number(timeoutText));
const ready = () => fs.writeFileSync(readyFile, String(process.pid));
const family = addr.includes(":") ? "udp6" : "udp4";
if (mode === "listen" && proto === "tcp") {
  const server = net.createServer((s) => {
    s.on("error", () => {});
    s.end("fct-ok\\n", () => setTimeout(() => finish(0), 50));
  });
  server.on("error", (e) => { console.error(String(e)); finish(3); });
  server.listen({ host: addr, port, exclusive: true }, ready);
} else if (mode === "listen") {
  const sock = dgram.createSocket(family);
  sock.on("error", (e) => { console.error(String(e)); finish(3); });
  sock.on("message", (msg, from) => sock.send(msg, from.port, from.address, () => finish(0)));
  sock.bind(port, addr, ready);
} else if (proto === "tcp") {
  let got = "";
  const s = net.connect({ host: addr, port, localAddress: sourceAddr || undefined });
  s.on("data", (d) => { got += d; if (got.includes("fct-ok")) finish(0); });
  s.on("error", () => finish(1));
  s.on("close", () => finish(got.includes("fct-ok") ? 0 : 1));
} else {
  const sock = dgram.createSocket(family);
  const payload = Buffer.from("fct-ping-" + process.pid);
  sock.on("error", () => finish(1));
  sock.on("message", (msg) => { if (msg.equals(payload)) finish(0); });
  sock.bind({ address: sourceAddr || undefined, port: 0 }, () => {
    sock.connect(port, addr, () => {
      // A lost first datagram must not fail the check: resend until the timeout.
      const send = () => sock.send(payload, () => {});
      send();
      setInterval(send, 200);
    });
  });
}
`;

const ROUTED_EXTERNAL_V4 = ["198.51.100.0/24", "203.0.113.0/24", "198.18.0.0/15"];
const ROUTED_EXTERNAL_V6 = ["2001:db8:2::/48"];
const EXTERNAL_ALLOWED = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "198.18.0.0/15", "2001:db8::/32"];
const CLUSTER_ALLOWED = ["10.0.0.0/8", "fd00::/8"];
const DEFAULT_EXTERNAL_EXTRA = ["198.51.100.10", "203.0.113.5", "203.0.113.200", "2001:db8:2::10"];

const normalise = (addr: string): string => ipaddr.process(addr).toNormalizedString();
const isV6 = (addr: string): boolean => ipaddr.process(addr).kind() === "ipv6";
const within = (addr: string, cidrs: readonly string[]): boolean => {
  const a = ipaddr.process(addr);
  return cidrs.some((c) => {
    const [net, len] = ipaddr.parseCIDR(c);
    return net.kind() === a.kind() && a.match([net, len]);
  });
};

function checkAddresses(list: readonly string[], allowed: readonly string[], what: string): void {
  for (const a of list) {
    if (!ipaddr.isValid(a)) throw new Error(`${what} address ${JSON.stringify(a)} is not an IP address`);
    if (!within(a, allowed)) throw new Error(`${what} address ${a} is outside ${allowed.join(", ")}: tests never use real addresses`);
  }
}

// Topologies alive in this process, for the exit hook.
const live = new Set<{ namespaces: readonly string[]; dir: string }>();
let exitHookInstalled = false;

/**
 * Last-resort cleanup when the process exits without destroy() (crash, Ctrl-C).
 * An exit handler cannot await, so this one uses spawnSync instead of the
 * executor: the only place here that does.
 */
function cleanupSync(entry: { namespaces: readonly string[]; dir: string }): void {
  for (const ns of entry.namespaces) {
    const pids = spawnSync("ip", ["netns", "pids", ns], { encoding: "utf8" }).stdout ?? "";
    for (const pid of pids.split(/\s+/).filter(Boolean)) killQuietly(Number(pid), "SIGKILL");
    spawnSync("ip", ["netns", "del", ns]);
  }
  rmSync(entry.dir, { recursive: true, force: true });
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const entry of live) cleanupSync(entry);
    live.clear();
  });
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      for (const entry of live) cleanupSync(entry);
      live.clear();
      process.exit(signal === "SIGINT" ? 130 : 143);
    });
  }
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) return;
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `ok` every few milliseconds until it holds or `timeoutMs` passes. */
async function until(ok: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 5): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await ok()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(stepMs);
  }
}

async function must(exec: Executor, argv: readonly string[], stdin?: string): Promise<void> {
  const r = await exec(argv, stdin === undefined ? {} : { stdin });
  if (r.code !== 0) throw new Error(`topology: \`${argv.join(" ")}\` failed (exit ${r.code}): ${r.stderr.trim()}${stdin ? `\ninput:\n${stdin}` : ""}`);
}

/**
 * Builds the cluster — firewall — external topology and returns its handle.
 * On any failure what was built so far is removed before the error propagates.
 *
 * @example
 * ```ts
 * import { createTopology } from "./topology.ts";
 * const t = await createTopology({ externalAddresses: ["198.51.100.77"] });
 * try {
 *   console.log(await t.udpExchange("external", t.addr.cluster.v6, 5353));
 * } finally {
 *   await t.destroy();
 * }
 * ```
 */
export async function createTopology(options: TopologyOptions = {}): Promise<Topology> {
  const exec = options.exec ?? runCommand;
  const externalExtra = [...DEFAULT_EXTERNAL_EXTRA, ...(options.externalAddresses ?? [])];
  const clusterExtra = [...(options.clusterAddresses ?? [])];
  checkAddresses(externalExtra, EXTERNAL_ALLOWED, "external");
  checkAddresses(clusterExtra, CLUSTER_ALLOWED, "cluster");

  const suffix = randomBytes(3).toString("hex");
  const ns = { cluster: `fct-cluster-${suffix}`, firewall: `fct-firewall-${suffix}`, external: `fct-external-${suffix}` };
  const addr = {
    cluster: { v4: "10.0.1.2", v6: "fd00:66::2" },
    firewallCluster: { v4: "10.0.1.1", v6: "fd00:66::1" },
    firewallExternal: { v4: "192.0.2.1", v6: "2001:db8:1::1" },
    external: { v4: "192.0.2.2", v6: "2001:db8:1::2" },
    externalExtra,
    clusterExtra,
  };
  const ifaces = { cluster: "eth0", firewallCluster: "vlan42", firewallExternal: "vrf104009", external: "eth0" } as const;

  const owner = new Map<string, string>();
  for (const a of [addr.cluster.v4, addr.cluster.v6, ...clusterExtra]) owner.set(normalise(a), ns.cluster);
  for (const a of [addr.firewallCluster.v4, addr.firewallCluster.v6, addr.firewallExternal.v4, addr.firewallExternal.v6]) {
    owner.set(normalise(a), ns.firewall);
  }
  for (const a of [addr.external.v4, addr.external.v6, ...externalExtra]) owner.set(normalise(a), ns.external);

  const dir = mkdtempSync(join(tmpdir(), `fct-${suffix}-`));
  const probe = join(dir, "probe.mjs");
  writeFileSync(probe, PROBE_SOURCE);
  const entry = { namespaces: [ns.cluster, ns.firewall, ns.external], dir };
  live.add(entry);
  installExitHook();

  const nsName = (ref: NsRef): string => (ref === "cluster" || ref === "firewall" || ref === "external" ? ns[ref] : ref);
  const executor = (ref: NsRef): Executor => netnsExecutor(nsName(ref), exec);
  const running = new Set<Promise<CommandResult>>();
  let seq = 0;
  let destroying: Promise<void> | undefined;

  const runtime = (): string[] =>
    basename(process.execPath).startsWith("deno") ? [process.execPath, "run", "-A", probe] : [process.execPath, probe];

  const start = (ref: NsRef, argv: readonly string[]): Background => {
    const pidFile = join(dir, `pid-${++seq}`);
    // `ip netns exec` and `exec "$@"` both replace themselves, so the pid sh writes is the command's.
    const done = exec(["ip", "netns", "exec", nsName(ref), "sh", "-c", 'echo $$ > "$0"; exec "$@"', pidFile, ...argv], { timeoutMs: Number.POSITIVE_INFINITY });
    let settled = false;
    running.add(done);
    void done.finally(() => {
      settled = true;
      running.delete(done);
      rmSync(pidFile, { force: true });
    });
    return {
      done,
      async stop() {
        await until(() => settled || existsSync(pidFile), 2000);
        let pid = NaN;
        try {
          pid = Number(readFileSync(pidFile, "utf8").trim());
        } catch {
          // gone: the process has ended and cleaned up after itself
        }
        if (!settled) killQuietly(pid, "SIGTERM");
        const timer = setTimeout(() => killQuietly(pid, "SIGKILL"), 1000);
        try {
          return await done;
        } finally {
          clearTimeout(timer);
        }
      },
    };
  };

  const waitForPort: Topology["waitForPort"] = (ref, port, opts = {}) =>
    until(async () => {
      const flag = (opts.proto ?? "tcp") === "tcp" ? "-Hltn" : "-Hlun";
      const r = await exec(["ip", "netns", "exec", nsName(ref), "ss", flag, "sport", "=", `:${port}`]);
      return r.code === 0 && r.stdout.trim() !== "";
    }, opts.timeoutMs ?? 3000, 20);

  const check = async (proto: "tcp" | "udp", fromNs: NsRef, toAddr: string, port: number, opts: CheckOptions): Promise<boolean> => {
    const target = owner.get(normalise(toAddr));
    if (target === undefined) throw new Error(`topology: no namespace holds ${toAddr}; add it with externalAddresses/clusterAddresses`);
    const timeoutMs = opts.timeoutMs ?? 1000;
    const ready = join(dir, `ready-${++seq}`);
    const listener = start(target, [...runtime(), "listen", proto, toAddr, String(port), String(timeoutMs + 5000), ready]);
    let listenerExited = false;
    void listener.done.then(() => {
      listenerExited = true;
    });
    try {
      await until(() => listenerExited || existsSync(ready), 5000);
      if (!existsSync(ready)) {
        const r = listenerExited ? await listener.done : undefined;
        throw new Error(`topology: ${proto} listener on ${toAddr}:${port} in ${target} did not start: ${r?.stderr.trim() ?? "timeout"}`);
      }
      const client = await exec([
        "ip", "netns", "exec", nsName(fromNs),
        ...runtime(), "connect", proto, toAddr, String(port), String(timeoutMs), "-", opts.sourceAddr ?? "",
      ]);
      return client.code === 0;
    } finally {
      await listener.stop();
      rmSync(ready, { force: true });
    }
  };

  const destroy = (): Promise<void> => {
    destroying ??= (async () => {
      for (const name of entry.namespaces) {
        const r = await exec(["ip", "netns", "pids", name]);
        for (const pid of r.stdout.split(/\s+/).filter(Boolean)) killQuietly(Number(pid), "SIGKILL");
      }
      // Killed processes end at once; the bound only guards against one that ignores SIGKILL (stuck in the kernel).
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([Promise.allSettled([...running]), new Promise((resolve) => (timer = setTimeout(resolve, 2000)))]);
      clearTimeout(timer);
      const failures: string[] = [];
      for (const name of entry.namespaces) {
        const r = await exec(["ip", "netns", "del", name]);
        if (r.code !== 0 && !/No such file|not found|does not exist/i.test(r.stderr)) failures.push(`${name}: ${r.stderr.trim()}`);
      }
      rmSync(dir, { recursive: true, force: true });
      live.delete(entry);
      if (failures.length > 0) throw new Error(`topology: could not delete ${failures.join("; ")}`);
    })();
    return destroying;
  };

  const topology: Topology = {
    suffix,
    ns,
    ifaces,
    addr,
    nsName,
    nsOf: (a) => owner.get(normalise(a)),
    exec: (ref, argv, opts) => executor(ref)(argv, opts),
    executor,
    start,
    waitForPort,
    tcpConnect: (from, to, port, opts = {}) => check("tcp", from, to, port, opts),
    udpExchange: (from, to, port, opts = {}) => check("udp", from, to, port, opts),
    destroy,
  };

  try {
    for (const name of entry.namespaces) await must(exec, ["ip", "netns", "add", name]);
    for (const name of entry.namespaces) {
      // Before any interface exists, so every address (link-local too) skips DAD and is usable at once.
      await must(exec, [
        "ip", "netns", "exec", name, "sysctl", "-qw",
        "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0",
      ]);
    }
    await must(exec, ["ip", "netns", "exec", ns.firewall, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
    const batch = (name: string, lines: readonly string[]) => must(exec, ["ip", "-n", name, "-batch", "-"], `${lines.join("\n")}\n`);
    await batch(ns.firewall, [
      `link add ${ifaces.firewallCluster} type veth peer name ${ifaces.cluster} netns ${ns.cluster}`,
      `link add ${ifaces.firewallExternal} type veth peer name ${ifaces.external} netns ${ns.external}`,
      `address add ${addr.firewallCluster.v4}/24 dev ${ifaces.firewallCluster}`,
      `address add ${addr.firewallCluster.v6}/64 dev ${ifaces.firewallCluster} nodad`,
      `address add ${addr.firewallExternal.v4}/24 dev ${ifaces.firewallExternal}`,
      `address add ${addr.firewallExternal.v6}/64 dev ${ifaces.firewallExternal} nodad`,
      "link set lo up",
      `link set ${ifaces.firewallCluster} up`,
      `link set ${ifaces.firewallExternal} up`,
    ]);
    const hostAddr = (a: string) => (isV6(a) ? `address add ${a}/128 dev eth0 nodad` : `address add ${a}/32 dev eth0`);
    await batch(ns.cluster, [
      `address add ${addr.cluster.v4}/24 dev eth0`,
      `address add ${addr.cluster.v6}/64 dev eth0 nodad`,
      ...clusterExtra.map(hostAddr),
      "link set lo up",
      "link set eth0 up",
      `route add default via ${addr.firewallCluster.v4} dev eth0`,
      `route add default via ${addr.firewallCluster.v6} dev eth0`,
    ]);
    await batch(ns.external, [
      `address add ${addr.external.v4}/24 dev eth0`,
      `address add ${addr.external.v6}/64 dev eth0 nodad`,
      ...externalExtra.map(hostAddr),
      "link set lo up",
      "link set eth0 up",
      `route add default via ${addr.firewallExternal.v4} dev eth0`,
      `route add default via ${addr.firewallExternal.v6} dev eth0`,
    ]);
    const covered = [...ROUTED_EXTERNAL_V4, ...ROUTED_EXTERNAL_V6, "192.0.2.0/24", "2001:db8:1::/64"];
    const clusterCovered = ["10.0.1.0/24", "fd00:66::/64"];
    const via = (a: string, side: DualStack, dev: string) =>
      `route add ${a}/${isV6(a) ? 128 : 32} via ${isV6(a) ? side.v6 : side.v4} dev ${dev}`;
    await batch(ns.firewall, [
      ...ROUTED_EXTERNAL_V4.map((c) => `route add ${c} via ${addr.external.v4} dev ${ifaces.firewallExternal}`),
      ...ROUTED_EXTERNAL_V6.map((c) => `route add ${c} via ${addr.external.v6} dev ${ifaces.firewallExternal}`),
      ...externalExtra.filter((a) => !within(a, covered)).map((a) => via(a, addr.external, ifaces.firewallExternal)),
      ...clusterExtra.filter((a) => !within(a, clusterCovered)).map((a) => via(a, addr.cluster, ifaces.firewallCluster)),
    ]);
  } catch (e) {
    await destroy().catch(() => {});
    throw e;
  }
  return topology;
}

/**
 * Runs `fn` with a fresh topology and always destroys it afterwards.
 *
 * @example
 * ```ts
 * import { withTopology } from "./topology.ts";
 * const ok = await withTopology((t) => t.tcpConnect("external", t.addr.cluster.v4, 80));
 * ```
 */
export async function withTopology<T>(fn: (t: Topology) => Promise<T>, options?: TopologyOptions): Promise<T> {
  const t = await createTopology(options);
  try {
    return await fn(t);
  } finally {
    await t.destroy();
  }
}
