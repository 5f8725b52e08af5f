/**
 * Property tests of the renderer against the real `nft -c` (inside a throwaway
 * network namespace, so nothing touches the host's ruleset), and of the
 * validator against mutated (invalid) policies.
 *
 * The nft tests need root, `nft` and `ip`: without them they FAIL when CI=true
 * and are skipped loudly otherwise.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { parseCidr } from "../../lib/api/address.ts";
import { parsePolicy } from "../../lib/api/policy.ts";
import { formatProblems } from "../../lib/api/problem.ts";
import { parseService } from "../../lib/api/service.ts";
import { type DesiredState, renderRuleset } from "../../lib/ruleset/render.ts";
import { addressText, anyBlockArb, blockArb, cwnp, type Family, policiesArb, servicesArb, specArb } from "./arbitraries.ts";
import { cidr, policy, service } from "./helpers.ts";

/* ---------- environment: root + nft + ip netns, or a loud skip (a failure in CI) ---------- */

function missingRequirement(): string | null {
  if (process.platform !== "linux") return `platform is ${process.platform}, not linux`;
  if (typeof process.getuid === "function" && process.getuid() !== 0) return `not root (uid ${process.getuid()})`;
  for (const [bin, args] of [["nft", ["--version"]], ["ip", ["-V"]]] as const) {
    const r = spawnSync(bin, [...args], { encoding: "utf8" });
    if (r.error || r.status !== 0) return `\`${bin}\` is not usable (${r.error?.message ?? r.stderr.trim()})`;
  }
  return null;
}

const missing = missingRequirement();

/** `test`, but: requirement missing → fails under CI=true, else skipped with a warning. */
function nftTest(name: string, fn: () => void | Promise<void>, timeout?: number): void {
  if (missing === null) {
    test(name, fn, timeout);
  } else if (process.env.CI === "true") {
    test(name, () => {
      throw new Error(`cannot run: ${missing}; this test needs root, nft and ip netns (CI=true makes a missing requirement a failure)`);
    });
  } else {
    console.warn(`\n*** SKIPPED "${name}": ${missing}; needs root, nft and ip netns (with CI=true this fails) ***\n`);
    test.skip(name, fn);
  }
}

const NS = `fct-prop-${randomBytes(4).toString("hex")}`;
let workDir = "";
let nsReady = false;

