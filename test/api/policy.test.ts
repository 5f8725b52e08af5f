import { describe, expect, test } from "bun:test";
import { parsePolicy, type Policy } from "../../lib/api/policy.ts";
import { formatProblems, type Problem } from "../../lib/api/problem.ts";

const cwnp = (spec: unknown, metadata: Record<string, unknown> = { name: "p", namespace: "firewall" }) => ({
  apiVersion: "metal-stack.io/v1",
  kind: "ClusterwideNetworkPolicy",
  metadata,
  spec,
});

function valid(input: unknown): Policy {
  const r = parsePolicy(input);
  if (!r.ok) throw new Error(`expected a valid policy, got: ${formatProblems(r.problems)}`);
  return r.value;
}

function problems(input: unknown): readonly Problem[] {
  const r = parsePolicy(input);
  if (r.ok) throw new Error(`expected an invalid policy, got ${JSON.stringify(r.value, (_k, x) => (typeof x === "bigint" ? `${x}` : x))}`);
  return r.problems;
}

/** The problem at `path`, failing with every problem listed when there is none. */
function problemAt(ps: readonly Problem[], path: string): Problem {
  const p = ps.find((x) => x.path === path);
  if (!p) throw new Error(`no problem at ${path}; problems: ${formatProblems(ps)}`);
  return p;
}

