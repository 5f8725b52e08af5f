/**
 * Side by side with the real node_exporter 1.5 (Debian's prometheus-node-exporter):
 * both run inside a fresh network namespace (only an idle lo), are scraped,
 * and every family of ours must have node_exporter's name, TYPE, HELP and
 * label names, with equal values where they cannot differ.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitUntil } from "../wait-until.ts";

const NODE_EXPORTER = "/usr/bin/prometheus-node-exporter";
const NS = `fct-node-${process.pid}`;
/** The namespace is fresh, so nothing else listens there. */
const PORT = 19100;
const canRun = existsSync(NODE_EXPORTER) && process.getuid?.() === 0 && spawnSync("ip", ["-V"]).status === 0;

interface Family {
  help: string;
  type: string;
  series: { labels: Record<string, string>; value: number }[];
}

/** Enough of the text format for both expositions: HELP, TYPE and samples with quoted label values. */
function parseExposition(text: string): Map<string, Family> {
  const out = new Map<string, Family>();
  const fam = (name: string) => out.get(name) ?? out.set(name, { help: "", type: "", series: [] }).get(name)!;
  for (const line of text.split("\n")) {
    let m: RegExpMatchArray | null;
    if ((m = line.match(/^# HELP (\S+) (.*)$/))) fam(m[1]!).help = m[2]!;
    else if ((m = line.match(/^# TYPE (\S+) (\S+)$/))) fam(m[1]!).type = m[2]!;
    else if ((m = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/))) {
      const labels: Record<string, string> = {};
      for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
      fam(m[1]!).series.push({ labels, value: Number(m[3]) });
    }
  }
  return out;
}

const inNs = (argv: string[]) => spawnSync("ip", ["netns", "exec", NS, ...argv], { encoding: "utf8" });
const scrapeExporter = () => inNs(["curl", "-sf", "--max-time", "5", `http://127.0.0.1:${PORT}/metrics`]);

let exporter: ChildProcess | undefined;
let ours = new Map<string, Family>();
let theirs = new Map<string, Family>();

describe.skipIf(!canRun)("against the real node_exporter 1.5", () => {
  beforeAll(async () => {
    spawnSync("ip", ["netns", "del", NS]);
    expect(spawnSync("ip", ["netns", "add", NS]).status).toBe(0);
    expect(inNs(["ip", "link", "set", "lo", "up"]).status).toBe(0);
    exporter = spawn("ip", [
      "netns", "exec", NS, NODE_EXPORTER, `--web.listen-address=127.0.0.1:${PORT}`,
      "--collector.disable-defaults", "--collector.cpu", "--collector.loadavg", "--collector.meminfo", "--collector.filesystem",
      "--collector.netdev", "--collector.stat", "--collector.time", "--collector.uname", "--collector.conntrack",
      "--collector.netdev.device-exclude=",
      "--collector.filesystem.mount-points-exclude=^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)",
    ], { stdio: "ignore" });
    await waitUntil("node_exporter's port", async () => scrapeExporter().status === 0);
    // Ours first, then theirs: lo then only differs by the one scrape's bytes, which node_exporter counts and we did not see.
    const script = join(mkdtempSync(join(tmpdir(), "fct-node-")), "scrape.ts");
    writeFileSync(script, `import { nodeRegistry } from ${JSON.stringify(join(import.meta.dir, "../../lib/metrics/node.ts"))};\nprocess.stdout.write(await nodeRegistry().metrics());\n`);
    const o = inNs([process.execPath, script]);
    expect(o.status).toBe(0);
    ours = parseExposition(o.stdout);
    const t = scrapeExporter();
    expect(t.status).toBe(0);
    theirs = parseExposition(t.stdout);
  });

  afterAll(async () => {
    // Only the process we started: `ip netns exec` execs node_exporter in place, so this pid is node_exporter.
    if (exporter !== undefined && exporter.exitCode === null) {
      const exited = new Promise((r) => exporter!.once("exit", r));
      exporter.kill("SIGTERM");
      await exited; // reaped before the namespace goes
    }
    spawnSync("ip", ["netns", "del", NS]);
  });

  test("every family: same name, TYPE, HELP, label names per series", () => {
    expect(ours.size).toBe(26); // cpu 1, load 3, memory 5, filesystem 4 (with device_error), network 8, boot, time, uname, conntrack 2
    for (const [name, f] of ours) {
      const t = theirs.get(name);
      expect({ name, present: t !== undefined }).toEqual({ name, present: true });
      expect({ name, help: f.help, type: f.type }).toEqual({ name, help: t!.help, type: t!.type });
      const names = (fam: Family) => [...new Set(fam.series.map((s) => Object.keys(s.labels).sort().join(",")))];
      expect({ name, labels: names(f) }).toEqual({ name, labels: names(t!) });
      expect({ name, count: f.series.length }).toEqual({ name, count: t!.series.length });
    }
  });

  const one = (m: Map<string, Family>, name: string) => m.get(name)!.series.map((s) => s.value);
  const keyed = (m: Map<string, Family>, name: string) =>
    Object.fromEntries(m.get(name)!.series.map((s) => [JSON.stringify(Object.entries(s.labels).sort()), s.value]));

  test.each(["node_memory_MemTotal_bytes", "node_boot_time_seconds", "node_nf_conntrack_entries_limit"])("%s is equal", (name) => {
    expect(one(ours, name)).toEqual(one(theirs, name));
  });

  test("uname labels are equal", () => {
    expect(ours.get("node_uname_info")!.series).toEqual(theirs.get("node_uname_info")!.series);
  });

  test("the same CPUs and modes", () => {
    expect(Object.keys(keyed(ours, "node_cpu_seconds_total")).sort()).toEqual(Object.keys(keyed(theirs, "node_cpu_seconds_total")).sort());
  });

  test("filesystems: the same mounts and sizes", () => {
    expect(keyed(ours, "node_filesystem_size_bytes")).toEqual(keyed(theirs, "node_filesystem_size_bytes"));
    expect(keyed(ours, "node_filesystem_device_error")).toEqual(keyed(theirs, "node_filesystem_device_error"));
  });

  test("network: only lo; errors and drops equal, bytes and packets differ by at most the one scrape", () => {
    for (const dir of ["receive", "transmit"]) {
      for (const stat of ["errs", "drop"]) expect(keyed(ours, `node_network_${dir}_${stat}_total`)).toEqual(keyed(theirs, `node_network_${dir}_${stat}_total`));
      for (const [stat, slack] of [["bytes", 65_536], ["packets", 64]] as const) {
        const name = `node_network_${dir}_${stat}_total`;
        expect(Object.keys(keyed(ours, name))).toEqual(['[["device","lo"]]']);
        const [o, t] = [one(ours, name)[0]!, one(theirs, name)[0]!];
        expect({ name, inRange: t >= o && t - o <= slack }).toEqual({ name, inRange: true });
      }
    }
  });

  test("time within a minute of node_exporter's", () => {
    expect(Math.abs(one(ours, "node_time_seconds")[0]! - one(theirs, "node_time_seconds")[0]!)).toBeLessThan(60);
  });
});
