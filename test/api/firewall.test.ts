import { describe, expect, test } from "bun:test";
import { type FirewallSpec, InterfaceNameSchema, parseFirewall } from "../../lib/api/firewall.ts";
import { formatProblems, type Problem } from "../../lib/api/problem.ts";
import * as v from "valibot";

const fw = (spec: unknown, metadata: Record<string, unknown> = { name: "firewall", namespace: "firewall" }) => ({
  apiVersion: "metal-stack.io/v1",
  kind: "Firewall",
  metadata,
  ...(spec === undefined ? {} : { spec }),
});

function valid(input: unknown): FirewallSpec {
  const r = parseFirewall(input);
  if (!r.ok) throw new Error(`expected a valid firewall, got: ${formatProblems(r.problems)}`);
  return r.value;
}

function problemsOf(input: unknown): readonly Problem[] {
  const r = parseFirewall(input);
  if (r.ok) throw new Error("expected an invalid firewall");
  return r.problems;
}

function problemAt(input: unknown, path: string): Problem {
  const ps = problemsOf(input);
  const p = ps.find((x) => x.path === path);
  if (!p) throw new Error(`no problem at ${path}; problems: ${formatProblems(ps)}`);
  return p;
}

describe("parseFirewall: valid objects", () => {
  test("all fields are read (SPEC §3.1)", () => {
    const f = valid(
      fw({
        interval: "1m30s",
        dryrun: true,
        ipv4rulefile: "/var/lib/firewall/rules.v4",
        ratelimits: [{ interface: "vrf104009", rate: 10 }, { interface: "vlan42", rate: 100000 }],
        internalprefixes: ["10.0.0.0/8", "fd00::/8"],
      }),
    );
    expect(f).toMatchObject({
      name: "firewall",
      namespace: "firewall",
      intervalMs: 90_000,
      dryrun: true,
      rulesetFile: "/var/lib/firewall/rules.v4",
      rateLimits: [{ interface: "vrf104009", rateMbit: 10 }, { interface: "vlan42", rateMbit: 100000 }],
    });
    expect(f.internalPrefixes.map((c) => c.text)).toEqual(["10.0.0.0/8", "fd00::/8"]);
  });

  test("defaults: interval 10s, no dryrun, no rule file, no limits, no internal prefixes", () => {
    for (const spec of [undefined, {}, { ratelimits: null, internalprefixes: null, ipv4rulefile: "" }]) {
      expect(valid(fw(spec))).toMatchObject({ intervalMs: 10_000, dryrun: false, rulesetFile: undefined, rateLimits: [], internalPrefixes: [] });
    }
  });

  test.each([
    ["10s", 10_000],
    ["1s", 1_000],
    ["1m30s", 90_000],
    ["1.5s", 1_500],
    ["2h45m", 9_900_000],
    ["1500ms", 1_500],
  ])("interval %p is %p ms", (interval, ms) => {
    expect(valid(fw({ interval })).intervalMs).toBe(ms);
  });

  test.each([["eth0"], ["vrf104009"], ["vlan4000"], ["bond0.100"], ["a"], ["x".repeat(15)], ["veth-fw_1"], ["if@x"]])("interface name %p is accepted", (name) => {
    expect(v.safeParse(InterfaceNameSchema, name).success).toBe(true);
  });

  test("fields the product does not use are ignored", () => {
    const f = valid({
      apiVersion: "metal-stack.io/v1",
      kind: "Firewall",
      metadata: { name: "firewall", namespace: "firewall", managedFields: [{}], annotations: { a: "b" } },
      spec: { interval: "10s", data: { size: "n1-medium" }, egressRules: [], ratelimits: [{ interface: "eth0", rate: 5, burst: 3 }] },
      status: { message: "old", stats: {} },
    });
    expect(f.rateLimits).toEqual([{ interface: "eth0", rateMbit: 5 }]);
  });
});

