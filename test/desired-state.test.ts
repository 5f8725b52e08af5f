import { describe, expect, test } from "bun:test";
import { parseCidr } from "../lib/api/address.ts";
import { type Accepted, buildDesiredState, type Classified, FIREWALL_NAMESPACE, formatRef, objectKey } from "../lib/desired-state.ts";
import { LastValid } from "../lib/last-valid.ts";

const cluster = (() => {
  const r = parseCidr("10.0.0.0/8");
  if (!r.ok) throw new Error(r.message);
  return r.value;
})();
const OPTIONS = { firewallName: "firewall", clusterPrefixes: [cluster], privateVrf: 42 };

const cwnp = (name: string, spec: unknown = { egress: [{ ports: [{ port: 443 }] }] }, namespace: string | null = "firewall") => ({
  apiVersion: "metal-stack.io/v1",
  kind: "ClusterwideNetworkPolicy",
  metadata: namespace === null ? { name } : { name, namespace },
  spec,
});
const firewall = (name = "firewall", spec: unknown = { interval: "10s", internalprefixes: ["192.0.2.0/24"] }, namespace = "firewall") => ({
  apiVersion: "metal-stack.io/v1",
  kind: "Firewall",
  metadata: { name, namespace },
  spec,
});
const svc = (name: string, type: string, extra: Record<string, unknown> = {}, namespace = "shop") => ({
  apiVersion: "v1",
  kind: "Service",
  metadata: { name, namespace },
  spec: { type, ports: [{ port: 443 }], ...extra },
  status: { loadBalancer: { ingress: [{ ip: "203.0.113.80" }] } },
});

const build = (objects: unknown[], options: Parameters<typeof buildDesiredState>[1] = OPTIONS): Classified => buildDesiredState(objects.map((object, i) => ({ object, source: `test.yaml#${i}` })), options);
const refNames = (refs: readonly { ref?: { kind: string; name: string }; kind?: string; name?: string }[]) =>
  refs.map((r) => {
    const x = (r.ref ?? r) as { kind: string; name: string };
    return `${x.kind}/${x.name}`;
  });

describe("buildDesiredState: what takes effect", () => {
  test("valid policies, LoadBalancer services and the Firewall are accepted and reach the desired state", () => {
    const c = build([firewall(), cwnp("allow-https"), svc("web", "LoadBalancer")]);
    expect(c.rejected).toEqual([]);
    expect(c.ignored).toEqual([]);
    expect(refNames(c.accepted)).toEqual(["Firewall/firewall", "ClusterwideNetworkPolicy/allow-https", "Service/web"]);
    expect(c.state.policies.map((p) => p.name)).toEqual(["allow-https"]);
    expect(c.state.services.map((s) => `${s.namespace}/${s.name}`)).toEqual(["shop/web"]);
    expect(c.firewall?.intervalMs).toBe(10_000);
    expect(c.firewallPresent).toBe(true);
    expect(c.state.internalPrefixes.map((p) => p.text)).toEqual(["192.0.2.0/24"]);
    expect(c.state.clusterPrefixes).toEqual([cluster]);
    expect(c.state.privateVrf).toBe(42);
  });

  test("no Firewall object: no firewall, no internal prefixes", () => {
    const c = build([cwnp("a")]);
    expect(c.firewall).toBeNull();
    expect(c.firewallPresent).toBe(false);
    expect(c.state.internalPrefixes).toEqual([]);
  });

  test("the namespace of policies and the Firewall is firewall", () => {
    expect(FIREWALL_NAMESPACE).toBe("firewall");
  });

  test("host-bit notes are passed on with the object", () => {
    const c = build([cwnp("hb", { egress: [{ to: [{ cidr: "192.0.2.7/24" }] }] })]);
    expect(c.notes).toHaveLength(1);
    expect(c.notes[0]?.problems[0]?.message).toContain("192.0.2.7/24");
    expect(c.accepted).toHaveLength(1);
  });

  test("a Firewall with a configured name takes effect", () => {
    const c = build([firewall("fw-2"), firewall("firewall")], { ...OPTIONS, firewallName: "fw-2" });
    expect(c.firewall?.name).toBe("fw-2");
    expect(refNames(c.ignored)).toEqual(["Firewall/firewall"]);
  });
});

