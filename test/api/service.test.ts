import { describe, expect, test } from "bun:test";
import { formatProblems, type Problem } from "../../lib/api/problem.ts";
import { isLoadBalancer, type LoadBalancer, parseService } from "../../lib/api/service.ts";

const svc = (spec: Record<string, unknown>, status?: unknown, metadata: Record<string, unknown> = { name: "web", namespace: "shop" }) => ({
  apiVersion: "v1",
  kind: "Service",
  metadata,
  spec: { type: "LoadBalancer", ...spec },
  ...(status === undefined ? {} : { status }),
});

function valid(input: unknown): LoadBalancer {
  const r = parseService(input);
  if (!r.ok) throw new Error(`expected a valid service, got: ${formatProblems(r.problems)}`);
  return r.value;
}

function problemAt(input: unknown, path: string): Problem {
  const r = parseService(input);
  if (r.ok) throw new Error("expected an invalid service");
  const p = r.problems.find((x) => x.path === path);
  if (!p) throw new Error(`no problem at ${path}; problems: ${formatProblems(r.problems)}`);
  return p;
}

describe("isLoadBalancer", () => {
  test.each([
    ["type LoadBalancer opens something", { spec: { type: "LoadBalancer" } }, true],
    ["type ClusterIP is not a load balancer", { spec: { type: "ClusterIP" } }, false],
    ["type NodePort is not a load balancer", { spec: { type: "NodePort" } }, false],
    ["no type is not a load balancer", { spec: {} }, false],
    ["no spec is not a load balancer", {}, false],
    ["null is not a load balancer", null, false],
    ["a string is not a load balancer", "LoadBalancer", false],
  ])("%s", (_what, input, expected) => {
    expect(isLoadBalancer(input)).toBe(expected);
  });
});

describe("parseService: valid LoadBalancer services", () => {
  test("addresses come from status ingress ips and spec.loadBalancerIP, deduplicated, IPv4 and IPv6", () => {
    const s = valid(
      svc(
        { loadBalancerIP: "2001:db8::80", ports: [{ port: 443 }] },
        { loadBalancer: { ingress: [{ ip: "203.0.113.80" }, { hostname: "lb.example" }, { ip: "203.0.113.80" }, { ip: "2001:db8::80" }] } },
      ),
    );
    expect(s.addresses.map((a) => [a.family, a.text])).toEqual([
      [4, "203.0.113.80"],
      [6, "2001:db8::80"],
    ]);
  });

  test("ports keep their protocol, TCP by default", () => {
    const s = valid(svc({ ports: [{ port: 443 }, { port: 53, protocol: "UDP" }, { port: 3868, protocol: "SCTP" }] }));
    expect(s.ports).toEqual([
      { protocol: "tcp", port: 443 },
      { protocol: "udp", port: 53 },
      { protocol: "sctp", port: 3868 },
    ]);
  });

  test("loadBalancerSourceRanges are parsed; empty means any source", () => {
    expect(valid(svc({ loadBalancerSourceRanges: ["198.51.100.0/24", "2001:db8:1::/48"] })).sourceRanges.map((c) => c.text)).toEqual(["198.51.100.0/24", "2001:db8:1::/48"]);
    expect(valid(svc({ loadBalancerSourceRanges: [] })).sourceRanges).toEqual([]);
    expect(valid(svc({})).sourceRanges).toEqual([]);
  });

  test("an empty loadBalancerIP and a missing status mean no addresses", () => {
    const s = valid(svc({ loadBalancerIP: "", ports: [{ port: 80 }] }));
    expect(s.addresses).toEqual([]);
    expect(valid(svc({ ports: null }, { loadBalancer: {} }))).toMatchObject({ addresses: [], ports: [] });
  });

  test("fields the product does not use are ignored", () => {
    const s = valid({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "web", namespace: "shop", annotations: { a: "b" }, managedFields: [{}], labels: { x: "y" } },
      spec: {
        type: "LoadBalancer",
        ipFamilies: ["IPv4", "IPv6"],
        ipFamilyPolicy: "PreferDualStack",
        clusterIP: "10.96.0.10",
        selector: { app: "web" },
        externalTrafficPolicy: "Local",
        ports: [{ name: "https", port: 443, targetPort: "https", nodePort: 31443, appProtocol: "https" }],
      },
      status: { loadBalancer: { ingress: [{ ip: "203.0.113.80", ipMode: "VIP", ports: [] }] }, conditions: [] },
    });
    expect(s).toMatchObject({ namespace: "shop", name: "web", ports: [{ protocol: "tcp", port: 443 }] });
  });
});

