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
        ipv4rulefile: "/etc/nftables/rules.v4",
        ratelimits: [{ interface: "vrf104009", rate: 10 }, { interface: "vlan42", rate: 100000 }],
        internalprefixes: ["10.0.0.0/8", "fd00::/8"],
      }),
    );
    expect(f).toMatchObject({
      name: "firewall",
      namespace: "firewall",
      intervalMs: 90_000,
      dryrun: true,
      rulesetFile: "/etc/nftables/rules.v4",
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

  test("fields outside spec that the product does not use are ignored (SPEC §3)", () => {
    const f = valid({
      apiVersion: "metal-stack.io/v1",
      kind: "Firewall",
      metadata: { name: "firewall", namespace: "firewall", managedFields: [{}], annotations: { a: "b" } },
      spec: { interval: "10s", ratelimits: [{ interface: "eth0", rate: 5 }] },
      status: { message: "old", stats: {} },
      extra: { anything: true },
    });
    expect(f.rateLimits).toEqual([{ interface: "eth0", rateMbit: 5 }]);
  });

  test("every spec key the CRD allows is accepted, and logacceptedconnections of SPEC §3.1", () => {
    const f = valid(fw({ interval: "10s", dryrun: false, ipv4rulefile: "/etc/nftables/firewall-controller.v4", ratelimits: [], internalprefixes: [], logacceptedconnections: true }));
    expect(f.rulesetFile).toBe("/etc/nftables/firewall-controller.v4");
    expect(f.logAcceptedConnections).toBe(true);
  });

  test("logacceptedconnections defaults to false and must be a boolean", () => {
    expect(valid(fw({})).logAcceptedConnections).toBe(false);
    expect(valid(fw({ logacceptedconnections: false })).logAcceptedConnections).toBe(false);
    for (const bad of ["true", 1, null]) {
      const r = parseFirewall(fw({ logacceptedconnections: bad }));
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.problems.map((p) => p.path)).toEqual(["spec.logacceptedconnections"]);
    }
  });

  // BUG: a numeric metadata.uid (a file written by hand, a test fixture) rejected the whole Firewall.
  test.each([[42], ["u-1"], [null], [{ a: 1 }]])("metadata.uid %p is not ours to judge", (uid) => {
    expect(valid(fw({}, { name: "firewall", namespace: "firewall", uid, resourceVersion: 7 })).name).toBe("firewall");
  });

  test("host bits in internalprefixes are cleared and noted, as for policies", () => {
    const r = parseFirewall(fw({ internalprefixes: ["10.1.2.3/8", "fd00::/8", "192.0.2.7/24"] }));
    if (!r.ok) throw new Error(formatProblems(r.problems));
    expect(r.value.internalPrefixes.map((c) => c.text)).toEqual(["10.0.0.0/8", "fd00::/8", "192.0.2.0/24"]);
    expect(r.notes).toEqual([
      { path: "spec.internalprefixes[0]", message: '"10.1.2.3/8" has host bits set; using 10.0.0.0/8' },
      { path: "spec.internalprefixes[2]", message: '"192.0.2.7/24" has host bits set; using 192.0.2.0/24' },
    ]);
  });
});

// SPEC §3.2: unknown keys inside the Firewall spec are rejected with their path.
describe("parseFirewall: unknown keys in spec are rejected", () => {
  const SPEC_KEYS = "the Firewall spec takes interval, dryrun, ipv4rulefile, ratelimits, internalprefixes, logacceptedconnections";
  test.each([
    ["a misspelt ratelimits", { rateLimits: [{ interface: "eth0", rate: 1 }] }, "spec.rateLimits", `unknown key (${SPEC_KEYS})`],
    ["a misspelt internalprefixes", { internalPrefixes: ["10.0.0.0/8"] }, "spec.internalPrefixes", `unknown key (${SPEC_KEYS})`],
    ["a field of the original's spec the CRD does not have", { egressRules: [] }, "spec.egressRules", `unknown key (${SPEC_KEYS})`],
    ["a burst in a rate limit", { ratelimits: [{ interface: "eth0", rate: 5, burst: 3 }] }, "spec.ratelimits[0].burst", "unknown key (ratelimits take interface, rate)"],
  ])("%s", (_what, spec, path, message) => {
    expect(problemAt(fw(spec), path).message).toBe(message);
  });

  test("unknown keys and bad values are all reported at once", () => {
    expect(problemsOf(fw({ interval: "x", typo: 1, ratelimits: [{ interface: "eth0", rate: 0, rates: 1 }] })).map((p) => p.path)).toEqual([
      "spec.interval",
      "spec.ratelimits[0].rate",
      "spec.ratelimits[0].rates",
      "spec.typo",
    ]);
  });
});