describe("parsePolicy: each invalid input is rejected, naming its path and value", () => {
  test.each([
    // [what, spec, path, text the message must contain]
    ["except outside its cidr (SPEC example)", { egress: [{ to: [{ cidr: "203.0.113.0/28", except: ["198.51.100.0/24"] }] }] }, "spec.egress[0].to[0].except[0]", "198.51.100.0/24"],
    ["except larger than its cidr", { egress: [{ to: [{ cidr: "203.0.113.0/28", except: ["203.0.113.0/24"] }] }] }, "spec.egress[0].to[0].except[0]", "203.0.113.0/24"],
    ["second except outside", { egress: [{ to: [{ cidr: "10.0.0.0/8", except: ["10.1.0.0/16", "11.0.0.0/16"] }] }] }, "spec.egress[0].to[0].except[1]", "11.0.0.0/16"],
    ["except of another family", { egress: [{ to: [{ cidr: "203.0.113.0/24", except: ["2001:db8::/32"] }] }] }, "spec.egress[0].to[0].except[0]", "2001:db8::/32"],
    ["IPv4 except in an IPv6 block", { egress: [{ to: [{ cidr: "2001:db8::/32", except: ["10.0.0.0/8"] }] }] }, "spec.egress[0].to[0].except[0]", "10.0.0.0/8"],
    ["except inside another block of the rule but not its own", { egress: [{ to: [{ cidr: "10.0.0.0/16" }, { cidr: "10.1.0.0/16", except: ["10.0.5.0/24"] }] }] }, "spec.egress[0].to[1].except[0]", "10.0.5.0/24"],
    ["ingress except outside", { ingress: [{ from: [{ cidr: "192.0.2.0/24" }, { cidr: "198.51.100.0/24", except: ["192.0.2.0/28"] }] }] }, "spec.ingress[0].from[1].except[0]", "192.0.2.0/28"],
    ["unparseable except", { egress: [{ to: [{ cidr: "10.0.0.0/8", except: ["10.0.0/16"] }] }] }, "spec.egress[0].to[0].except[0]", "10.0.0/16"],
    ["three-part cidr", { egress: [{ to: [{ cidr: "1.2.3/24" }] }] }, "spec.egress[0].to[0].cidr", "1.2.3/24"],
    ["hex cidr", { egress: [{ to: [{ cidr: "0x1.2.3.4/8" }] }] }, "spec.egress[0].to[0].cidr", "0x1.2.3.4/8"],
    ["bare address as cidr", { egress: [{ to: [{ cidr: "203.0.113.7" }] }] }, "spec.egress[0].to[0].cidr", "203.0.113.7"],
    ["prefix too long", { ingress: [{ from: [{ cidr: "10.0.0.0/33" }] }] }, "spec.ingress[0].from[0].cidr", "10.0.0.0/33"],
    ["IPv6 prefix too long", { ingress: [{ from: [{ cidr: "2001:db8::/129" }] }] }, "spec.ingress[0].from[0].cidr", "2001:db8::/129"],
    ["cidr not a string", { egress: [{ to: [{ cidr: 42 }] }] }, "spec.egress[0].to[0].cidr", "42"],
    ["except not a list", { egress: [{ to: [{ cidr: "10.0.0.0/8", except: "10.1.0.0/16" }] }] }, "spec.egress[0].to[0].except", "10.1.0.0/16"],
    ["port 0", { egress: [{ ports: [{ port: 0 }] }] }, "spec.egress[0].ports[0].port", "0"],
    ["port 70000", { egress: [{ ports: [{ port: 80 }, { port: 70000 }] }] }, "spec.egress[0].ports[1].port", "70000"],
    ["negative port", { ingress: [{ ports: [{ port: -1 }] }] }, "spec.ingress[0].ports[0].port", "-1"],
    ["fractional port", { egress: [{ ports: [{ port: 80.5 }] }] }, "spec.egress[0].ports[0].port", "80.5"],
    ["named port", { egress: [{ ports: [{ port: "http" }] }] }, "spec.egress[0].ports[0].port", "http"],
    ["port number as a string", { egress: [{ ports: [{ port: "80" }] }] }, "spec.egress[0].ports[0].port", "80"],
    ["endPort below port", { egress: [{ ports: [{ port: 100, endPort: 50 }] }] }, "spec.egress[0].ports[0].endPort", "50"],
    ["endPort above 65535", { egress: [{ ports: [{ port: 100, endPort: 65536 }] }] }, "spec.egress[0].ports[0].endPort", "65536"],
    ["endPort without port", { ingress: [{ ports: [{ protocol: "UDP", endPort: 53 }] }] }, "spec.ingress[0].ports[0].endPort", "53"],
    ["named endPort", { egress: [{ ports: [{ port: 1, endPort: "max" }] }] }, "spec.egress[0].ports[0].endPort", "max"],
    ["protocol ICMP", { egress: [{ ports: [{ protocol: "ICMP", port: 1 }] }] }, "spec.egress[0].ports[0].protocol", "ICMP"],
    ["lowercase protocol", { egress: [{ ports: [{ protocol: "tcp", port: 1 }] }] }, "spec.egress[0].ports[0].protocol", "tcp"],
    ["protocol as a number", { egress: [{ ports: [{ protocol: 6, port: 1 }] }] }, "spec.egress[0].ports[0].protocol", "6"],
    ["empty protocol", { egress: [{ ports: [{ protocol: "", port: 1 }] }] }, "spec.egress[0].ports[0].protocol", '""'],
    ["to not a list", { egress: [{ to: "10.0.0.0/8" }] }, "spec.egress[0].to", "10.0.0.0/8"],
    ["ports not a list", { egress: [{ ports: 443 }] }, "spec.egress[0].ports", "443"],
    ["rule not an object", { ingress: [{}, "allow all"] }, "spec.ingress[1]", "allow all"],
    ["egress not a list", { egress: { to: [] } }, "spec.egress", "to"],
  ])("%s", (_what, spec, path, value) => {
    const p = problemAt(problems(cwnp(spec)), path);
    expect(p.message).toContain(value);
  });

  test("a block without cidr is rejected at its cidr path", () => {
    problemAt(problems(cwnp({ egress: [{ to: [{ except: ["10.0.0.0/8"] }] }] })), "spec.egress[0].to[0].cidr");
  });

  test("formatted problems read like the SPEC example", () => {
    const ps = problems(cwnp({ egress: [{ to: [{ cidr: "203.0.113.0/28", except: ["198.51.100.0/24"] }] }] }));
    expect(formatProblems(ps)).toBe("spec.egress[0].to[0].except[0]: 198.51.100.0/24 is not inside cidr 203.0.113.0/28");
  });

  test("wrong apiVersion and kind are rejected", () => {
    const ps = problems({ apiVersion: "metal-stack.io/v2", kind: "NetworkPolicy", metadata: { name: "p", namespace: "firewall" } });
    expect(problemAt(ps, "apiVersion").message).toContain("metal-stack.io/v2");
    expect(problemAt(ps, "kind").message).toContain("NetworkPolicy");
  });

  test("missing metadata is rejected", () => {
    problemAt(problems({ apiVersion: "metal-stack.io/v1", kind: "ClusterwideNetworkPolicy", spec: {} }), "metadata");
  });

  test("a spec that is not an object is rejected", () => {
    expect(problemAt(problems(cwnp("allow everything")), "spec").message).toContain("allow everything");
  });
});