describe("parseFirewall: invalid objects are rejected with path and value", () => {
  test.each([
    ["interval that is not a duration", { interval: "ten" }, "spec.interval", "ten"],
    ["interval below one second", { interval: "500ms" }, "spec.interval", "500ms"],
    ["zero interval", { interval: "0s" }, "spec.interval", "0s"],
    ["interval without unit", { interval: "10" }, "spec.interval", "10"],
    ["interval as a number", { interval: 10 }, "spec.interval", "10"],
    ["interval with days", { interval: "1d" }, "spec.interval", "1d"],
    ["rate 0", { ratelimits: [{ interface: "eth0", rate: 0 }] }, "spec.ratelimits[0].rate", "0"],
    ["negative rate", { ratelimits: [{ interface: "eth0", rate: -10 }] }, "spec.ratelimits[0].rate", "-10"],
    ["fractional rate", { ratelimits: [{ interface: "eth0", rate: 1.5 }] }, "spec.ratelimits[0].rate", "1.5"],
    ["rate as a string", { ratelimits: [{ interface: "eth0", rate: "10" }] }, "spec.ratelimits[0].rate", "10"],
    ["rate with unit", { ratelimits: [{ interface: "eth0", rate: "10mbit" }] }, "spec.ratelimits[0].rate", "10mbit"],
    ["missing rate", { ratelimits: [{ interface: "eth0" }] }, "spec.ratelimits[0].rate", "rate"],
    ["interface with a space", { ratelimits: [{ interface: "eth 0", rate: 1 }] }, "spec.ratelimits[0].interface", "eth 0"],
    ["interface with a slash", { ratelimits: [{ interface: "a/b", rate: 1 }] }, "spec.ratelimits[0].interface", "a/b"],
    ["interface with a quote", { ratelimits: [{ interface: 'eth0"', rate: 1 }] }, "spec.ratelimits[0].interface", "eth0"],
    ["interface too long", { ratelimits: [{ interface: "x".repeat(16), rate: 1 }] }, "spec.ratelimits[0].interface", "x".repeat(16)],
    ["empty interface", { ratelimits: [{ interface: "", rate: 1 }] }, "spec.ratelimits[0].interface", '""'],
    ["interface ..", { ratelimits: [{ interface: "..", rate: 1 }] }, "spec.ratelimits[0].interface", ".."],
    ["interface with a newline", { ratelimits: [{ interface: "eth0\nx", rate: 1 }] }, "spec.ratelimits[0].interface", "eth0"],
    ["bad internal prefix", { internalprefixes: ["10.0.0.0/8", "1.2.3.4"] }, "spec.internalprefixes[1]", "1.2.3.4"],
    ["relative rule file", { ipv4rulefile: "rules.v4" }, "spec.ipv4rulefile", "rules.v4"],
    ["dryrun not a boolean", { dryrun: "yes" }, "spec.dryrun", "yes"],
  ])("%s", (_what, spec, path, value) => {
    expect(problemAt(fw(spec), path).message).toContain(value);
  });

  test("a duplicate interface is rejected naming both entries", () => {
    const p = problemAt(fw({ ratelimits: [{ interface: "eth0", rate: 10 }, { interface: "eth1", rate: 10 }, { interface: "eth0", rate: 20 }] }), "spec.ratelimits[2].interface");
    expect(p.message).toContain("eth0");
    expect(p.message).toContain("spec.ratelimits[0]");
  });

  test("every problem is reported", () => {
    const ps = problemsOf(fw({ interval: "x", ratelimits: [{ interface: "a b", rate: 0 }], internalprefixes: ["junk"] }));
    expect(ps.map((p) => p.path).sort()).toEqual(["spec.internalprefixes[0]", "spec.interval", "spec.ratelimits[0].interface", "spec.ratelimits[0].rate"]);
  });

  test("a hostile name is rejected via metadata.name", () => {
    expect(problemAt(fw({}, { name: "fire wall", namespace: "firewall" }), "metadata.name").message).toContain("fire wall");
  });
});
