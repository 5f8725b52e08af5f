// The controller CLI against a real kernel in the firewall namespace: bad input is isolated
// (SPEC §3.2, §5, §8), user text cannot change the ruleset's structure (§8), other tables are
// never touched (§4), applying is idempotent and persisted (§4.7), and --dry-run applies nothing (§5).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import YAML from "yaml";
import { createTopology, needs, type Topology } from "../netns/topology.ts";
import {
  block,
  type Check,
  type Controller,
  controller,
  dropFirewallTable,
  firewall,
  inFreshNetns,
  mismatches,
  nft,
  pass,
  policy,
  readText,
  tables,
  which,
} from "./controller.ts";

const env = needs(["ip", "nft", "ss", "unshare"]);

const A = "203.0.113.5";
const C = "198.51.100.10";
const EXT4 = "192.0.2.2";
const V6 = "2001:db8:2::10";

// The firewall OS's own table: an input chain with a named counter and an anonymous one.
const METAL = `table inet metal {
\tcounter metal_ssh {
\t}
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\ttcp dport 2222 counter name "metal_ssh" accept comment "metal ssh"
\t\tudp dport 2223 counter accept comment "metal anonymous counter"
\t}
}
`;

const web = policy("allow-web", { egress: [{ to: [{ cidr: "198.51.100.0/24" }, { cidr: "2001:db8:2::/48" }], ports: [{ protocol: "TCP", port: 443 }] }] });
const dns = policy("allow-dns", { egress: [{ to: [{ cidr: "203.0.113.0/24" }], ports: [{ protocol: "UDP", port: 53 }] }] });

/** `nft list` output with counter values zeroed, to compare structure only. */
// Counter values, and the fingerprint marker the controller stamps after applying (it is not in the file), aside.
const withoutCounts = (s: string) =>
  s.replace(/packets \d+ bytes \d+/g, "packets 0 bytes 0").replace(/\n\n\tchain fingerprint\.[0-9a-f]+ \{\n\t\}/, "");