// SPEC §4.7: the Firewall is cluster input; whoever may edit it must not choose where root writes.
describe("parseFirewall: spec.ipv4rulefile only inside the ruleset directory", () => {
  test.each([
    ["/etc/passwd", '"/etc/passwd" is outside /etc/nftables/ (the ruleset file must be a file directly in /etc/nftables/, the controller\'s --ruleset-dir)'],
    ["/etc/nftables/../passwd", '"/etc/nftables/../passwd" is not a normalised path (it resolves to "/etc/passwd"; write the path without "..", "." or "//")'],
    ["/etc/nftables//rules.v4", '"/etc/nftables//rules.v4" is not a normalised path (it resolves to "/etc/nftables/rules.v4"; write the path without "..", "." or "//")'],
    ["/etc/nftables/./rules.v4", '"/etc/nftables/./rules.v4" is not a normalised path (it resolves to "/etc/nftables/rules.v4"; write the path without "..", "." or "//")'],
    ["/etc/nftables/", '"/etc/nftables/" is not a normalised path (it resolves to "/etc/nftables"; write the path without "..", "." or "//")'],
    ["/etc/nftables", '"/etc/nftables" is outside /etc/nftables/ (the ruleset file must be a file directly in /etc/nftables/, the controller\'s --ruleset-dir)'],
    ["/etc/nftables/sub/rules.v4", '"/etc/nftables/sub/rules.v4" is outside /etc/nftables/ (the ruleset file must be a file directly in /etc/nftables/, the controller\'s --ruleset-dir)'],
    ["/etc/nftablesX/rules.v4", '"/etc/nftablesX/rules.v4" is outside /etc/nftables/ (the ruleset file must be a file directly in /etc/nftables/, the controller\'s --ruleset-dir)'],
    ["rules.v4", '"rules.v4" is not an absolute path (the ruleset file must be a file directly in /etc/nftables/)'],
    ["/etc/nftables/.hidden", '"/etc/nftables/.hidden" is not a plain file name in /etc/nftables/ (1..255 of A-Z a-z 0-9 . _ + -, not starting with .)'],
    ["/etc/nftables/a\nrejected b", '"/etc/nftables/a\\nrejected b" is not a plain file name in /etc/nftables/ (1..255 of A-Z a-z 0-9 . _ + -, not starting with .)'],
  ])("%p is a problem", (file, message) => {
    expect(problemsOf(fw({ ipv4rulefile: file }))).toEqual([{ path: "spec.ipv4rulefile", message }]);
  });

  test("a file directly in the directory is accepted", () => {
    expect(valid(fw({ ipv4rulefile: "/etc/nftables/firewall-controller.v4" })).rulesetFile).toBe("/etc/nftables/firewall-controller.v4");
  });

  test("the directory is the caller's (--ruleset-dir), with or without a trailing slash", () => {
    for (const rulesetDir of ["/var/lib/fw", "/var/lib/fw/"]) {
      const r = parseFirewall(fw({ ipv4rulefile: "/var/lib/fw/rules.v4" }), { rulesetDir });
      expect(r.ok && r.value.rulesetFile).toBe("/var/lib/fw/rules.v4");
    }
    const r = parseFirewall(fw({ ipv4rulefile: "/etc/nftables/rules.v4" }), { rulesetDir: "/var/lib/fw/" });
    expect(r.ok ? [] : r.problems).toEqual([{ path: "spec.ipv4rulefile", message: '"/etc/nftables/rules.v4" is outside /var/lib/fw/ (the ruleset file must be a file directly in /var/lib/fw/, the controller\'s --ruleset-dir)' }]);
  });

  test("an empty ipv4rulefile means the controller's --ruleset-file", () => {
    expect(valid(fw({ ipv4rulefile: "" })).rulesetFile).toBeUndefined();
  });
});

describe("parseFirewall: hostile values reach messages escaped (SPEC §8)", () => {
  test("an interval (a field with a default) carrying ESC, C1 and bidi controls", () => {
    expect(problemsOf(fw({ interval: "\x1b]0;pwned\x07\u009b\u202e10s" }))).toEqual([
      { path: "spec.interval", message: '"\\u001b]0;pwned\\u0007\\x9b\\u202e10s" is not a duration between 1s and 24h (e.g. 10s, 1m30s)' },
    ]);
  });

  test("a 5 MB interval gives a bounded message that says how much was cut", () => {
    expect(problemsOf(fw({ interval: "9".repeat(5_000_000) }))).toEqual([
      { path: "spec.interval", message: `"${"9".repeat(120)}"…(4,999,880 more characters) is not a duration between 1s and 24h (e.g. 10s, 1m30s)` },
    ]);
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
    ["rule file outside the ruleset directory", { ipv4rulefile: "/etc/passwd" }, "spec.ipv4rulefile", "/etc/passwd"],
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
