// Shaping reconciliation against a fake kernel that speaks the `ip -j`/`tc -j`
// dialect the real one does (shapes captured from iproute2 6.1 on kernel 6.18):
// planning, idempotence, changes, removal, and what must never be touched.
import { describe, expect, test } from "bun:test";
import { FirewallError } from "../../lib/errors.ts";
import type { CommandResult, Executor } from "../../lib/exec.ts";
import { applyShaping, shellLine } from "../../lib/tc/apply.ts";
import { describeShaping } from "../../lib/tc/describe.ts";
import { parseFilters, parseLinks, parseQdiscs } from "../../lib/tc/observe.ts";
import { FILTER_PREF, emptyShapingState, ifbNameFor, planShaping, tbfParams } from "../../lib/tc/plan.ts";

interface FakeFilter {
  pref: number;
  protocol: string;
  matchAll: boolean;
  action: string;
  toDev: string;
}

/** A tiny model of the parts of a kernel that shaping reads and writes. */
class FakeKernel {
  links = new Map<string, { kind?: string; up: boolean; alias?: string }>();
  roots = new Map<string, { kind: string; options: Record<string, number> }>();
  ingress = new Map<string, { kind: string; filters: FakeFilter[] }>();
  /** Every command that is not a read, in order. */
  mutations: string[] = [];
  /** Commands (by prefix) that fail as the kernel would refuse them. */
  failing: string[] = [];

  constructor(devices: readonly string[]) {
    for (const d of devices) this.links.set(d, { kind: d === "lo" ? undefined : "veth", up: true });
  }

  exec: Executor = async (argv) => {
    const line = argv.join(" ");
    const ok = (stdout = ""): CommandResult => ({ code: 0, stdout, stderr: "" });
    const fail = (stderr: string): CommandResult => ({ code: 2, stdout: "", stderr });
    if (line === "ip -d -j link show") {
      return ok(JSON.stringify([...this.links].map(([ifname, l], i) => ({
        ifindex: i + 1, ifname, flags: l.up ? ["BROADCAST", "UP", "LOWER_UP"] : ["BROADCAST"], mtu: 1500,
        ...(l.kind ? { linkinfo: { info_kind: l.kind } } : {}), ...(l.alias ? { ifalias: l.alias } : {}),
      }))));
    }
    if (line === "tc -j qdisc show") {
      const out: unknown[] = [];
      for (const [dev] of this.links) {
        const root = this.roots.get(dev);
        out.push({ kind: root?.kind ?? "noqueue", handle: root ? "8001:" : "0:", dev, root: true, refcnt: 2, options: root?.options ?? {} });
        const ing = this.ingress.get(dev);
        if (ing) out.push({ kind: ing.kind, handle: "ffff:", dev, parent: "ffff:fff1", options: {} });
      }
      return ok(JSON.stringify(out));
    }
    const showFilter = line.match(/^tc -j filter show dev (\S+) parent ffff:$/);
    if (showFilter) {
      const ing = this.ingress.get(showFilter[1]!);
      if (!ing) return fail("Cannot find device");
      return ok(JSON.stringify(ing.filters.flatMap((f) => {
        const head = { protocol: f.protocol, pref: f.pref, kind: "u32", chain: 0 };
        return [head, { ...head, options: { fh: "800:", ht_divisor: 1 } }, {
          ...head,
          options: {
            fh: "800::800", order: 2048, key_ht: "800", bkt: "0", not_in_hw: true,
            match: f.matchAll ? { value: "0", mask: "0", offmask: "", off: 0 } : { value: "a000000", mask: "ff000000", offmask: "", off: 16 },
            actions: [{ order: 1, kind: "mirred", mirred_action: f.action, direction: "egress", to_dev: f.toDev, control_action: { type: "stolen" } }],
          },
        }];
      })));
    }
    this.mutations.push(line);
    if (this.failing.some((p) => line.startsWith(p))) return fail("RTNETLINK answers: Operation not permitted");
    let m: RegExpMatchArray | null;
    if ((m = line.match(/^ip link add name (\S+) type ifb$/))) {
      if (this.links.has(m[1]!)) return fail("RTNETLINK answers: File exists");
      this.links.set(m[1]!, { kind: "ifb", up: false });
      return ok();
    }
    if ((m = line.match(/^ip link set dev (\S+) alias (.*) up$/))) {
      const l = this.links.get(m[1]!);
      if (!l) return fail(`Cannot find device "${m[1]}"`);
      l.alias = m[2]!;
      l.up = true;
      return ok();
    }
    if ((m = line.match(/^ip link del dev (\S+)$/))) {
      if (!this.links.delete(m[1]!)) return fail(`Cannot find device "${m[1]}"`);
      this.roots.delete(m[1]!);
      // The kernel keeps a redirect whose device is gone; tc shows its target as "*".
      for (const ing of this.ingress.values()) for (const f of ing.filters) if (f.toDev === m[1]) f.toDev = "*";
      return ok();
    }
    if ((m = line.match(/^tc qdisc replace dev (\S+) root tbf rate (\d+)mbit burst (\d+) latency (\d+)ms$/))) {
      if (!this.links.has(m[1]!)) return fail("Cannot find device");
      // The kernel stores the bucket in timer ticks: it comes back a byte short.
      this.roots.set(m[1]!, { kind: "tbf", options: { rate: Number(m[2]) * 125000, burst: Number(m[3]) - 1, lat: Number(m[4]) * 1000 } });
      return ok();
    }
    if ((m = line.match(/^tc qdisc add dev (\S+) handle ffff: ingress$/))) {
      if (!this.links.has(m[1]!)) return fail("Cannot find device");
      if (this.ingress.has(m[1]!)) return fail("Error: Exclusivity flag on, cannot modify.");
      this.ingress.set(m[1]!, { kind: "ingress", filters: [] });
      return ok();
    }
    if ((m = line.match(/^tc qdisc del dev (\S+) handle ffff: ingress$/))) {
      if (!this.ingress.delete(m[1]!)) return fail("Error: Invalid handle.");
      return ok();
    }
    if ((m = line.match(/^tc filter add dev (\S+) parent ffff: protocol all pref (\d+) u32 match u32 0 0 action mirred egress redirect dev (\S+)$/))) {
      const ing = this.ingress.get(m[1]!);
      if (!ing) return fail("Error: Parent Qdisc doesn't exists.");
      ing.filters.push({ pref: Number(m[2]), protocol: "all", matchAll: true, action: "redirect", toDev: m[3]! });
      return ok();
    }
    if ((m = line.match(/^tc filter del dev (\S+) parent ffff: pref (\d+)$/))) {
      const ing = this.ingress.get(m[1]!);
      if (!ing) return fail("Error: Parent Qdisc doesn't exists.");
      ing.filters = ing.filters.filter((f) => f.pref !== Number(m![2]));
      return ok();
    }
    return fail(`fake kernel does not know: ${line}`);
  };
}