describe("buildDesiredState: out-of-scope objects are ignored, not rejected", () => {
  test.each([
    ["a policy outside namespace firewall", cwnp("elsewhere", undefined, "default"), "namespace"],
    ["a policy without namespace", cwnp("nowhere", undefined, null), "namespace"],
    ["an invalid policy outside namespace firewall", cwnp("bad-elsewhere", { egress: [{ ports: [{ port: 0 }] }] }, "kube-system"), "namespace"],
    ["a Firewall with another name", firewall("other"), "Firewall firewall/firewall"],
    ["a Firewall in another namespace", firewall("firewall", {}, "default"), "Firewall firewall/firewall"],
    ["a ClusterIP service", svc("internal", "ClusterIP"), "LoadBalancer"],
    ["a NodePort service", svc("np", "NodePort"), "LoadBalancer"],
    ["a service without type", { apiVersion: "v1", kind: "Service", metadata: { name: "x", namespace: "y" }, spec: {} }, "LoadBalancer"],
    ["a ConfigMap", { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "cm", namespace: "firewall" } }, "ConfigMap"],
    ["a NetworkPolicy", { apiVersion: "networking.k8s.io/v1", kind: "NetworkPolicy", metadata: { name: "np", namespace: "firewall" } }, "NetworkPolicy"],
    ["a policy of another API group", { ...cwnp("foreign"), apiVersion: "example.com/v1" }, "example.com/v1"],
    ["an object without kind", { apiVersion: "v1", metadata: { name: "x" } }, "kind"],
  ])("%s", (_what, object, reason) => {
    const c = build([object, cwnp("good")]);
    expect(c.rejected).toEqual([]);
    expect(c.ignored).toHaveLength(1);
    expect(c.ignored[0]?.reason).toContain(reason);
    expect(c.ignored[0]?.ref.source).toBe("test.yaml#0");
    expect(c.state.policies.map((p) => p.name)).toEqual(["good"]);
  });

  test("a ClusterIP service with invalid LoadBalancer fields is still just ignored", () => {
    const c = build([svc("weird", "ClusterIP", { loadBalancerSourceRanges: ["junk"], ports: [{ port: "http" }] })]);
    expect(c.rejected).toEqual([]);
    expect(c.ignored).toHaveLength(1);
  });
});

describe("buildDesiredState: invalid objects are rejected with their problems", () => {
  test("an invalid policy is rejected and does not stop the others", () => {
    const c = build([cwnp("a-good"), cwnp("b-bad", { egress: [{ to: [{ cidr: "203.0.113.0/28", except: ["198.51.100.0/24"] }] }] }), cwnp("c-good"), svc("web", "LoadBalancer")]);
    expect(c.state.policies.map((p) => p.name)).toEqual(["a-good", "c-good"]);
    expect(c.state.services).toHaveLength(1);
    expect(c.rejected).toHaveLength(1);
    const r = c.rejected[0];
    expect(r?.ref).toEqual({ kind: "ClusterwideNetworkPolicy", namespace: "firewall", name: "b-bad", source: "test.yaml#1" });
    expect(r?.problems).toEqual([{ path: "spec.egress[0].to[0].except[0]", message: expect.stringContaining("198.51.100.0/24") }]);
    expect(formatRef(r?.ref as never)).toBe("ClusterwideNetworkPolicy firewall/b-bad (test.yaml#1)");
  });

  test("an invalid LoadBalancer service is rejected and does not stop policies", () => {
    const c = build([svc("bad", "LoadBalancer", { ports: [{ port: 0 }] }), cwnp("p")]);
    expect(c.rejected.map((r) => [r.ref.name, r.problems[0]?.path])).toEqual([["bad", "spec.ports[0].port"]]);
    expect(c.state.policies).toHaveLength(1);
  });

  test("an invalid Firewall is rejected: present, but no firewall spec takes effect", () => {
    const c = build([firewall("firewall", { interval: "never" }), cwnp("p")]);
    expect(c.firewallPresent).toBe(true);
    expect(c.firewall).toBeNull();
    expect(c.rejected[0]?.problems[0]?.message).toContain("never");
    expect(c.state.policies).toHaveLength(1);
  });

  test("a policy with a hostile name is rejected and its ref name is kept for the report", () => {
    const c = build([cwnp('x"; flush ruleset')]);
    expect(c.rejected).toHaveLength(1);
    expect(c.rejected[0]?.problems[0]?.path).toBe("metadata.name");
    expect(c.state.policies).toEqual([]);
  });

  test.each([
    ["null", null],
    ["a string", "kind: oops"],
    ["a list", [1, 2]],
    ["a number", 7],
  ])("a document that is %s is rejected as not a Kubernetes object", (_what, object) => {
    const c = build([object, cwnp("p")]);
    expect(c.rejected).toHaveLength(1);
    expect(c.rejected[0]?.problems[0]?.message).toContain("not a Kubernetes object");
    expect(c.state.policies).toHaveLength(1);
  });
});