beforeAll(() => {
  if (missing !== null) return;
  workDir = mkdtempSync(join(tmpdir(), "fct-nft-check-"));
  const r = spawnSync("ip", ["netns", "add", NS], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip netns add ${NS} failed: ${r.stderr}`);
  nsReady = true;
});

afterAll(() => {
  if (nsReady) spawnSync("ip", ["netns", "del", NS]);
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

let fileNo = 0;

/** Runs `nft -c -f` on the text inside the namespace; returns nft's complaint, or null when accepted. */
function nftCheck(text: string): string | null {
  const file = join(workDir, `ruleset-${fileNo++}.nft`);
  writeFileSync(file, text);
  const r = spawnSync("ip", ["netns", "exec", NS, "nft", "-c", "-f", file], { encoding: "utf8" });
  if (r.status === 0) {
    rmSync(file);
    return null;
  }
  return `nft -c -f ${file} exited ${r.status}: ${(r.stderr || r.error?.message || "").split("\n").slice(0, 6).join("\n")}`;
}

function expectNftAccepts(state: DesiredState): void {
  const problem = nftCheck(renderRuleset(state).text);
  if (problem !== null) throw new Error(problem);
}

/* ---------- generators of a whole desired state ---------- */

const prefixListArb = (min: number) =>
  fc.array(fc.oneof(blockArb(4, "wide"), blockArb(6, "wide"), blockArb(4, "pool")), { minLength: min, maxLength: 3 }).map((bs) =>
    bs.map((b) => {
      const r = parseCidr(b.cidr);
      if (!r.ok) throw new Error(r.message);
      return r.value;
    }),
  );

const stateArb: fc.Arbitrary<DesiredState> = fc
  .record({
    policies: policiesArb(6),
    services: servicesArb(4),
    clusterPrefixes: prefixListArb(1),
    internalPrefixes: prefixListArb(0),
    privateVrf: fc.option(fc.integer({ min: 0, max: 4294967295 }), { nil: null }),
    logAcceptedConnections: fc.boolean(),
  })
  .map(({ policies, services, clusterPrefixes, internalPrefixes, privateVrf, logAcceptedConnections }) => ({
    policies: policies.map((o) => {
      const r = parsePolicy(o);
      if (!r.ok) throw new Error(`generator produced an invalid policy: ${formatProblems(r.problems)}\n${JSON.stringify(o)}`);
      return r.value;
    }),
    services: services.map((o) => {
      const r = parseService(o);
      if (!r.ok) throw new Error(`generator produced an invalid service: ${formatProblems(r.problems)}\n${JSON.stringify(o)}`);
      return r.value;
    }),
    clusterPrefixes,
    internalPrefixes,
    privateVrf,
    logAcceptedConnections,
  }));

/* ---------- the real nft accepts every rendering of valid input ---------- */

describe("nft -c accepts the rendered ruleset", () => {
  nftTest(
    "for random valid policies (v4/v6 blocks with excepts, ports, ranges, missing to/ports) and LoadBalancer services",
    () => {
      fc.assert(
        fc.property(stateArb, (state) => {
          expectNftAccepts(state);
        }),
        { numRuns: Number(process.env.FCT_NFT_RUNS ?? 80) },
      );
    },
    60_000,
  );

  nftTest("for an empty desired state, with and without a private VRF", () => {
    expectNftAccepts({ policies: [], services: [], clusterPrefixes: [cidr("10.0.0.0/8")], internalPrefixes: [], privateVrf: null });
    expectNftAccepts({ policies: [], services: [], clusterPrefixes: [cidr("10.0.0.0/8"), cidr("fd00::/8")], internalPrefixes: [cidr("10.0.0.0/8")], privateVrf: 104009 });
  });

  nftTest("for names that look like addresses, numbers or nft keywords", () => {
    const names = ["0", "10.0.0.1", "1-a", "a.b.c", "a--b", "forward", "counter", "table", "accept", "drop", "jump", "ip", "inet", "flush", "ruleset", "comment"];
    const policies = names.map((n) => policy(n, { egress: [{ ports: [{ port: 443 }] }, { to: [{ cidr: "2001:db8::/32" }] }], ingress: [{ ports: [{ protocol: "UDP" }] }] }));
    // Service names are RFC 1035 labels (a letter first, no dots); namespaces are RFC 1123 labels.
    const services = names.map((n) => service(n.replace(/\./g, "-"), /^[a-z]/.test(n) ? n.replace(/\./g, "-") : `s${n.replace(/\./g, "-")}`, { ports: [{ port: 80 }] }, ["203.0.113.80"]));
    expectNftAccepts({ policies, services, clusterPrefixes: [cidr("10.0.0.0/8")], internalPrefixes: [], privateVrf: 1 });
    expectNftAccepts({ policies, services, clusterPrefixes: [cidr("10.0.0.0/8")], internalPrefixes: [], privateVrf: 1, logAcceptedConnections: true });
  });

  nftTest("for 500 overlapping policies", () => {
    const policies = Array.from({ length: 500 }, (_, i) =>
      policy(`p-${i}`, {
        egress: [{ to: [{ cidr: `198.18.${i % 64}.0/24`, except: [`198.18.${i % 64}.${i % 200}/31`] }, { cidr: `2001:db8:${(i % 50).toString(16)}::/48` }], ports: [{ port: 1000 + (i % 37), endPort: 1100 }, { protocol: "UDP", port: 53 }] }],
        ingress: [{ from: [{ cidr: `192.0.2.${i % 256}/32` }] }],
      }),
    );
    expectNftAccepts({ policies, services: [], clusterPrefixes: [cidr("10.0.0.0/8")], internalPrefixes: [], privateVrf: 42 });
  }, 30_000);

  // nft allows comments of at most 128 characters: one valid object with a long name must not make
  // `nft -c` reject the whole ruleset (it did once: comments were only cut at 255).
  nftTest("for a valid policy with a 253-character name", () => {
    const name = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(61)}`;
    expectNftAccepts({ policies: [policy(name, { egress: [{ ports: [{ port: 443 }] }], ingress: [{}] })], services: [], clusterPrefixes: [cidr("10.0.0.0/8")], internalPrefixes: [], privateVrf: 42 });
  });

  nftTest("for a policy with a 100-character name and an ingress rule", () => {
    expectNftAccepts({ policies: [policy("p".repeat(100), { ingress: [{}] })], services: [], clusterPrefixes: [cidr("10.0.0.0/8")], internalPrefixes: [], privateVrf: 42 });
  });

  nftTest("for a LoadBalancer service with a 63-character namespace and a 63-character name", () => {
    expectNftAccepts({ policies: [], services: [service("n".repeat(63), "s".repeat(63), { ports: [{ port: 443 }] }, ["203.0.113.80"])], clusterPrefixes: [cidr("10.0.0.0/8")], internalPrefixes: [], privateVrf: 42 });
  });
});