const deps = (k: FakeKernel) => ({ exec: k.exec });
const LIMIT = [{ interface: "vrf104009", rateMbit: 10 }] as const;

describe("ifbNameFor", () => {
  test("is readable when it fits, hashed to exactly 15 characters when not, and always ours", () => {
    expect(ifbNameFor("vrf104009")).toBe("fcifbvrf104009");
    expect(ifbNameFor("vlan42")).toBe("fcifbvlan42");
    const long = ["vlan1000000042", "vlan1000000043", "enp1s0f1np1234", "a1234567890"];
    const names = long.map(ifbNameFor);
    for (const n of names) {
      expect(n).toHaveLength(15);
      expect(n).toMatch(/^fcifb[A-Za-z0-9_.-]+$/);
    }
    expect(new Set(names).size).toBe(long.length);
    expect(ifbNameFor("vlan1000000042")).toBe(names[0]!);
    expect(ifbNameFor("eth0:1")).toMatch(/^fcifbeth[0-9a-f]{7}$/); // no ':' in a kernel name
  });
});

describe("tbfParams", () => {
  test("uses Mbit/s = 10^6 bit/s and a bucket of at least two jumbo frames", () => {
    expect(tbfParams(10)).toEqual({ rateBytesPerSec: 1_250_000, burstBytes: 32768, latencyMs: 50 });
    expect(tbfParams(1000).burstBytes).toBe(625_000);
  });
});

