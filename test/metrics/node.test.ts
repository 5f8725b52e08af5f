/**
 * Table tests of the node_exporter-compatible registry on fixture files
 * (test/fixtures/proc stands in for /proc), the hung-mount bounds, and
 * promtool on the exposition.
 */
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { nodeRegistry, type StatfsFunction } from "../../lib/metrics/node.ts";
import { parseLoadavg } from "../../lib/metrics/node/loadavg.ts";
import { parseMeminfo } from "../../lib/metrics/node/meminfo.ts";
import { parseMounts, reportedMounts } from "../../lib/metrics/node/mounts.ts";
import { parseNetDev } from "../../lib/metrics/node/netdev.ts";
import { parseProcStat } from "../../lib/metrics/node/proc-stat.ts";
import { CpuTracker } from "../../lib/metrics/node/cpu-tracker.ts";
import { shareInFlight } from "../../lib/metrics/node/in-flight.ts";

const FIXTURE = join(import.meta.dir, "../fixtures/proc");
const OK = { bsize: 4096, blocks: 1000, bfree: 500, bavail: 400 };
const never = () => new Promise<never>(() => {});

/** Fixture mounts: /mnt/nfs hangs, /run is not permitted, the rest answer OK. */
const fixtureStatfs: StatfsFunction = async (p) => {
  if (p === "/mnt/nfs") return never();
  if (p === "/run") throw Object.assign(new Error("EACCES"), { code: "EACCES" });
  return OK;
};