describe("buildDesiredState: duplicates are rejected, the first definition wins", () => {
  test("two policies with one name", () => {
    const c = build([cwnp("dup", { egress: [{ ports: [{ port: 1 }] }] }), cwnp("dup", { egress: [{ ports: [{ port: 2 }] }] })]);
    expect(c.state.policies).toHaveLength(1);
    expect(c.state.policies[0]?.egress[0]?.ports?.[0]?.first).toBe(1);
    expect(c.rejected).toHaveLength(1);
    expect(c.rejected[0]?.ref.source).toBe("test.yaml#1");
    expect(c.rejected[0]?.problems[0]).toMatchObject({ path: "metadata.name", message: expect.stringContaining("test.yaml#0") });
  });

  test("two Firewall objects", () => {
    const c = build([firewall("firewall", { interval: "20s" }), firewall("firewall", { interval: "30s" })]);
    expect(c.firewall?.intervalMs).toBe(20_000);
    expect(c.rejected.map((r) => r.problems[0]?.path)).toEqual(["metadata.name"]);
  });

  test("two services with one namespace/name; same name in another namespace is fine", () => {
    const c = build([svc("web", "LoadBalancer"), svc("web", "LoadBalancer"), svc("web", "LoadBalancer", {}, "other")]);
    expect(c.state.services.map((s) => `${s.namespace}/${s.name}`)).toEqual(["shop/web", "other/web"]);
    expect(c.rejected).toHaveLength(1);
    expect(c.rejected[0]?.problems[0]?.message).toContain("shop/web");
  });
});

describe("buildDesiredState: element budget", () => {
  const ports = (name: string, n: number) => cwnp(name, { egress: [{ to: [{ cidr: "203.0.113.0/24" }], ports: Array.from({ length: n }, (_, i) => ({ port: 1 + i })) }] });
  const small = { ...OPTIONS, budget: { perObject: 10, total: 9 } };

  test("an object over the per-object limit is rejected naming count and limit; the others are admitted in name order until the total is reached", () => {
    const c = build([ports("c", 3), ports("a", 5), ports("b", 11), ports("d", 2), svc("web", "LoadBalancer")], small);
    expect(c.state.policies.map((p) => p.name).sort()).toEqual(["a", "c"]);
    expect(c.state.services.map((s) => s.name)).toEqual(["web"]);
    expect(c.rejected.map((r) => [r.ref.name, r.problems])).toEqual([
      ["b", [{ path: "spec", message: "renders 11 map elements, more than the limit of 10 per object" }]],
      ["d", [{ path: "spec", message: "brings the ruleset to 10 map elements, more than the limit of 9 in total (objects already in force come first, then by name)" }]],
    ]);
    expect(refNames(c.accepted).sort()).toEqual(["ClusterwideNetworkPolicy/a", "ClusterwideNetworkPolicy/c", "Service/web"]);
    expect(c.verdicts.get(objectKey("ClusterwideNetworkPolicy", "firewall", "d"))?.state).toBe("rejected");
  });
});