describe("applyShaping against a fake kernel", () => {
  test("creates IFB, TBF, ingress qdisc and redirect; a second run changes nothing", async () => {
    const k = new FakeKernel(["lo", "vlan42", "vrf104009"]);
    const first = await applyShaping(LIMIT, deps(k));
    expect(first.problems).toEqual([]);
    expect(first.changed).toBe(true);
    expect(first.actions).toEqual([
      "ip link add name fcifbvrf104009 type ifb",
      "ip link set dev fcifbvrf104009 alias 'firewall-controller: shapes traffic received on vrf104009' up",
      "tc qdisc replace dev fcifbvrf104009 root tbf rate 10mbit burst 32768 latency 50ms",
      "tc qdisc add dev vrf104009 handle ffff: ingress",
      `tc filter add dev vrf104009 parent ffff: protocol all pref ${FILTER_PREF} u32 match u32 0 0 action mirred egress redirect dev fcifbvrf104009`,
    ]);
    k.mutations = [];
    const second = await applyShaping(LIMIT, deps(k));
    expect(second).toEqual({ changed: false, problems: [], actions: [] });
    expect(k.mutations).toEqual([]);
  });

  test("a changed rate replaces only the TBF", async () => {
    const k = new FakeKernel(["lo", "vrf104009"]);
    await applyShaping(LIMIT, deps(k));
    const r = await applyShaping([{ interface: "vrf104009", rateMbit: 20 }], deps(k));
    expect(r.actions).toEqual(["tc qdisc replace dev fcifbvrf104009 root tbf rate 20mbit burst 32768 latency 50ms"]);
    expect(k.roots.get("fcifbvrf104009")?.options.rate).toBe(2_500_000);
  });

  test("a removed entry removes our ingress qdisc and IFB, and nothing of anyone else", async () => {
    const k = new FakeKernel(["lo", "vlan42", "vrf104009", "eth9"]);
    k.links.set("ifb0", { kind: "ifb", up: false });
    k.links.set("fcifbdummy", { kind: "dummy", up: true }); // our prefix, but not an IFB: not ours
    await applyShaping([...LIMIT, { interface: "vlan42", rateMbit: 5 }, { interface: "eth9", rateMbit: 7 }], deps(k));
    // Someone else also filters on eth9: only our filter goes, their qdisc stays.
    k.ingress.get("eth9")!.filters.push({ pref: 10, protocol: "ip", matchAll: false, action: "mirror", toDev: "ifb0" });
    k.mutations = [];
    const r = await applyShaping([{ interface: "vlan42", rateMbit: 5 }], deps(k));
    expect(r.problems).toEqual([]);
    expect(r.actions).toEqual([
      "tc qdisc del dev vrf104009 handle ffff: ingress",
      `tc filter del dev eth9 parent ffff: pref ${FILTER_PREF}`,
      "ip link del dev fcifbvrf104009",
      "ip link del dev fcifbeth9",
    ]);
    expect([...k.links.keys()].sort()).toEqual(["eth9", "fcifbdummy", "fcifbvlan42", "ifb0", "lo", "vlan42", "vrf104009"]);
    expect(k.ingress.get("eth9")?.filters.map((f) => f.pref)).toEqual([10]);
    expect(k.ingress.has("vlan42")).toBe(true);
    const none = await applyShaping([], deps(k));
    expect(none.actions).toEqual(["tc qdisc del dev vlan42 handle ffff: ingress", "ip link del dev fcifbvlan42"]);
    expect((await applyShaping([], deps(k))).actions).toEqual([]);
  });

  test("a missing interface is a problem, not an error; the other entries still apply", async () => {
    const k = new FakeKernel(["lo", "vrf104009"]);
    const r = await applyShaping([{ interface: "vlan99", rateMbit: 5 }, ...LIMIT], deps(k));
    expect(r.problems).toEqual([{ interface: "vlan99", message: "interface vlan99 does not exist; its limit of 5 Mbit/s is not applied" }]);
    expect(k.ingress.get("vrf104009")?.filters).toHaveLength(1);
    expect(r.changed).toBe(true);
    // Still reported next time, still nothing to do for the rest.
    const again = await applyShaping([{ interface: "vlan99", rateMbit: 5 }, ...LIMIT], deps(k));
    expect(again.actions).toEqual([]);
    expect(again.problems).toHaveLength(1);
  });

  test("a failing command is a problem of its interface; later steps for it are skipped, others go on", async () => {
    const k = new FakeKernel(["lo", "vlan42", "vrf104009"]);
    k.failing = ["tc qdisc add dev vlan42"];
    const r = await applyShaping([{ interface: "vlan42", rateMbit: 5 }, ...LIMIT], deps(k));
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]!.interface).toBe("vlan42");
    expect(r.problems[0]!.message).toContain("tc qdisc add dev vlan42 handle ffff: ingress");
    expect(r.problems[0]!.message).toContain("Operation not permitted");
    expect(r.actions.some((a) => a.startsWith("tc filter add dev vlan42"))).toBe(false);
    expect(k.ingress.get("vrf104009")?.filters).toHaveLength(1);
  });

  test("a redirect to a wrong device of ours is replaced; an altered IFB is repaired", async () => {
    const k = new FakeKernel(["lo", "vrf104009"]);
    await applyShaping(LIMIT, deps(k));
    k.links.set("fcifbold", { kind: "ifb", up: true });
    k.ingress.get("vrf104009")!.filters = [{ pref: 7, protocol: "all", matchAll: true, action: "redirect", toDev: "fcifbold" }];
    k.links.get("fcifbvrf104009")!.up = false;
    const r = await applyShaping(LIMIT, deps(k));
    expect(r.actions).toEqual([
      "tc filter del dev vrf104009 parent ffff: pref 7",
      "ip link del dev fcifbold",
      "ip link set dev fcifbvrf104009 alias 'firewall-controller: shapes traffic received on vrf104009' up",
      `tc filter add dev vrf104009 parent ffff: protocol all pref ${FILTER_PREF} u32 match u32 0 0 action mirred egress redirect dev fcifbvrf104009`,
    ]);
    expect((await applyShaping(LIMIT, deps(k))).actions).toEqual([]);
  });

  test("a redirect left dangling by a deleted IFB is repaired, or removed with the limit", async () => {
    const k = new FakeKernel(["lo", "vrf104009", "vlan42"]);
    await applyShaping([...LIMIT, { interface: "vlan42", rateMbit: 5 }], deps(k));
    await k.exec(["ip", "link", "del", "dev", "fcifbvrf104009"]);
    await k.exec(["ip", "link", "del", "dev", "fcifbvlan42"]);
    expect(k.ingress.get("vrf104009")?.filters[0]?.toDev).toBe("*");
    const r = await applyShaping(LIMIT, deps(k));
    expect(r.problems).toEqual([]);
    expect(r.actions).toEqual([
      "tc qdisc del dev vlan42 handle ffff: ingress",
      `tc filter del dev vrf104009 parent ffff: pref ${FILTER_PREF}`,
      "ip link add name fcifbvrf104009 type ifb",
      "ip link set dev fcifbvrf104009 alias 'firewall-controller: shapes traffic received on vrf104009' up",
      "tc qdisc replace dev fcifbvrf104009 root tbf rate 10mbit burst 32768 latency 50ms",
      `tc filter add dev vrf104009 parent ffff: protocol all pref ${FILTER_PREF} u32 match u32 0 0 action mirred egress redirect dev fcifbvrf104009`,
    ]);
    expect((await applyShaping(LIMIT, deps(k))).actions).toEqual([]);
  });

  test("clsact qdiscs, taken priorities and bad entries are reported and left alone", async () => {
    const k = new FakeKernel(["lo", "eth1", "eth2", "vrf104009"]);
    k.ingress.set("eth1", { kind: "clsact", filters: [] });
    k.ingress.set("eth2", { kind: "ingress", filters: [{ pref: FILTER_PREF, protocol: "all", matchAll: true, action: "mirror", toDev: "ifb0" }] });
    const r = await applyShaping(
      [
        { interface: "eth1", rateMbit: 1 },
        { interface: "eth2", rateMbit: 1 },
        ...LIMIT,
        { interface: "vrf104009", rateMbit: 99 },
        { interface: "fcifbx", rateMbit: 1 },
      ],
      deps(k),
    );
    expect(r.problems.map((p) => p.interface).sort()).toEqual(["eth1", "eth2", "fcifbx", "vrf104009"]);
    expect(r.problems.find((p) => p.interface === "vrf104009")?.message).toContain("first limit (10 Mbit/s) applies");
    expect(r.actions.every((a) => !a.includes("eth1") && !a.includes("eth2"))).toBe(true);
    expect(k.roots.get("fcifbvrf104009")?.options.rate).toBe(1_250_000);
  });

  test("unreadable state is a shaping_failed error", async () => {
    const exec: Executor = async () => ({ code: 1, stdout: "", stderr: "Cannot open netlink socket" });
    const err = await applyShaping(LIMIT, { exec }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FirewallError);
    expect((err as FirewallError).code).toBe("shaping_failed");
    expect((err as FirewallError).message).toContain("Cannot open netlink socket");
  });

  test("uses the given tc and ip paths", async () => {
    const seen: string[] = [];
    const k = new FakeKernel(["lo", "vrf104009"]);
    const exec: Executor = (argv, o) => {
      seen.push(argv[0]!);
      return k.exec([argv[0] === "/sbin/tc" ? "tc" : argv[0] === "/sbin/ip" ? "ip" : argv[0]!, ...argv.slice(1)], o);
    };
    await applyShaping(LIMIT, { exec, tc: "/sbin/tc", ip: "/sbin/ip" });
    expect(new Set(seen)).toEqual(new Set(["/sbin/tc", "/sbin/ip"]));
  });
});