describe("parseService: invalid LoadBalancer services are rejected with path and value", () => {
  test.each([
    ["port 0", svc({ ports: [{ port: 0 }] }), "spec.ports[0].port", "0"],
    ["port 70000", svc({ ports: [{ port: 80 }, { port: 70000 }] }), "spec.ports[1].port", "70000"],
    ["named port", svc({ ports: [{ port: "http" }] }), "spec.ports[0].port", "http"],
    ["bad protocol", svc({ ports: [{ port: 1, protocol: "ICMP" }] }), "spec.ports[0].protocol", "ICMP"],
    ["bad source range", svc({ loadBalancerSourceRanges: ["1.2.3/24"] }), "spec.loadBalancerSourceRanges[0]", "1.2.3/24"],
    ["bad loadBalancerIP", svc({ loadBalancerIP: "203.0.113" }), "spec.loadBalancerIP", "203.0.113"],
    ["bad ingress ip", svc({}, { loadBalancer: { ingress: [{ ip: "0x1.2.3.4" }] } }), "status.loadBalancer.ingress[0].ip", "0x1.2.3.4"],
    ["ingress ip with a prefix", svc({}, { loadBalancer: { ingress: [{ ip: "203.0.113.80/32" }] } }), "status.loadBalancer.ingress[0].ip", "203.0.113.80/32"],
    ["hostile name", svc({}, undefined, { name: 'web"; flush ruleset', namespace: "shop" }), "metadata.name", "flush ruleset"],
    ["hostile namespace", svc({}, undefined, { name: "web", namespace: "Shop\n" }), "metadata.namespace", "Shop"],
  ])("%s", (_what, input, path, value) => {
    expect(problemAt(input, path).message).toContain(value);
  });

  test("every problem is reported", () => {
    const r = parseService(svc({ ports: [{ port: 0 }, { port: 1, protocol: "ICMP" }], loadBalancerSourceRanges: ["junk"] }, { loadBalancer: { ingress: [{ ip: "1.2.3" }] } }));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.problems.map((p) => p.path).sort()).toEqual(["spec.loadBalancerSourceRanges[0]", "spec.ports[0].port", "spec.ports[1].protocol", "status.loadBalancer.ingress[0].ip"]);
  });
});

// BUG (lib/api/policy.ts ProtocolSchema, shared by services): PROTOCOLS[value] on a plain object accepts
// "constructor", "toString", ... A LoadBalancer Service in ANY namespace with such a protocol passes
// validation and makes renderRuleset throw, so no ruleset update happens for anyone.
describe("parseService: protocol names inherited from Object.prototype are not protocols", () => {
  test.each([["constructor"], ["toString"], ["__proto__"], ["valueOf"]])("%p is rejected", (protocol) => {
    expect(problemAt(svc({ ports: [{ port: 443, protocol }] }), "spec.ports[0].protocol").message).toContain(protocol);
  });
});

describe("parseService: notes", () => {
  test("host bits in loadBalancerSourceRanges are cleared and noted, as for policies", () => {
    const r = parseService(svc({ ports: [{ port: 443 }], loadBalancerSourceRanges: ["203.0.113.9/24", "198.51.100.0/24", "2001:db8::1/32"] }));
    if (!r.ok) throw new Error(formatProblems(r.problems));
    expect(r.value.sourceRanges.map((c) => c.text)).toEqual(["203.0.113.0/24", "198.51.100.0/24", "2001:db8::/32"]);
    expect(r.notes).toEqual([
      { path: "spec.loadBalancerSourceRanges[0]", message: '"203.0.113.9/24" has host bits set; using 203.0.113.0/24' },
      { path: "spec.loadBalancerSourceRanges[2]", message: '"2001:db8::1/32" has host bits set; using 2001:db8::/32' },
    ]);
  });

  test("clean ranges give no notes", () => {
    const r = parseService(svc({ ports: [{ port: 443 }], loadBalancerSourceRanges: ["203.0.113.0/24"] }));
    expect(r.ok && r.notes).toEqual([]);
  });

  test("unknown Service fields and a numeric uid stay ignored (SPEC §3)", () => {
    const s = valid(svc({ ports: [{ port: 443, name: "https", targetPort: 8443, nodePort: 31000, appProtocol: "h2" }], ipFamilies: ["IPv4"], externalTrafficPolicy: "Local" }, undefined, { name: "web", namespace: "shop", uid: 7 }));
    expect(s.ports).toEqual([{ protocol: "tcp", port: 443 }]);
  });
});