describe("buildDesiredState: verdicts and the last valid version", () => {
  const withMeta = (o: ReturnType<typeof cwnp>, uid: string, generation: number) => ({ ...o, metadata: { ...o.metadata, uid, generation } });

  test("the same objects classified again under other options are routed anew: another firewall name, a smaller per-object budget", () => {
    // From the API (no source): what an object is gets remembered by identity, for these options only.
    const fw = firewall("edge");
    const policy = cwnp("web", { egress: [{ ports: [{ port: 443 }, { port: 444 }] }] });
    const api = (options: Parameters<typeof buildDesiredState>[1]) => buildDesiredState([{ object: fw }, { object: policy }], options);
    const first = api(OPTIONS);
    expect(first.firewallPresent).toBe(false);
    expect(first.verdicts.get(objectKey("Firewall", "firewall", "edge"))?.state).toBe("ignored");
    expect(first.state.policies.map((p) => p.name)).toEqual(["web"]);
    const named = api({ ...OPTIONS, firewallName: "edge" });
    expect(named.firewallPresent).toBe(true);
    expect(named.verdicts.get(objectKey("Firewall", "firewall", "edge"))?.state).toBe("accepted");
    const tight = api({ ...OPTIONS, firewallName: "edge", budget: { perObject: 1, total: 100 } });
    expect(tight.state.policies).toEqual([]);
    expect(tight.verdicts.get(objectKey("ClusterwideNetworkPolicy", "firewall", "web"))?.state).toBe("rejected");
    // And back: the first options give the first answer again.
    expect(api(OPTIONS).state.policies.map((p) => p.name)).toEqual(["web"]);
  });

  test("a policy object gives the very same value each time (parsed once); a new object with only its status changed an equal one (the controller is handed the same object then: Reflector.stableItems); a changed spec or generation does not", () => {
    const api = (o: unknown) => buildDesiredState([{ object: o }], OPTIONS).state.policies[0];
    const a = { ...cwnp("web"), metadata: { name: "web", namespace: "firewall", uid: "u1", generation: 3 } };
    const first = api(a);
    expect(api(a)).toBe(first);
    expect(api({ ...a, status: { state: "Ready", message: "in force" } })).toEqual(first as NonNullable<typeof first>);
    expect(api({ ...a, spec: { egress: [{ ports: [{ port: 444 }] }] } })).not.toBe(first);
    expect(api({ ...a, metadata: { ...a.metadata, generation: 4 } })?.generation).toBe(4);
  });

  test("verdicts are keyed by kind, namespace and name: an invalid Service does not mark the policy of the same name", () => {
    const c = build([cwnp("web"), svc("web", "LoadBalancer", { loadBalancerSourceRanges: ["not-a-cidr"] }, "firewall")]);
    expect(c.verdicts.get(objectKey("ClusterwideNetworkPolicy", "firewall", "web"))?.state).toBe("accepted");
    expect(c.verdicts.get(objectKey("Service", "firewall", "web"))?.state).toBe("rejected");
  });

  test("an invalid update keeps the last valid version in force, for this very object only (same uid)", () => {
    const memory = new LastValid<Accepted>();
    const options = { ...OPTIONS, lastValid: memory };
    const good = withMeta(cwnp("p", { egress: [{ ports: [{ port: 443 }] }] }), "u1", 1);
    const bad = withMeta(cwnp("p", { egress: [{ ports: [{ port: 0 }] }] }), "u1", 2);
    expect(build([good], options).state.policies.map((p) => p.egress[0]?.ports?.[0]?.first)).toEqual([443]);
    const after = build([bad], options);
    expect(after.state.policies.map((p) => p.egress[0]?.ports?.[0]?.first)).toEqual([443]);
    expect(after.rejected.map((r) => r.inForce)).toEqual([{ generation: 1 }]);
    // Recreated under the same name (another uid): nothing is inherited.
    const recreated = build([withMeta(cwnp("p", { egress: [{ ports: [{ port: 0 }] }] }), "u2", 2)], options);
    expect(recreated.state.policies).toEqual([]);
    expect(recreated.rejected.map((r) => r.inForce)).toEqual(["unknown"]);
    // Created invalid: nothing was ever valid.
    const fresh = build([withMeta(cwnp("q", { egress: [{ ports: [{ port: 0 }] }] }), "u3", 1)], { ...OPTIONS, lastValid: new LastValid<Accepted>() });
    expect(fresh.rejected.map((r) => r.inForce)).toEqual(["none"]);
  });

  test("a deleted object is forgotten: its last valid version does not come back", () => {
    const memory = new LastValid<Accepted>();
    build([withMeta(cwnp("p"), "u1", 1)], { ...OPTIONS, lastValid: memory });
    expect(memory.size).toBe(1);
    build([], { ...OPTIONS, lastValid: memory });
    expect(memory.size).toBe(0);
  });
});

describe("buildDesiredState: the total budget keeps what is in force", () => {
  test("objects admitted last time come first: a newcomer sorted before them cannot push them out", () => {
    const ports = (name: string, n: number) => cwnp(name, { egress: [{ to: [{ cidr: "203.0.113.0/24" }], ports: Array.from({ length: n }, (_, i) => ({ port: 1 + i })) }] });
    const small = { ...OPTIONS, budget: { perObject: 10, total: 9 } };
    const first = build([ports("m", 5), ports("z", 4)], small);
    expect(first.state.policies.map((p) => p.name).sort()).toEqual(["m", "z"]);
    const next = build([ports("a-newcomer", 6), ports("m", 5), ports("z", 4)], { ...small, admitted: first.admitted });
    expect(next.state.policies.map((p) => p.name).sort()).toEqual(["m", "z"]);
    expect(next.rejected.map((r) => [r.ref.name, r.problems[0]?.message])).toEqual([
      ["a-newcomer", "brings the ruleset to 15 map elements, more than the limit of 9 in total (objects already in force come first, then by name)"],
    ]);
  });

  test("an object rejected by the total budget is not remembered as a valid version", () => {
    const memory = new LastValid<Accepted>();
    const big = { ...cwnp("big", { egress: [{ to: [{ cidr: "203.0.113.0/24" }], ports: Array.from({ length: 8 }, (_, i) => ({ port: 1 + i })) }] }), metadata: { name: "big", namespace: "firewall", uid: "u", generation: 1 } };
    const c = build([cwnp("a", { egress: [{ to: [{ cidr: "198.51.100.0/24" }], ports: [{ port: 1 }, { port: 2 }] }] }), big], { ...OPTIONS, lastValid: memory, budget: { perObject: 10, total: 9 } });
    expect(c.state.policies.map((p) => p.name)).toEqual(["a"]);
    expect(memory.recall(objectKey("ClusterwideNetworkPolicy", "firewall", "big"), "u")).toBeUndefined();
  });
});