describe.skipIf(env.skip)("controller CLI robustness in a real firewall namespace (SPEC §3.2, §4, §5, §8)", () => {
  let t: Topology;
  let fc: Controller;
  let metalBefore: string;
  let metalBeforeHandles: string;

  beforeAll(async () => {
    t = await createTopology();
    fc = controller(t);
    // The base ruleset exists before the controller ever runs.
    await nft(t, ["-f", "-"], METAL);
    metalBefore = await nft(t, ["list", "table", "inet", "metal"]);
    metalBeforeHandles = await nft(t, ["-a", "list", "table", "inet", "metal"]);
  });
  afterAll(async () => {
    fc?.cleanup();
    await t?.destroy();
  });

  const expectTraffic = async (checks: readonly Check[]) => expect(await mismatches(t, checks)).toEqual([]);
  const metalNow = () => nft(t, ["list", "table", "inet", "metal"]);

  test("--dry-run prints a ruleset that `nft -c -f` accepts, applies nothing and writes no ruleset file", async () => {
    await dropFirewallTable(t);
    const dry = controller(t);
    try {
      const r = await dry.run([web, dns], { dryRun: true });
      expect(r.code).toBe(0);
      expect(r.stdout).toStartWith("table inet firewall {");
      expect(r.stdout).toContain("accept traffic for np allow-web tcp");
      expect(r.stdout).toContain("accept traffic for np allow-dns udp");
      expect(await tables(t)).toEqual(["inet metal"]);
      expect(readdirSync(dirname(dry.rulesetFile))).toEqual([]);
      // The printed text is a valid nft script in this namespace, and checking it changes nothing.
      const check = await t.exec("firewall", ["nft", "-c", "-f", "-"], { stdin: r.stdout });
      expect({ code: check.code, stderr: check.stderr }).toEqual({ code: 0, stderr: "" });
      expect(await tables(t)).toEqual(["inet metal"]);
      // Nothing filters: with no table the namespace forwards, so the default deny is not active.
      await expectTraffic([pass("tcp", "cluster", EXT4, 80), pass("udp", "cluster", A, 53)]);
      // With an invalid object next to the valid ones: exit 2, the valid ones printed, still nothing applied.
      const bad = policy("bad-port", { egress: [{ ports: [{ protocol: "TCP", port: 70000 }] }] });
      const r2 = await dry.run([web, bad], { dryRun: true });
      expect(r2.code).toBe(2);
      expect(r2.stdout).toContain("accept traffic for np allow-web tcp");
      expect(r2.stdout).not.toContain("bad-port");
      expect(r2.stderr).toContain("firewall/bad-port");
      expect(await tables(t)).toEqual(["inet metal"]);
    } finally {
      dry.cleanup();
    }
  });

  test("the ruleset file is written atomically and loads standalone (twice) with `nft -f` in a fresh namespace", async () => {
    await fc.apply([web, dns]);
    expect(readdirSync(dirname(fc.rulesetFile))).toEqual(["firewall-controller.v4"]);
    const text = readText(fc.rulesetFile);
    expect(text).toContain("table inet firewall");
    const fresh = inFreshNetns('nft list tables; nft -f "$F"; nft -f "$F"; nft list table inet firewall', { F: fc.rulesetFile });
    expect(fresh.stderr).toBe("");
    expect(fresh.code).toBe(0);
    // The first `nft list tables` printed nothing: it really was a fresh namespace.
    expect(fresh.stdout).toStartWith("table inet firewall {");
    // The same table, but for the generation marker: it proves what only this boot's kernel counted, so it is never persisted.
    const running = await nft(t, ["list", "table", "inet", "firewall"]);
    expect(running).toMatch(/\n\tchain generation\.\d+ \{\n\t\}\n/);
    expect(withoutCounts(fresh.stdout)).toBe(withoutCounts(running.replace(/\n\n\tchain generation\.\d+ \{\n\t\}\n/, "\n")));
  });

  test("idempotent: the same manifests applied again change nothing in the kernel (same revision chain, same handles)", async () => {
    await fc.apply([web, dns]);
    const before = await nft(t, ["-a", "list", "ruleset"]);
    const revision = (s: string) => s.match(/chain (revision\.[0-9a-f]+)/g) ?? [];
    expect(revision(before)).toHaveLength(1);
    const second = await fc.apply([web, dns]);
    expect(second.stderr).toContain('"rules":"unchanged"');
    const after = await nft(t, ["-a", "list", "ruleset"]);
    expect(after).toBe(before);
    // A different input does change the revision (the comparison above can fail).
    await fc.apply([web]);
    const changed = await nft(t, ["-a", "list", "ruleset"]);
    expect(revision(changed)).toHaveLength(1);
    expect(revision(changed)).not.toEqual(revision(before));
  });

  test("invalid objects are isolated: exit 2, stderr names object, path and value; the valid policy applies, the invalid one opens nothing", async () => {
    const bad = policy("bad-except", {
      egress: [{ to: [{ cidr: "203.0.113.0/28", except: ["198.51.100.0/24"] }], ports: [{ protocol: "TCP", port: 443 }] }],
    });
    const r = await fc.run([web, bad]);
    expect(r.code).toBe(2);
    const line = r.stderr.split("\n").find((l) => l.startsWith("rejected ")) ?? "";
    expect(line).toContain("ClusterwideNetworkPolicy firewall/bad-except");
    expect(line).toContain("spec.egress[0].to[0].except[0]");
    expect(line).toContain("198.51.100.0/24");
    expect(line).toContain("203.0.113.0/28");
    expect(r.stderr.split("\n").filter((l) => l.startsWith("rejected "))).toHaveLength(1);
    const ruleset = await nft(t, ["list", "table", "inet", "firewall"]);
    expect(ruleset).toContain("accept traffic for np allow-web tcp");
    expect(ruleset).not.toContain("bad-except");
    await expectTraffic([
      pass("tcp", "cluster", C, 443), // the valid policy
      pass("tcp", "cluster", V6, 443),
      block("tcp", "cluster", A, 443), // 203.0.113.5 is inside the invalid policy's cidr
    ]);
  });

  test("several invalid values in one policy are all reported, each with its path", async () => {
    const bad = policy("bad-many", {
      egress: [
        {
          to: [{ cidr: "203.0.113.0/24", except: ["2001:db8::/64"] }, { cidr: "not-a-cidr" }],
          ports: [{ protocol: "TCP", port: 9000, endPort: 8000 }, { protocol: "TCP", port: 0 }],
        },
      ],
    });
    const r = await fc.run([dns, bad]);
    expect(r.code).toBe(2);
    for (const part of [
      "firewall/bad-many",
      "spec.egress[0].to[0].except[0]",
      "2001:db8::/64",
      "spec.egress[0].to[1].cidr",
      "not-a-cidr",
      "spec.egress[0].ports[0].endPort",
      "8000",
      "spec.egress[0].ports[1].port",
    ]) {
      expect(r.stderr).toContain(part);
    }
    await expectTraffic([pass("udp", "cluster", A, 53), block("tcp", "cluster", A, 9000)]);
  });

  test("hostile description text is inert: the policy applies and the ruleset has no trace of it", async () => {
    const hostile = `apiVersion: metal-stack.io/v1
kind: ClusterwideNetworkPolicy
metadata:
  name: allow-hostile-text
  namespace: firewall
  annotations:
    note: "\\"; flush ruleset; table ip evil {"
spec:
  description: "\\"; flush ruleset; table ip evil {\\n  chain evil { type filter hook forward priority -500; policy accept; }\\n}\\n# \\u0000 comment \\"quoted\\" \\\\ end"
  egress:
  - to:
    - cidr: 203.0.113.0/24
    ports:
    - protocol: TCP
      port: 443
`;
    const hostile2 = `apiVersion: metal-stack.io/v1
kind: ClusterwideNetworkPolicy
metadata:
  name: allow-hostile-block
  namespace: firewall
spec:
  description: |
    "; flush ruleset; table ip evil {
      chain evil { type filter hook forward priority -500; policy accept; }
    }
  egress:
  - to:
    - cidr: 198.51.100.0/24
    ports:
    - protocol: UDP
      port: 53
`;
    const r = await fc.run([hostile, hostile2]);
    expect({ code: r.code, stderr: r.stderr.split("\n").filter((l) => l.startsWith("rejected ") || l.startsWith("error")) }).toEqual({ code: 0, stderr: [] });
    const all = await nft(t, ["list", "ruleset"]);
    expect(all.toLowerCase()).not.toContain("evil");
    expect(all).not.toContain("flush");
    expect(await tables(t)).toEqual(["inet firewall", "inet metal"]);
    expect(await metalNow()).toBe(metalBefore);
    await expectTraffic([
      pass("tcp", "cluster", A, 443),
      pass("udp", "cluster", C, 53),
      block("tcp", "cluster", A, 444), // the injected accept-all chain does not exist
      block("tcp", "external", "10.0.1.2", 443),
    ]);
  });

  test("a policy named with uppercase or quotes is rejected (exit 2) and never rendered", async () => {
    const named = (name: string, port: number) => `apiVersion: metal-stack.io/v1
kind: ClusterwideNetworkPolicy
metadata:
  name: ${JSON.stringify(name)}
  namespace: firewall
spec:
  egress:
  - to:
    - cidr: 203.0.113.0/24
    ports:
    - protocol: TCP
      port: ${port}
`;
    const r = await fc.run([named('evil"; flush ruleset; table ip evil {', 7001), named("AllowWeb", 7002), named("allow-ok", 7003)]);
    expect(r.code).toBe(2);
    const rejected = r.stderr.split("\n").filter((l) => l.startsWith("rejected "));
    expect(rejected).toHaveLength(2);
    expect(rejected.join("\n")).toContain("metadata.name");
    expect(rejected.join("\n")).toContain("AllowWeb");
    expect(rejected.join("\n")).toContain("flush ruleset");
    const all = await nft(t, ["list", "ruleset"]);
    expect(all.toLowerCase()).not.toContain("evil");
    expect(all).not.toContain("AllowWeb");
    expect(all).toContain("accept traffic for np allow-ok tcp");
    expect(await tables(t)).toEqual(["inet firewall", "inet metal"]);
    await expectTraffic([pass("tcp", "cluster", A, 7003), block("tcp", "cluster", A, 7001), block("tcp", "cluster", A, 7002)]);
  });

  test("a failing `nft` check or apply applies nothing: exit 1, the error on stderr, the previous ruleset and ruleset file stay", async () => {
    await fc.apply([web]);
    const rulesBefore = await nft(t, ["list", "table", "inet", "firewall"]);
    const fileBefore = readText(fc.rulesetFile);
    const realNft = which("nft") ?? "nft";
    // A wrapper around the real nft that refuses every transaction (-f); there is no separate check pass.
    const wrappers = {
      apply: `case " $* " in *" -f "*) echo "Error: apply refused by test wrapper" >&2; exit 1;; esac\nexec ${realNft} "$@"`,
    };
    for (const [what, body] of Object.entries(wrappers)) {
      const path = join(fc.dir, `nft-refuse-${what}`);
      writeFileSync(path, `#!/bin/sh\n${body}\n`);
      chmodSync(path, 0o755);
      const r = await fc.run([web, dns], { args: ["--nft", path] });
      expect({ what, code: r.code }).toEqual({ what, code: 1 });
      expect(r.stderr).toContain(`${what} refused by test wrapper`);
      expect(await nft(t, ["list", "table", "inet", "firewall"])).toBe(rulesBefore);
      expect(readText(fc.rulesetFile)).toBe(fileBefore);
    }
    // Unreadable input (a YAML syntax error, a missing path) applies nothing either.
    const broken = await fc.run([dns, "kind: [\n"]);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toContain("not valid YAML");
    const missing = await t.exec("firewall", [...fc.argv, "--once", "--manifests", join(fc.dir, "no-such-dir"), "--private-vrf", "42", "--ruleset-file", fc.rulesetFile]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("no-such-dir");
    expect(await nft(t, ["list", "table", "inet", "firewall"])).toBe(rulesBefore);
    await expectTraffic([pass("tcp", "cluster", C, 443), block("udp", "cluster", A, 53)]);
  });

  test("a failed `nft` apply touches no shaping: tc is never run", async () => {
    const log = join(fc.dir, "tc-calls.log");
    const tcWrapper = join(fc.dir, "tc-logging");
    writeFileSync(tcWrapper, `#!/bin/sh\necho "$@" >> ${log}\nexec ${which("tc") ?? "tc"} "$@"\n`);
    chmodSync(tcWrapper, 0o755);
    const nftRefusing = join(fc.dir, "nft-refuse-all");
    writeFileSync(nftRefusing, `#!/bin/sh\ncase " $* " in *" -f "*) echo "Error: refused by test wrapper" >&2; exit 1;; esac\nexec ${which("nft") ?? "nft"} "$@"\n`);
    chmodSync(nftRefusing, 0o755);
    const limited = YAML.stringify({ apiVersion: "metal-stack.io/v1", kind: "Firewall", metadata: { name: "firewall", namespace: "firewall" }, spec: { interval: "10s", ratelimits: [{ interface: "vlan42", rate: 10 }] } });
    await fc.apply([web]);
    // A change (dns added), so there is a transaction for the wrapper to refuse.
    const r = await fc.run([limited, web, dns], { args: ["--nft", nftRefusing, "--tc", tcWrapper] });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("refused by test wrapper");
    expect(existsSync(log)).toBe(false);
    // With nft working, the same run shapes (tc is run) — so the check above could have failed.
    const ok = await fc.run([limited, web, dns], { args: ["--tc", tcWrapper] });
    expect(ok.code).toBe(0);
    expect(existsSync(log)).toBe(true);
    await fc.apply([web]);
  });

  test("rules applied but a later step failed: exit 3, naming the step; the rules are in force", async () => {
    await fc.apply([web]);
    // The ruleset file's path is a directory: nothing can be written there.
    const dirTarget = join(fc.dir, "a-directory.v4");
    mkdirSync(dirTarget, { recursive: true });
    const file = await fc.run([web, dns], { args: ["--ruleset-file", dirTarget] });
    expect(file.code).toBe(3);
    expect(file.stderr).toContain(`error: ruleset applied, but writing ${dirTarget} failed`);
    await expectTraffic([pass("udp", "cluster", A, 53)]);
    // tc failing while shaping: the rules are in force all the same.
    const tcFailing = join(fc.dir, "tc-fail");
    writeFileSync(tcFailing, "#!/bin/sh\necho 'RTNETLINK answers: Operation not permitted (test wrapper)' >&2\nexit 2\n");
    chmodSync(tcFailing, 0o755);
    const limited = YAML.stringify({ apiVersion: "metal-stack.io/v1", kind: "Firewall", metadata: { name: "firewall", namespace: "firewall" }, spec: { interval: "10s", ratelimits: [{ interface: "vlan42", rate: 10 }] } });
    const tc = await fc.run([limited, web], { args: ["--tc", tcFailing] });
    expect(tc.code).toBe(3);
    expect(tc.stderr).toContain("test wrapper");
    await expectTraffic([pass("tcp", "cluster", C, 443), block("udp", "cluster", A, 53)]);
    await fc.apply([web]);
  });

  test("input that would render a million elements is refused before rendering: the policy is rejected naming count and limit, the others apply", async () => {
    // A /8 with 1,000 excepts (the first at its start) on 1,000 ports: 1,000 ranges x 1,000 ports
    // (such a policy took 1.9 GB and minutes of nft before).
    const excepts = Array.from({ length: 1000 }, (_, i) => `10.${i >> 4}.${(i & 15) * 16}.0/24`);
    const ports = Array.from({ length: 1000 }, (_, i) => ({ protocol: "TCP", port: 1 + 2 * i }));
    const huge = policy("huge", { egress: [{ to: [{ cidr: "10.0.0.0/8", except: excepts }], ports }] } as never);
    const r = await fc.run([huge, dns]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("rejected ClusterwideNetworkPolicy firewall/huge (");
    expect(r.stderr).toContain("spec: renders 1,000,000 map elements, more than the limit of 10,000 per object");
    expect(await nft(t, ["list", "chains", "inet"])).not.toContain("huge");
    await expectTraffic([pass("udp", "cluster", A, 53)]);
  });

  test("a typo in a rule never widens it: an unknown key is rejected with its path (exit 2), the rule opens nothing", async () => {
    const typo = policy("typo-ssh", { ingress: [{ to: [{ cidr: "203.0.113.0/24" }], ports: [{ prot: 22 }] }] } as never);
    const r = await fc.run([typo, dns]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("rejected ClusterwideNetworkPolicy firewall/typo-ssh (");
    expect(r.stderr).toContain("spec.ingress[0].to: unknown key (ingress rules take from, ports)");
    expect(r.stderr).toContain("spec.ingress[0].ports[0].prot: unknown key (ports take protocol, port, endPort)");
    expect(await nft(t, ["list", "chains", "inet"])).not.toContain("typo-ssh");
    await expectTraffic([pass("udp", "cluster", A, 53), block("tcp", "external", "10.0.1.2", 22)]);
  });

  test("Firewall spec.dryrun: the ruleset is validated but not applied; the previous ruleset stays", async () => {
    await fc.apply([web]);
    const before = await nft(t, ["list", "table", "inet", "firewall"]);
    const r = await fc.run([firewall({ dryrun: true }), web, dns]);
    expect(r.code).toBe(0);
    expect(await nft(t, ["list", "table", "inet", "firewall"])).toBe(before);
    await expectTraffic([pass("tcp", "cluster", C, 443), block("udp", "cluster", A, 53)]);
    await fc.apply([firewall({ dryrun: false }), web, dns]);
    await expectTraffic([pass("udp", "cluster", A, 53)]);
  });

  test("the Firewall's ipv4rulefile wins over --ruleset-file", async () => {
    const path = join(fc.dir, "from-firewall-object.v4");
    await fc.apply([web]);
    const flagFile = readText(fc.rulesetFile);
    await fc.apply([firewall({ ipv4rulefile: path }), dns]);
    expect(existsSync(path)).toBe(true);
    expect(readText(path)).toContain("accept traffic for np allow-dns udp");
    expect(readText(path)).not.toContain("accept traffic for np allow-web tcp");
    expect(readText(fc.rulesetFile)).toBe(flagFile);
  });

  test("an ipv4rulefile outside --ruleset-dir is rejected and never written; the policies still apply (exit 2)", async () => {
    const outside = mkdtempSync(join(tmpdir(), "fct-outside-"));
    try {
      const target = join(outside, "passwd");
      writeFileSync(target, "root:x:0:0::/root:/bin/sh\n");
      const r = await fc.run([firewall({ ipv4rulefile: target }), dns]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`rejected Firewall firewall/firewall (`);
      expect(r.stderr).toContain(`spec.ipv4rulefile: ${JSON.stringify(target)} is outside ${fc.dir}`);
      expect(readText(target)).toBe("root:x:0:0::/root:/bin/sh\n");
      await expectTraffic([pass("udp", "cluster", A, 53)]);
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
  });

  test("an ipv4rulefile naming a file someone else wrote in --ruleset-dir leaves it alone: exit 3, the rules in force", async () => {
    const foreign = join(fc.dir, "base-ruleset.nft");
    writeFileSync(foreign, "table inet metal {\n}\n");
    await fc.apply([web]);
    const r = await fc.run([firewall({ ipv4rulefile: foreign }), dns]);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`error: ruleset applied, but writing ${foreign} failed: ${foreign} exists and was not written by firewall-controller`);
    expect(readText(foreign)).toBe("table inet metal {\n}\n");
    await expectTraffic([pass("udp", "cluster", A, 53)]);
    // A file of ours at that path is replaced as usual.
    const ours = join(fc.dir, "ours.v4");
    await fc.apply([firewall({ ipv4rulefile: ours }), dns]);
    await fc.apply([firewall({ ipv4rulefile: ours }), web]);
    expect(readText(ours)).toContain("accept traffic for np allow-web tcp");
  });

  test("host bits in a cidr are normalised with a note, not rejected: exit 0 and the normalised block applies", async () => {
    const r = await fc.run([policy("allow-hostbits", { egress: [{ to: [{ cidr: "203.0.113.200/25" }], ports: [{ protocol: "TCP", port: 443 }] }] })]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("spec.egress[0].to[0].cidr");
    expect(r.stderr).toContain("203.0.113.128/25");
    await expectTraffic([pass("tcp", "cluster", "203.0.113.200", 443), block("tcp", "cluster", A, 443)]);
  });

  test("the base table `inet metal` stays byte-identical through applies, changes, rejections, dry runs and no-op runs", async () => {
    expect(metalBefore).toContain("metal_ssh");
    const steps: (readonly string[])[] = [[web], [web, dns], [dns], [], [web, dns], [web, dns]];
    for (const manifests of steps) {
      await fc.apply(manifests);
      expect(await metalNow()).toBe(metalBefore);
    }
    const bad = await fc.run([web, policy("bad", { egress: [{ ports: [{ protocol: "ICMP" as "TCP", port: 1 }] }] })]);
    expect({ code: bad.code, stderr: bad.code === 2 ? "" : bad.stderr }).toEqual({ code: 2, stderr: "" });
    const dry = await fc.run([dns], { dryRun: true });
    expect(dry.code).toBe(0);
    await dropFirewallTable(t); // the controller must re-create its own table next to metal
    await fc.apply([web]);
    expect(await metalNow()).toBe(metalBefore);
    expect(await nft(t, ["-a", "list", "table", "inet", "metal"])).toBe(metalBeforeHandles);
    expect(await tables(t)).toEqual(["inet firewall", "inet metal"]);
  }, 20_000);
});