const EXPECTED = `# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="user"} 1227.63
node_cpu_seconds_total{cpu="0",mode="nice"} 0
node_cpu_seconds_total{cpu="0",mode="system"} 291.89
node_cpu_seconds_total{cpu="0",mode="idle"} 3193.9
node_cpu_seconds_total{cpu="0",mode="iowait"} 4.11
node_cpu_seconds_total{cpu="0",mode="irq"} 0
node_cpu_seconds_total{cpu="0",mode="softirq"} 30.43
node_cpu_seconds_total{cpu="0",mode="steal"} 2.47
node_cpu_seconds_total{cpu="2",mode="user"} 1220.09
node_cpu_seconds_total{cpu="2",mode="nice"} 0.05
node_cpu_seconds_total{cpu="2",mode="system"} 262.2
node_cpu_seconds_total{cpu="2",mode="idle"} 3230.61
node_cpu_seconds_total{cpu="2",mode="iowait"} 2.91
node_cpu_seconds_total{cpu="2",mode="irq"} 0.07
node_cpu_seconds_total{cpu="2",mode="softirq"} 36.81
node_cpu_seconds_total{cpu="2",mode="steal"} 2.61

# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1 0.5

# HELP node_load5 5m load average.
# TYPE node_load5 gauge
node_load5 1.25

# HELP node_load15 15m load average.
# TYPE node_load15 gauge
node_load15 2.06

# HELP node_memory_MemTotal_bytes Memory information field MemTotal_bytes.
# TYPE node_memory_MemTotal_bytes gauge
node_memory_MemTotal_bytes 25275990016

# HELP node_memory_MemFree_bytes Memory information field MemFree_bytes.
# TYPE node_memory_MemFree_bytes gauge
node_memory_MemFree_bytes 21991874560

# HELP node_memory_MemAvailable_bytes Memory information field MemAvailable_bytes.
# TYPE node_memory_MemAvailable_bytes gauge
node_memory_MemAvailable_bytes 23993270272

# HELP node_memory_Buffers_bytes Memory information field Buffers_bytes.
# TYPE node_memory_Buffers_bytes gauge
node_memory_Buffers_bytes 26734592

# HELP node_memory_Cached_bytes Memory information field Cached_bytes.
# TYPE node_memory_Cached_bytes gauge
node_memory_Cached_bytes 2179719168

# HELP node_filesystem_size_bytes Filesystem size in bytes.
# TYPE node_filesystem_size_bytes gauge
node_filesystem_size_bytes{device="/dev/vda",fstype="ext4",mountpoint="/"} 4096000
node_filesystem_size_bytes{device="/dev/vda",fstype="ext4",mountpoint="/run/netns"} 4096000
node_filesystem_size_bytes{device="/dev/vdb",fstype="xfs",mountpoint="/srv/my data"} 4096000

# HELP node_filesystem_free_bytes Filesystem free space in bytes.
# TYPE node_filesystem_free_bytes gauge
node_filesystem_free_bytes{device="/dev/vda",fstype="ext4",mountpoint="/"} 2048000
node_filesystem_free_bytes{device="/dev/vda",fstype="ext4",mountpoint="/run/netns"} 2048000
node_filesystem_free_bytes{device="/dev/vdb",fstype="xfs",mountpoint="/srv/my data"} 2048000

# HELP node_filesystem_avail_bytes Filesystem space available to non-root users in bytes.
# TYPE node_filesystem_avail_bytes gauge
node_filesystem_avail_bytes{device="/dev/vda",fstype="ext4",mountpoint="/"} 1638400
node_filesystem_avail_bytes{device="/dev/vda",fstype="ext4",mountpoint="/run/netns"} 1638400
node_filesystem_avail_bytes{device="/dev/vdb",fstype="xfs",mountpoint="/srv/my data"} 1638400

# HELP node_filesystem_device_error Whether an error occurred while getting statistics for the given device.
# TYPE node_filesystem_device_error gauge
node_filesystem_device_error{device="/dev/vda",fstype="ext4",mountpoint="/"} 0
node_filesystem_device_error{device="tmpfs",fstype="tmpfs",mountpoint="/run"} 1
node_filesystem_device_error{device="/dev/vda",fstype="ext4",mountpoint="/run/netns"} 0
node_filesystem_device_error{device="/dev/vdb",fstype="xfs",mountpoint="/srv/my data"} 0
node_filesystem_device_error{device="nfs.example:/export",fstype="nfs4",mountpoint="/mnt/nfs"} 1

# HELP node_network_receive_bytes_total Network device statistic receive_bytes.
# TYPE node_network_receive_bytes_total counter
node_network_receive_bytes_total{device="lo"} 85441379
node_network_receive_bytes_total{device="eth0"} 860074215
node_network_receive_bytes_total{device="vlan.42"} 10

# HELP node_network_receive_packets_total Network device statistic receive_packets.
# TYPE node_network_receive_packets_total counter
node_network_receive_packets_total{device="lo"} 130358
node_network_receive_packets_total{device="eth0"} 27673
node_network_receive_packets_total{device="vlan.42"} 1

# HELP node_network_receive_errs_total Network device statistic receive_errs.
# TYPE node_network_receive_errs_total counter
node_network_receive_errs_total{device="lo"} 0
node_network_receive_errs_total{device="eth0"} 3
node_network_receive_errs_total{device="vlan.42"} 0

# HELP node_network_receive_drop_total Network device statistic receive_drop.
# TYPE node_network_receive_drop_total counter
node_network_receive_drop_total{device="lo"} 0
node_network_receive_drop_total{device="eth0"} 7
node_network_receive_drop_total{device="vlan.42"} 0

# HELP node_network_transmit_bytes_total Network device statistic transmit_bytes.
# TYPE node_network_transmit_bytes_total counter
node_network_transmit_bytes_total{device="lo"} 85441379
node_network_transmit_bytes_total{device="eth0"} 1234567
node_network_transmit_bytes_total{device="vlan.42"} 20

# HELP node_network_transmit_packets_total Network device statistic transmit_packets.
# TYPE node_network_transmit_packets_total counter
node_network_transmit_packets_total{device="lo"} 130358
node_network_transmit_packets_total{device="eth0"} 8910
node_network_transmit_packets_total{device="vlan.42"} 2

# HELP node_network_transmit_errs_total Network device statistic transmit_errs.
# TYPE node_network_transmit_errs_total counter
node_network_transmit_errs_total{device="lo"} 0
node_network_transmit_errs_total{device="eth0"} 1
node_network_transmit_errs_total{device="vlan.42"} 0

# HELP node_network_transmit_drop_total Network device statistic transmit_drop.
# TYPE node_network_transmit_drop_total counter
node_network_transmit_drop_total{device="lo"} 0
node_network_transmit_drop_total{device="eth0"} 2
node_network_transmit_drop_total{device="vlan.42"} 0

# HELP node_boot_time_seconds Node boot time, in unixtime.
# TYPE node_boot_time_seconds gauge
node_boot_time_seconds 1796114264

# HELP node_time_seconds System time in seconds since epoch (1970).
# TYPE node_time_seconds gauge
node_time_seconds 1700000000.123

# HELP node_uname_info Labeled system information as provided by the uname system call.
# TYPE node_uname_info gauge
node_uname_info{sysname="Linux",release="6.1.0-18-amd64",version="#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)",machine="x86_64",nodename="fw-1",domainname="(none)"} 1

# HELP node_nf_conntrack_entries Number of currently allocated flow entries for connection tracking.
# TYPE node_nf_conntrack_entries gauge
node_nf_conntrack_entries 17

# HELP node_nf_conntrack_entries_limit Maximum size of connection tracking table.
# TYPE node_nf_conntrack_entries_limit gauge
node_nf_conntrack_entries_limit 262144
`;