/* ---------- every invalid policy is rejected, naming its path and value ---------- */

type Spec = { egress?: unknown[] | null; ingress?: unknown[] | null; [k: string]: unknown };

interface Mutation {
  readonly what: string;
  /** "peer" mutations add an IP block, "port" mutations a port entry. */
  readonly kind: "peer" | "port";
  readonly item: Record<string, unknown>;
  /** Path below the added item, e.g. ".except[0]". */
  readonly at: string;
  /** What the message must contain. */
  readonly value: string;
}

const BITS = { 4: 32, 6: 128 } as const;

/** An except that is the sibling of its cidr (same size, the other half of the parent): never inside. */
const exceptOutsideArb: fc.Arbitrary<Mutation> = fc
  .tuple(fc.constantFrom<Family>(4, 6), fc.nat(), fc.bigInt(0n, (1n << 128n) - 1n))
  .map(([family, p, raw]) => {
    const bits = BITS[family];
    const prefix = 1 + (p % bits);
    const hostMask = (1n << BigInt(bits - prefix)) - 1n;
    const first = raw & ((1n << BigInt(bits)) - 1n) & ~hostMask;
    const sibling = first ^ (1n << BigInt(bits - prefix));
    const except = `${addressText(family, sibling)}/${prefix}`;
    return { what: "except outside its cidr", kind: "peer", item: { cidr: `${addressText(family, first)}/${prefix}`, except: [except] }, at: ".except[0]", value: except };
  });

const exceptOtherFamilyArb: fc.Arbitrary<Mutation> = fc.constantFrom<Mutation>(
  { what: "IPv6 except in an IPv4 block", kind: "peer", item: { cidr: "203.0.113.0/24", except: ["2001:db8::/64"] }, at: ".except[0]", value: "2001:db8::/64" },
  { what: "IPv4 except in an IPv6 block", kind: "peer", item: { cidr: "::/0", except: ["0.0.0.0/0"] }, at: ".except[0]", value: "0.0.0.0/0" },
);

const JUNK_CIDRS = ["1.2.3/24", "0x1.2.3.4/8", "10.0.0.0/33", "2001:db8::/129", "203.0.113.7", "2001:db8::1", "256.0.0.0/8", "10.0.0.0/", "/24", "010.0.0.0/8", "1.2.3.4/x", "::g/64", "", "any"];
const badCidrTextArb = fc.oneof(
  fc.constantFrom(...JUNK_CIDRS),
  fc.stringMatching(/^[0-9a-fx.:/ -]{0,20}$/).filter((s) => !parseCidr(s).ok),
);

const badCidrArb: fc.Arbitrary<Mutation> = badCidrTextArb.map((s) => ({ what: "bad cidr", kind: "peer", item: { cidr: s }, at: ".cidr", value: JSON.stringify(s) }));
const badExceptArb: fc.Arbitrary<Mutation> = fc
  .tuple(badCidrTextArb, anyBlockArb)
  .map(([s, b]) => ({ what: "bad except", kind: "peer", item: { cidr: b.cidr, except: [s] }, at: ".except[0]", value: JSON.stringify(s) }));

const protocolField = fc.option(fc.constantFrom("TCP", "UDP", "SCTP"), { nil: undefined });
const withProtocol = (protocol: string | undefined, rest: Record<string, unknown>) => (protocol === undefined ? rest : { protocol, ...rest });