describe("parsing what iproute2 prints", () => {
  test("filters, qdiscs and links in the real JSON shapes", () => {
    const filters = parseFilters(JSON.parse(
      '[{"protocol":"all","pref":49152,"kind":"u32","chain":0},{"protocol":"all","pref":49152,"kind":"u32","chain":0,"options":{"fh":"800:","ht_divisor":1}},' +
        '{"protocol":"all","pref":49152,"kind":"u32","chain":0,"options":{"fh":"800::800","order":2048,"key_ht":"800","bkt":"0","not_in_hw":true,' +
        '"match":{"value":"0","mask":"0","offmask":"","off":0},"actions":[{"order":1,"kind":"mirred","mirred_action":"redirect","direction":"egress",' +
        '"to_dev":"fcifbvrf104009","control_action":{"type":"stolen"},"index":1,"ref":1,"bind":1}]}}]',
    ));
    expect(filters).toEqual([{
      pref: 49152, protocol: "all", kind: "u32",
      rules: [{ matchAll: true, actions: [{ kind: "mirred", mirredAction: "redirect", direction: "egress", toDev: "fcifbvrf104009" }] }],
    }]);
    const q = parseQdiscs(JSON.parse(
      '[{"kind":"noqueue","handle":"0:","dev":"vrf104009","root":true,"refcnt":2,"options":{}},' +
        '{"kind":"ingress","handle":"ffff:","dev":"vrf104009","parent":"ffff:fff1","options":{}},' +
        '{"kind":"tbf","handle":"8002:","dev":"fcifbvrf104009","root":true,"refcnt":2,"options":{"rate":1250000,"burst":32767,"lat":50000}}]',
    ));
    expect(q.ingressKinds).toEqual(new Map([["vrf104009", "ingress"]]));
    expect(q.roots.get("fcifbvrf104009")).toEqual({ kind: "tbf", tbf: { rateBytesPerSec: 1250000, burstBytes: 32767, latencyUs: 50000 } });
    const links = parseLinks(JSON.parse(
      '[{"ifindex":4,"ifname":"fcifbvrf104009","flags":["BROADCAST","NOARP","UP","LOWER_UP"],"mtu":1500,"linkinfo":{"info_kind":"ifb"},' +
        '"ifalias":"firewall-controller: shapes traffic received on vrf104009"}]',
    ));
    expect(links.get("fcifbvrf104009")).toEqual({
      name: "fcifbvrf104009", kind: "ifb", up: true, alias: "firewall-controller: shapes traffic received on vrf104009",
    });
  });
});