describe("nodeRegistry on fixtures", () => {
  test("the whole exposition, family by family", async () => {
    const r = nodeRegistry({ procPath: FIXTURE, now: () => 1_700_000_000_123, statfsTimeoutMs: 50, statfs: fixtureStatfs });
    expect(await r.metrics()).toBe(EXPECTED);
  });

  test("a missing source empties only its families, and says so", async () => {
    const errors: string[] = [];
    const r = nodeRegistry({ procPath: "/nonexistent-proc", now: () => 0, statfs: async () => OK, onError: (s) => errors.push(s) });
    const text = await r.metrics();
    const samples = text.split("\n").filter((l) => l !== "" && !l.startsWith("#"));
    expect(samples).toEqual(["node_time_seconds 0"]);
    expect(text).toContain("# TYPE node_nf_conntrack_entries gauge\n");
    expect(errors.sort()).toEqual(["loadavg", "meminfo", "mounts", "net/dev", "nf_conntrack_count", "nf_conntrack_max", "stat", "uname"]);
  });

  test("one read per source per scrape, however many families use it", async () => {
    let reads = 0;
    const read = shareInFlight(async () => ++reads);
    expect(await Promise.all([read(), read(), read()])).toEqual([1, 1, 1]);
    expect(await read()).toBe(2);
  });
});

describe("parsers", () => {
  test.each([
    ["0.50 1.25 2.06 1/234 5678\n", [0.5, 1.25, 2.06]],
    ["0 0 0 1/1 1", [0, 0, 0]],
  ] as const)("loadavg %j", (text, want) => expect(parseLoadavg(text)).toEqual([...want]));

  test("loadavg: garbage is an error", () => expect(() => parseLoadavg("x y")).toThrow("unexpected content in loadavg"));

  test("meminfo: kB times 1024, unitless and unwanted fields ignored", () => {
    expect([...parseMeminfo("MemTotal: 2 kB\nHugePages_Total: 5\nCached:   3 kB\nBuffers: 1\n")]).toEqual([["MemTotal", 2048], ["Cached", 3072]]);
  });

  test("proc/stat: old kernels with fewer columns read as 0; the aggregate line is not a CPU", () => {
    expect(parseProcStat("cpu 9 9 9 9\ncpu3 100 200 300 400\n")).toEqual({
      cpus: [{ cpu: "3", times: { user: 1, nice: 2, system: 3, idle: 4, iowait: 0, irq: 0, softirq: 0, steal: 0 } }],
      bootTime: undefined,
    });
  });

  test("proc/stat: at most 1000 CPUs", () => {
    const text = Array.from({ length: 1500 }, (_, i) => `cpu${i} 1 1 1 1 1 1 1 1 0 0`).join("\n");
    expect(parseProcStat(text).cpus.length).toBe(1000);
  });

  test("net/dev: at most 1000 devices, malformed lines skipped", () => {
    const head = "h1\nh2\n";
    const rows = Array.from({ length: 1200 }, (_, i) => `d${i}: ${"1 ".repeat(16)}`).join("\n");
    expect(parseNetDev(head + "bad line\n x: 1 2\n" + rows).length).toBe(1000);
    expect(parseNetDev(head + "x: 1 2\n")).toEqual([]);
  });

  test("mounts: at most 1000 reported, excluded and duplicate ones dropped", () => {
    const many = Array.from({ length: 1200 }, (_, i) => `/dev/x /m/${i} ext4 rw 0 0`).join("\n");
    expect(reportedMounts(parseMounts(many)).length).toBe(1000);
    const m = parseMounts("/dev/a /a\\011b ext4 rw 0 0\n/dev/a /a\\011b ext4 ro 0 0\nshort line\nc /sys/fs/cgroup cgroup2 rw 0 0\nc /x cgroup2 rw 0 0\nc /var/lib/docker ext4 rw 0 0\n");
    expect(reportedMounts(m).map((x) => [x.mountPoint, x.options])).toEqual([["/a\tb", "rw"], ["/var/lib/docker", "rw"]]);
  });

  test("cpu counters never go backwards; an idle drop of 3 s or more is a hot-plug reset", () => {
    const z = { user: 10, nice: 0, system: 5, idle: 100, iowait: 2, irq: 0, softirq: 0, steal: 0 };
    const t = new CpuTracker();
    t.update([{ cpu: "0", times: z }]);
    expect(t.update([{ cpu: "0", times: { ...z, iowait: 1.99, user: 11 } }])[0]!.times).toEqual({ ...z, user: 11 });
    expect(t.update([{ cpu: "0", times: { ...z, idle: 97, user: 1 } }])[0]!.times).toEqual({ ...z, idle: 97, user: 1 });
  });
});