describe("parsePolicy: every problem of an object is reported", () => {
  test("problems in different rules, blocks and ports are all reported", () => {
    const ps = problems(
      cwnp({
        egress: [
          { to: [{ cidr: "1.2.3/24" }, { cidr: "10.0.0.0/8", except: ["192.0.2.0/24"] }], ports: [{ port: 0 }, { port: "dns" }] },
          { ports: [{ protocol: "GRE", port: 1 }, { port: 10, endPort: 5 }] },
        ],
        ingress: [{ from: [{ cidr: "10.0.0.0/33" }] }],
      }),
    );
    const expected: [string, string][] = [
      ["spec.egress[0].to[0].cidr", "1.2.3/24"],
      ["spec.egress[0].to[1].except[0]", "192.0.2.0/24"],
      ["spec.egress[0].ports[0].port", "0"],
      ["spec.egress[0].ports[1].port", "dns"],
      ["spec.egress[1].ports[0].protocol", "GRE"],
      ["spec.egress[1].ports[1].endPort", "5"],
      ["spec.ingress[0].from[0].cidr", "10.0.0.0/33"],
    ];
    for (const [path, value] of expected) expect(problemAt(ps, path).message).toContain(value);
    expect(ps.length).toBe(expected.length);
  });

  test("invalid protocol and invalid port in the same entry are both reported", () => {
    const ps = problems(cwnp({ egress: [{ ports: [{ protocol: "ICMP", port: 0 }] }] }));
    expect(problemAt(ps, "spec.egress[0].ports[0].protocol").message).toContain("ICMP");
    expect(problemAt(ps, "spec.egress[0].ports[0].port").message).toContain("0");
  });

  // BUG (lib/api/policy.ts IPBlockSchema): the containment check runs in a pipe step after the
  // object schema; valibot skips it once any except fails to parse, so the second problem is lost.
  test("an unparseable except does not hide another except outside the block", () => {
    const ps = problems(cwnp({ egress: [{ to: [{ cidr: "203.0.113.0/24", except: ["junk", "198.51.100.0/24"] }] }] }));
    expect(problemAt(ps, "spec.egress[0].to[0].except[0]").message).toContain("junk");
    expect(problemAt(ps, "spec.egress[0].to[0].except[1]").message).toContain("198.51.100.0/24");
  });

  // BUG (lib/api/policy.ts PortSchema): same mechanism; the endPort check is skipped when the protocol is invalid.
  test("an invalid protocol does not hide endPort below port in the same entry", () => {
    const ps = problems(cwnp({ egress: [{ ports: [{ protocol: "ICMP", port: 100, endPort: 50 }] }] }));
    expect(problemAt(ps, "spec.egress[0].ports[0].protocol").message).toContain("ICMP");
    expect(problemAt(ps, "spec.egress[0].ports[0].endPort").message).toContain("50");
  });
});

// BUG (lib/api/policy.ts ProtocolSchema): the protocol is looked up with PROTOCOLS[value] on a plain object,
// so names of Object.prototype members pass validation (the "protocol" becomes a function/object) and
// renderRuleset then throws "Invalid mix of BigInt and other type": one such policy stops every ruleset update.
describe("parsePolicy: protocol names inherited from Object.prototype are not protocols", () => {
  test.each([["constructor"], ["toString"], ["__proto__"], ["valueOf"], ["hasOwnProperty"]])("%p is rejected with the value in the message", (protocol) => {
    const p = problemAt(problems(cwnp({ egress: [{ ports: [{ protocol, port: 443 }] }] })), "spec.egress[0].ports[0].protocol");
    expect(p.message).toContain(protocol);
  });
});

