import { describe, expect, test } from "bun:test";
import { backoffDelay } from "../../lib/kube/backoff.ts";
import { firewallStatus, policyStatus, sameStatus, statsPatch } from "../../lib/kube/status.ts";

const outcome = {
  rules: "applied" as const,
  policies: { ready: 3, invalid: 0, ignored: 1 },
  services: { inEffect: 2, pending: 0 },
  rejectedNames: [] as string[],
  shapingProblems: [] as string[],
};

describe("policy status", () => {
  test("an invalid policy lists every problem with its path and value", () => {
    const s = policyStatus({ kind: "Invalid", problems: [{ path: "spec.egress[0].ports[0].port", message: "0 is not a port (1..65535)" }, { path: "spec.egress[0].to[0].cidr", message: '"x" is not a CIDR block' }] }, 4);
    expect(s).toEqual({ state: "Invalid", message: 'spec.egress[0].ports[0].port: 0 is not a port (1..65535); spec.egress[0].to[0].cidr: "x" is not a CIDR block', observedGeneration: 4 });
  });
  test("an ignored policy says why; a ready one carries its notes and nothing machine-specific", () => {
    expect(policyStatus({ kind: "Ignored", reason: "namespace default is not firewall" }, 1).state).toBe("Ignored");
    expect(policyStatus({ kind: "Ready" }, 2)).toEqual({ state: "Ready", message: "valid", observedGeneration: 2 });
    expect(policyStatus({ kind: "Ready", notes: [{ path: "spec.egress[0].to[0].cidr", message: '"10.1.2.3/8" has host bits set; using 10.0.0.0/8' }] }, 2).message).toBe(
      'valid; spec.egress[0].to[0].cidr: "10.1.2.3/8" has host bits set; using 10.0.0.0/8',
    );
  });
});

describe("firewall status", () => {
  const t0 = new Date("2026-11-27T08:00:00.123Z");
  const t1 = new Date("2026-11-27T08:00:10Z");

  test("Ready and RulesApplied true after an apply, with the generation observed", () => {
    const s = firewallStatus(outcome, t0, 7);
    expect(s.lastRun).toBe("2026-11-27T08:00:00Z");
    expect(s.conditions.map((c) => [c.type, c.status, c.reason, c.observedGeneration])).toEqual([
      ["Ready", "True", "Reconciled", 7],
      ["RulesApplied", "True", "Applied", 7],
    ]);
    expect(s.message).toContain("3 policies and 2 services in effect");
  });

  test("LoadBalancers without an address yet are pending, not in effect", () => {
    const s = firewallStatus({ ...outcome, services: { inEffect: 1, pending: 2 } }, t0, 7);
    expect(s.message).toBe("3 policies and 1 service in effect; 2 services pending (no load balancer address yet); 1 ignored");
  });

  test("a rejected policy's status names what stays in force", () => {
    const problems = [{ path: "spec", message: "renders 12,800 map elements, more than the limit of 10,000 per object" }];
    expect(policyStatus({ kind: "Invalid", problems, inForce: { generation: 3 } }, 4).message).toBe(
      "spec: renders 12,800 map elements, more than the limit of 10,000 per object; generation 3, the last valid one, stays in force",
    );
    expect(policyStatus({ kind: "Invalid", problems, inForce: "unknown" }, 4).message).toBe(
      "spec: renders 12,800 map elements, more than the limit of 10,000 per object; not in force: an earlier version may have been valid, but this controller has not seen one since it started",
    );
    expect(policyStatus({ kind: "Invalid", problems, inForce: "none" }, 1).message).toBe("spec: renders 12,800 map elements, more than the limit of 10,000 per object; not in force");
  });

  test("status messages pass the output gate", () => {
    const s = policyStatus({ kind: "Invalid", problems: [{ path: "spec", message: "x\u001b[2J\u202ey" }] }, 1);
    expect(s.message).toBe("spec: x\\x1b[2J\\u202ey");
  });

  test("a condition keeps its transition time while its status holds, and moves when it flips", () => {
    const first = firewallStatus(outcome, t0, 1);
    const same = firewallStatus({ ...outcome, rules: "unchanged" }, t1, 1, first.conditions);
    expect(same.conditions[0]?.lastTransitionTime).toBe(first.conditions[0]?.lastTransitionTime);
    const failed = firewallStatus({ ...outcome, rules: "failed", failure: { code: "nft_check_failed", message: "nft -c rejected ..." } }, t1, 1, first.conditions);
    expect(failed.conditions[1]).toMatchObject({ status: "False", reason: "NftCheckFailed", lastTransitionTime: "2026-11-27T08:00:10Z" });
    expect(failed.conditions[0]).toMatchObject({ status: "False", reason: "RulesNotApplied" });
  });

  test("rejected policies are named; shaping problems make it not ready", () => {
    const s = firewallStatus({ ...outcome, policies: { ready: 1, invalid: 2, ignored: 0 }, rejectedNames: ["bad-a", "bad-b"], shapingProblems: ["vrf9: does not exist"] }, t0, 1);
    expect(s.message).toContain("2 rejected (bad-a, bad-b)");
    expect(s.conditions[0]).toMatchObject({ status: "False", reason: "ShapingProblems" });
  });

  test("sameStatus ignores key order but not values", () => {
    expect(sameStatus({ a: 1, b: [{ x: 1, y: 2 }] }, { b: [{ y: 2, x: 1 }], a: 1 })).toBe(true);
    expect(sameStatus({ a: 1 }, { a: 2 })).toBe(false);
    expect(sameStatus(undefined, { a: 1 })).toBe(false);
  });
});

describe("backoff", () => {
  test("grows exponentially up to the cap, with full jitter", () => {
    expect(backoffDelay(0, {}, () => 1)).toBe(200);
    expect(backoffDelay(3, {}, () => 1)).toBe(1600);
    expect(backoffDelay(50, {}, () => 1)).toBe(30_000);
    expect(backoffDelay(5, {}, () => 0)).toBe(0);
  });
});

describe("status.stats patch", () => {
  const zero = { in: 0, out: 0, total: 0 };
  test("what is no longer counted is removed (null in the merge patch); what is, is written", () => {
    const next = {
      devices: { external: { in: 1, out: 2, total: 3 }, internal: zero },
      idsstats: { eth1: { packets: 9, drop: 0, invalidchecksums: 0 } },
      rules: { accept: { "accept icmp": { counter: { bytes: 10, packets: 1 } } }, drop: {}, other: {} },
    };
    const current = { idsstats: { eth0: { packets: 1 } }, rules: { accept: { "accept traffic for np gone tcp": { counter: { bytes: 5, packets: 1 } } }, drop: { x: {} } } };
    expect(statsPatch(next, current)).toEqual({
      devices: { external: { in: 1, out: 2, total: 3 }, internal: zero },
      idsstats: { eth0: null, eth1: { packets: 9, drop: 0, invalidchecksums: 0 } },
      rules: { accept: { "accept traffic for np gone tcp": null, "accept icmp": { counter: { bytes: 10, packets: 1 } } }, drop: { x: null }, other: {} },
    });
  });
});