describe("planShaping", () => {
  test("on an empty kernel, every entry is a missing interface and nothing runs", () => {
    const plan = planShaping(LIMIT, emptyShapingState());
    expect(plan.commands).toEqual([]);
    expect(plan.problems).toHaveLength(1);
  });
});

describe("describeShaping", () => {
  test("renders the dry-run comment lines", () => {
    expect(describeShaping([...LIMIT, { interface: "vlan1000000042", rateMbit: 1000 }])).toEqual([
      "# shaping: traffic received on vrf104009 limited to 10 Mbit/s (ingress redirect to IFB fcifbvrf104009, tbf rate 10mbit burst 32768 latency 50ms)",
      `# shaping: traffic received on vlan1000000042 limited to 1000 Mbit/s (ingress redirect to IFB ${ifbNameFor("vlan1000000042")}, tbf rate 1000mbit burst 625000 latency 50ms)`,
    ]);
    expect(describeShaping([])).toEqual(["# shaping: no rate limits; shaping set up earlier by firewall-controller (fcifb* devices) is removed"]);
    expect(describeShaping([...LIMIT, ...LIMIT])[1]).toStartWith("# shaping: vrf104009: listed more than once");
  });

  test("shellLine quotes what a shell would split", () => {
    expect(shellLine(["ip", "link", "set", "alias", "it's here"])).toBe(`ip link set alias 'it'\\''s here'`);
  });
});