describe("parsePolicy: hostile names are rejected via metadata.name", () => {
  test.each([
    ['"; flush ruleset'],
    ["a\"b"],
    ["allow\ndns"],
    ["allow dns"],
    ["Allow-DNS"],
    ["ALLOW"],
    ["a".repeat(300)],
    [""],
    ["-allow"],
    ["allow-"],
    ["allow_dns"],
    ["allow;dns"],
    ["allow}dns"],
    ["$(reboot)"],
    ["allow\u00e4"],
    ["a..b"],
  ])("%p", (name) => {
    const p = problemAt(problems(cwnp({}, { name, namespace: "firewall" })), "metadata.name");
    expect(p.message).toContain(JSON.stringify(name).slice(0, 100));
  });

  test("a name that is not a string is rejected", () => {
    expect(problemAt(problems(cwnp({}, { name: 42, namespace: "firewall" })), "metadata.name").message).toContain("42");
  });

  test("a hostile namespace is rejected via metadata.namespace", () => {
    expect(problemAt(problems(cwnp({}, { name: "p", namespace: 'fire"wall' })), "metadata.namespace").message).toContain("fire");
  });

  test.each([["allow-dns"], ["a"], ["0"], ["allow.dns.v2"], ["a".repeat(253)]])("valid name %p is accepted", (name) => {
    expect(valid(cwnp({}, { name, namespace: "firewall" })).name).toBe(name);
  });
});