const badPortArb: fc.Arbitrary<Mutation> = fc
  .tuple(protocolField, fc.oneof(fc.constantFrom(0, 65536, 70000, -1), fc.integer({ min: 65536, max: 10_000_000 }), fc.integer({ min: -100000, max: 0 })))
  .map(([protocol, port]) => ({ what: `port ${port}`, kind: "port", item: withProtocol(protocol, { port }), at: ".port", value: String(port) }));

const endPortBelowArb: fc.Arbitrary<Mutation> = fc
  .tuple(protocolField, fc.integer({ min: 2, max: 65535 }))
  .chain(([protocol, port]) => fc.integer({ min: 1, max: port - 1 }).map((endPort) => ({ protocol, port, endPort })))
  .map(({ protocol, port, endPort }) => ({ what: "endPort below port", kind: "port", item: withProtocol(protocol, { port, endPort }), at: ".endPort", value: String(endPort) }));

const namedPortArb: fc.Arbitrary<Mutation> = fc
  .tuple(protocolField, fc.stringMatching(/^[a-z][a-z0-9-]{0,14}$/))
  .map(([protocol, name]) => ({ what: "named port", kind: "port", item: withProtocol(protocol, { port: name }), at: ".port", value: name }));

const badProtocolArb: fc.Arbitrary<Mutation> = fc
  .tuple(fc.oneof(fc.constantFrom("ICMP", "tcp", "udp", "sctp", "Tcp", "ANY", "GRE", "", "constructor", "toString", "__proto__", "valueOf"), fc.stringMatching(/^[A-Za-z0-9]{0,8}$/).filter((s) => !["TCP", "UDP", "SCTP"].includes(s))), fc.integer({ min: 1, max: 65535 }))
  .map(([protocol, port]) => ({ what: "bad protocol", kind: "port", item: { protocol, port }, at: ".protocol", value: JSON.stringify(protocol) }));

const mutationArb = fc.oneof(exceptOutsideArb, exceptOtherFamilyArb, badCidrArb, badExceptArb, badPortArb, endPortBelowArb, namedPortArb, badProtocolArb);

/** Puts the bad item into rule `ruleIndex` (mod length + 1: may append a rule) of `dir`; returns its path. */
function applyMutation(spec: Spec, m: Mutation, dir: "egress" | "ingress", ruleIndex: number): string {
  const rules = Array.isArray(spec[dir]) ? (spec[dir] as Record<string, unknown>[]) : [];
  spec[dir] = rules;
  const r = ruleIndex % (rules.length + 1);
  if (r === rules.length) rules.push({});
  const rule = rules[r] as Record<string, unknown>;
  const key = m.kind === "port" ? "ports" : dir === "egress" ? "to" : "from";
  const list = Array.isArray(rule[key]) ? (rule[key] as unknown[]) : [];
  rule[key] = list;
  list.push(m.item);
  return `spec.${dir}[${r}].${key}[${list.length - 1}]${m.at}`;
}

describe("parsePolicy rejects every invalid policy", () => {
  test("a valid policy with one invalid value is rejected with exactly that problem: its path and the offending value", () => {
    fc.assert(
      fc.property(specArb, mutationArb, fc.constantFrom<"egress" | "ingress">("egress", "ingress"), fc.nat(), (validSpec, m, dir, ruleIndex) => {
        // JSON copy: generated specs may share one array between rules, and the mutation must hit one place.
        const spec = JSON.parse(JSON.stringify(validSpec)) as Spec;
        expect(parsePolicy(cwnp("mutant", spec)).ok).toBe(true);
        const path = applyMutation(spec, m, dir, ruleIndex);
        const r = parsePolicy(cwnp("mutant", spec));
        if (r.ok) throw new Error(`${m.what} at ${path} was accepted`);
        const p = r.problems.find((x) => x.path === path);
        if (!p) throw new Error(`${m.what}: no problem at ${path}; problems: ${formatProblems(r.problems)}`);
        expect(p.message).toContain(m.value);
        expect(r.problems).toHaveLength(1);
      }),
      { numRuns: 1000 },
    );
  }, 30_000);
});