describe("hung mounts", () => {
  test("a hung statfs costs one timeout, is then skipped until it returns, and is asked again after", async () => {
    let calls = 0;
    let hung = true;
    let release: (v: typeof OK) => void = () => {};
    const statfs: StatfsFunction = (p) => {
      if (p !== "/mnt/nfs") return Promise.resolve(OK);
      calls++;
      return hung ? new Promise((r) => (release = r)) : Promise.resolve(OK);
    };
    const r = nodeRegistry({ procPath: FIXTURE, statfsTimeoutMs: 100, statfs });
    const nfs = async () => (await r.metrics()).split("\n").filter((l) => l.includes('mountpoint="/mnt/nfs"'));
    const t0 = performance.now();
    expect(await nfs()).toEqual(['node_filesystem_device_error{device="nfs.example:/export",fstype="nfs4",mountpoint="/mnt/nfs"} 1']);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(95);
    const t1 = performance.now();
    expect(await nfs()).toEqual(['node_filesystem_device_error{device="nfs.example:/export",fstype="nfs4",mountpoint="/mnt/nfs"} 1']);
    expect(performance.now() - t1).toBeLessThan(95); // stuck: not waited for again
    expect(calls).toBe(1);
    hung = false; // the server is back: the pending call returns, later ones answer at once
    release(OK);
    await new Promise((r) => setImmediate(r));
    const after = await nfs();
    expect(calls).toBe(2);
    expect(after).toContain('node_filesystem_size_bytes{device="nfs.example:/export",fstype="nfs4",mountpoint="/mnt/nfs"} 4096000');
    expect(after).toContain('node_filesystem_device_error{device="nfs.example:/export",fstype="nfs4",mountpoint="/mnt/nfs"} 0');
  });

  test("at most two hung calls at once: further mounts report an error without a call", async () => {
    const asked: string[] = [];
    const statfs: StatfsFunction = (p) => {
      asked.push(p);
      return never();
    };
    const r = nodeRegistry({ procPath: FIXTURE, statfsTimeoutMs: 20, statfs });
    const text = await r.metrics();
    expect(asked).toEqual(["/", "/run"]);
    expect(text.split("\n").filter((l) => l.startsWith("node_filesystem_device_error")).map((l) => l.endsWith(" 1"))).toEqual([true, true, true, true, true]);
    await r.metrics();
    expect(asked).toEqual(["/", "/run"]);
  });
});

const PROMTOOL = "/usr/bin/promtool";

describe("promtool check metrics", () => {
  test.skipIf(!existsSync(PROMTOOL))("only the camelCase lints node_exporter's own MemTotal/MemFree/MemAvailable names carry", async () => {
    const r = nodeRegistry({ procPath: FIXTURE, now: () => 1_700_000_000_123, statfsTimeoutMs: 50, statfs: fixtureStatfs });
    const p = spawnSync(PROMTOOL, ["check", "metrics"], { input: await r.metrics(), encoding: "utf8" });
    expect((p.stdout + p.stderr).trim().split("\n")).toEqual([
      "node_memory_MemAvailable_bytes metric names should be written in 'snake_case' not 'camelCase'",
      "node_memory_MemFree_bytes metric names should be written in 'snake_case' not 'camelCase'",
      "node_memory_MemTotal_bytes metric names should be written in 'snake_case' not 'camelCase'",
    ]);
    expect(p.status).toBe(3); // promtool's exit code for lint findings; a parse error would be 1
  });
});