describe("parsePolicy: valid inputs", () => {
  test.each([
    ["missing to", { egress: [{ ports: [{ port: 443 }] }] }],
    ["empty to", { egress: [{ to: [], ports: [{ port: 443 }] }] }],
    ["null to", { egress: [{ to: null, ports: [{ port: 443 }] }] }],
  ])("%s means any destination (peers null)", (_what, spec) => {
    const p = valid(cwnp(spec));
    expect(p.egress).toHaveLength(1);
    expect(p.egress[0]?.peers).toBeNull();
    expect(p.egress[0]?.ports).toEqual([{ protocol: "tcp", first: 443, last: 443 }]);
  });

  test.each([
    ["missing from", { ingress: [{}] }],
    ["empty from and ports", { ingress: [{ from: [], ports: [] }] }],
    ["null from and ports", { ingress: [{ from: null, ports: null }] }],
  ])("%s means any source and every port", (_what, spec) => {
    const p = valid(cwnp(spec));
    expect(p.ingress).toEqual([{ peers: null, ports: null }]);
  });

  test.each([
    ["missing ports", { egress: [{ to: [{ cidr: "192.0.2.0/24" }] }] }],
    ["empty ports", { egress: [{ to: [{ cidr: "192.0.2.0/24" }], ports: [] }] }],
    ["null ports", { egress: [{ to: [{ cidr: "192.0.2.0/24" }], ports: null }] }],
  ])("%s means every protocol and port (ports null)", (_what, spec) => {
    const p = valid(cwnp(spec));
    expect(p.egress[0]?.ports).toBeNull();
    expect(p.egress[0]?.peers?.[0]?.cidr.text).toBe("192.0.2.0/24");
  });

  test.each([
    ["protocol defaults to TCP", { port: 443 }, { protocol: "tcp", first: 443, last: 443 }],
    ["UDP", { protocol: "UDP", port: 53 }, { protocol: "udp", first: 53, last: 53 }],
    ["SCTP", { protocol: "SCTP", port: 3868 }, { protocol: "sctp", first: 3868, last: 3868 }],
    ["endPort gives an inclusive range", { port: 8000, endPort: 8100 }, { protocol: "tcp", first: 8000, last: 8100 }],
    ["endPort equal to port", { port: 22, endPort: 22 }, { protocol: "tcp", first: 22, last: 22 }],
    ["extreme ports", { protocol: "UDP", port: 1, endPort: 65535 }, { protocol: "udp", first: 1, last: 65535 }],
    ["only a protocol means all its ports", { protocol: "UDP" }, { protocol: "udp", first: 0, last: 65535 }],
    ["an empty port object means all TCP ports", {}, { protocol: "tcp", first: 0, last: 65535 }],
  ])("%s", (_what, port, expected) => {
    expect(valid(cwnp({ egress: [{ ports: [port] }] })).egress[0]?.ports).toEqual([expected] as never);
  });

  test("IPv4 and IPv6 blocks with their own excepts are kept per block", () => {
    const p = valid(
      cwnp({
        egress: [
          {
            to: [
              { cidr: "203.0.113.0/24", except: ["203.0.113.0/28"] },
              { cidr: "2001:db8:443::/48", except: ["2001:db8:443:ff::/64"] },
            ],
          },
        ],
      }),
    );
    const peers = p.egress[0]?.peers ?? [];
    expect(peers.map((b) => [b.cidr.text, b.except.map((e) => e.text)])).toEqual([
      ["203.0.113.0/24", ["203.0.113.0/28"]],
      ["2001:db8:443::/48", ["2001:db8:443:ff::/64"]],
    ]);
    expect(peers[1]?.cidr.family).toBe(6);
  });

  test("an except equal to its cidr is valid", () => {
    expect(valid(cwnp({ egress: [{ to: [{ cidr: "10.0.0.0/8", except: ["10.0.0.0/8"] }] }] })).egress[0]?.peers?.[0]?.except).toHaveLength(1);
  });

  test("null except means none", () => {
    expect(valid(cwnp({ egress: [{ to: [{ cidr: "10.0.0.0/8", except: null }] }] })).egress[0]?.peers?.[0]?.except).toEqual([]);
  });

  test("host bits are normalised and reported as notes naming the input and the result", () => {
    const r = parsePolicy(cwnp({ ingress: [{ from: [{ cidr: "10.1.2.3/8", except: ["10.1.2.3/16"] }] }] }));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.ingress[0]?.peers?.[0]?.cidr.text).toBe("10.0.0.0/8");
    expect(r.notes).toEqual([
      { path: "spec.ingress[0].from[0].cidr", message: expect.stringContaining("10.1.2.3/8") },
      { path: "spec.ingress[0].from[0].except[0]", message: expect.stringContaining("10.1.2.3/16") },
    ]);
    expect(r.notes[0]?.message).toContain("10.0.0.0/8");
  });

  test("clean input has no notes", () => {
    const r = parsePolicy(cwnp({ egress: [{ to: [{ cidr: "10.0.0.0/8" }] }] }));
    expect(r.ok && r.notes).toEqual([]);
  });

  test("a policy without spec, or with empty lists, accepts nothing", () => {
    const none = { apiVersion: "metal-stack.io/v1", kind: "ClusterwideNetworkPolicy", metadata: { name: "p", namespace: "firewall" } };
    expect(valid(none)).toMatchObject({ ingress: [], egress: [] });
    expect(valid(cwnp({ ingress: [], egress: null }))).toMatchObject({ ingress: [], egress: [] });
  });

  test("name, namespace and generation are taken from metadata", () => {
    const p = valid(cwnp({}, { name: "allow-dns", namespace: "firewall", generation: 7 }));
    expect(p).toMatchObject({ name: "allow-dns", namespace: "firewall", generation: 7 });
  });

  test("fields the product does not use are ignored, never rejected", () => {
    const p = valid({
      apiVersion: "metal-stack.io/v1",
      kind: "ClusterwideNetworkPolicy",
      metadata: {
        name: "allow-dns",
        namespace: "firewall",
        uid: "0b0c6f0e-1",
        resourceVersion: "12345",
        creationTimestamp: "2026-01-01T00:00:00Z",
        labels: { app: "x" },
        annotations: { "kubectl.kubernetes.io/last-applied-configuration": '{"weird": "\\"; flush ruleset"}' },
        managedFields: [{ manager: "kubectl", operation: "Apply", fieldsV1: { "f:spec": {} } }],
        finalizers: ["x"],
      },
      spec: {
        description: '"; flush ruleset\n}',
        podSelector: {},
        egress: [{ to: [{ cidr: "198.51.100.53/32" }], ports: [{ protocol: "UDP", port: 53 }] }],
      },
      status: { state: "Invalid", message: "old", observedGeneration: 3 },
    });
    expect(p.egress).toEqual([
      { peers: [{ cidr: expect.objectContaining({ text: "198.51.100.53/32" }), except: [] }], ports: [{ protocol: "udp", first: 53, last: 53 }] },
    ]);
  });
});

// SPEC §3.2: "Unknown keys inside a policy's rules, blocks and ports are rejected with their path: a
// typo must never widen a rule." Before, `to` in an ingress rule (for `from`) and `prot` (for
// `protocol`) were ignored: the rule opened every source and every TCP port, with exit 0.
describe("parsePolicy: unknown keys inside rules, blocks and ports are rejected with their path", () => {
  test("the issue's example: to in an ingress rule, prot in a port", () => {
    const ps = problems(cwnp({ ingress: [{ to: [{ cidr: "203.0.113.0/24" }], ports: [{ prot: 22 }] }] }));
    expect(ps).toEqual([
      { path: "spec.ingress[0].ports[0].prot", message: "unknown key (ports take protocol, port, endPort)" },
      { path: "spec.ingress[0].to", message: "unknown key (ingress rules take from, ports)" },
    ]);
  });

  test.each([
    ["from in an egress rule", { egress: [{ from: [{ cidr: "10.0.0.0/8" }] }] }, "spec.egress[0].from", "unknown key (egress rules take to, ports)"],
    ["a misspelt ports", { egress: [{ to: [{ cidr: "10.0.0.0/8" }], port: [{ port: 53 }] }] }, "spec.egress[0].port", "unknown key (egress rules take to, ports)"],
    ["a comment in a rule", { egress: [{ to: [{ cidr: "10.0.0.0/8" }], comment: "x" }] }, "spec.egress[0].comment", "unknown key (egress rules take to, ports)"],
    ["excepts for except", { egress: [{ to: [{ cidr: "10.0.0.0/8", excepts: ["10.1.0.0/16"] }] }] }, "spec.egress[0].to[0].excepts", "unknown key (IP blocks take cidr, except)"],
    ["a Kubernetes-style ipBlock", { ingress: [{ from: [{ ipBlock: { cidr: "10.0.0.0/8" }, cidr: "10.0.0.0/8" }] }] }, "spec.ingress[0].from[0].ipBlock", "unknown key (IP blocks take cidr, except)"],
    ["end_port for endPort", { egress: [{ ports: [{ port: 1000, end_port: 2000 }] }] }, "spec.egress[0].ports[0].end_port", "unknown key (ports take protocol, port, endPort)"],
    ["a named port's name", { egress: [{ ports: [{ protocol: "UDP", port: 53, name: "dns" }] }] }, "spec.egress[0].ports[0].name", "unknown key (ports take protocol, port, endPort)"],
    ["__proto__ as an own key (as JSON.parse makes it)", { egress: [JSON.parse('{"__proto__": {"x": 1}, "to": [{"cidr": "10.0.0.0/8"}]}')] }, "spec.egress[0].__proto__", "unknown key (egress rules take to, ports)"],
    ["constructor in a port", { egress: [{ ports: [{ port: 53, constructor: 1 }] }] }, "spec.egress[0].ports[0].constructor", "unknown key (ports take protocol, port, endPort)"],
  ])("%s", (_what, spec, path, message) => {
    expect(problemAt(problems(cwnp(spec)), path).message).toBe(message);
  });

  test("a key that is not a plain name is shown quoted and escaped in the path", () => {
    const ps = problems(cwnp({ egress: [{ ports: [{ port: 53, "x\n\u202ey": 1 }] }] }));
    expect(ps).toEqual([{ path: 'spec.egress[0].ports[0]["x\\n\\u202ey"]', message: "unknown key (ports take protocol, port, endPort)" }]);
  });

  test("unknown keys and bad values are all reported at once", () => {
    const ps = problems(cwnp({
      egress: [{ to: [{ cidr: "10.0.0.0/33", mask: 8 }], ports: [{ protocol: "ICMP", prot: 1 }], extra: 1, more: 2 }],
      ingress: [{ to: [] }],
    }));
    expect(ps.map((p) => p.path)).toEqual([
      "spec.ingress[0].to",
      "spec.egress[0].to[0].mask",
      "spec.egress[0].to[0].cidr",
      "spec.egress[0].ports[0].prot",
      "spec.egress[0].ports[0].protocol",
      "spec.egress[0].extra",
      "spec.egress[0].more",
    ]);
  });

  test("unknown keys elsewhere stay ignored: spec, metadata, top level, status (SPEC §3)", () => {
    const p = valid({
      ...cwnp({ podSelector: {}, policyTypes: ["Egress"], egress: [{ to: [{ cidr: "10.0.0.0/8" }] }] }, { name: "p", namespace: "firewall", uid: 42, labels: { a: "b" } }),
      extra: true,
      status: { anything: 1 },
    });
    expect(p.egress).toHaveLength(1);
  });

  test("every key the CRD allows is accepted (crds/clusterwidenetworkpolicies.metal-stack.io.yaml)", () => {
    const p = valid(cwnp({
      description: "all CRD fields",
      ingress: [{ from: [{ cidr: "192.0.2.0/24", except: ["192.0.2.0/28"] }], ports: [{ protocol: "TCP", port: 80, endPort: 90 }] }],
      egress: [{ to: [{ cidr: "198.51.100.0/24", except: ["198.51.100.0/28"] }], ports: [{ protocol: "UDP", port: 53, endPort: 53 }] }],
    }));
    expect(p.ingress[0]?.ports).toEqual([{ protocol: "tcp", first: 80, last: 90 }]);
    expect(p.egress[0]?.ports).toEqual([{ protocol: "udp", first: 53, last: 53 }]);
  });
});

describe("parsePolicy: hostile values reach messages escaped (SPEC §8)", () => {
  test("a protocol (a field with a default) carrying an ESC sequence, C1 CSI and a bidi override", () => {
    const ps = problems(cwnp({ egress: [{ ports: [{ protocol: "\x1b[2J\u009b31m\u202eTCP", port: 1 }] }] }));
    expect(ps).toEqual([{ path: "spec.egress[0].ports[0].protocol", message: '"\\u001b[2J\\x9b31m\\u202eTCP" is not a protocol (TCP, UDP or SCTP)' }]);
  });

  test("a newline in a value cannot forge a report line", () => {
    const ps = problems(cwnp({ egress: [{ to: [{ cidr: "x\nrejected ClusterwideNetworkPolicy firewall/evil" }] }] }));
    for (const p of ps) expect(p.message).not.toContain("\n");
  });

  test("a 5 MB protocol value gives a bounded message that says how much was cut", () => {
    const ps = problems(cwnp({ egress: [{ ports: [{ protocol: "U".repeat(5_000_000) }] }] }));
    expect(ps).toEqual([{ path: "spec.egress[0].ports[0].protocol", message: `"${"U".repeat(120)}"…(4,999,880 more characters) is not a protocol (TCP, UDP or SCTP)` }]);
  });

  test("a 5 MB cidr gives a bounded message", () => {
    const ps = problems(cwnp({ egress: [{ to: [{ cidr: `10.0.0.0/8${" ".repeat(5_000_000)}` }] }] }));
    expect(ps).toHaveLength(1);
    expect(ps[0]?.message.length).toBeLessThan(300);
    expect(ps[0]?.message).toContain("…(4,999,890 more characters)");
  });
});
