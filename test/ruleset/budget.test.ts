import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { parsePolicy } from "../../lib/api/policy.ts";
import { parseService } from "../../lib/api/service.ts";
import { budgetProblem, ELEMENT_BUDGET, policyElementCount, serviceElementCount } from "../../lib/ruleset/budget.ts";
import { renderRuleset } from "../../lib/ruleset/render.ts";
import { policiesArb, servicesArb } from "./arbitraries.ts";
import { elementCount, policy, service, state } from "./helpers.ts";

/** 150 separate hosts, every protocol and port. */
const hosts = policy("a-hosts", { egress: [{ to: Array.from({ length: 150 }, (_, i) => ({ cidr: `198.51.${100 + (i >> 7)}.${(i % 128) * 2}/32` })) }] });
/** Any destination, 300 separate TCP ports. */
const ports = policy("b-ports", { egress: [{ ports: Array.from({ length: 300 }, (_, i) => ({ port: 1000 + 2 * i })) }] });

/** One /8 with 1,000 separate excepts and 1,000 separate ports: 1,001 ranges x 1,000 ports. */
const million = policy("million", {
  egress: [{ to: [{ cidr: "10.0.0.0/8", except: Array.from({ length: 1000 }, (_, i) => `10.${Math.floor(i / 128)}.${(i % 128) * 2 + 1}.0/24`) }], ports: Array.from({ length: 1000 }, (_, i) => ({ port: 1 + 2 * i })) }],
});

describe("element budget: counts", () => {
  test("a rule counts its address ranges times its port entries, a rule without ports four entries per range", () => {
    expect(policyElementCount(policy("dns", { egress: [{ to: [{ cidr: "198.51.100.53/32" }, { cidr: "2001:db8::53/128" }], ports: [{ protocol: "UDP", port: 53 }, { port: 53 }] }] }))).toBe(4);
    expect(policyElementCount(policy("open", { egress: [{}], ingress: [{}] }))).toBe(16);
    expect(policyElementCount(policy("except", { egress: [{ to: [{ cidr: "203.0.113.0/24", except: ["203.0.113.16/28", "203.0.113.128/25"] }], ports: [{ port: 443 }] }] }))).toBe(2);
    expect(policyElementCount(hosts)).toBe(600);
    expect(policyElementCount(ports)).toBe(600);
  });

  test("a service counts addresses times ports times source ranges of the address's family", () => {
    expect(serviceElementCount(service("shop", "web", { ports: [{ port: 443 }, { port: 80 }], loadBalancerSourceRanges: ["198.51.100.0/24", "192.0.2.0/24", "2001:db8::/32"] }, ["203.0.113.80", "2001:db8::80"]))).toBe(6);
    expect(serviceElementCount(service("shop", "pending", { ports: [{ port: 443 }] }))).toBe(0);
  });

  test("the 1,001,000-element policy is counted in milliseconds and is over the per-object limit", () => {
    const t0 = performance.now();
    const n = policyElementCount(million);
    const ms = performance.now() - t0;
    expect(n).toBe(1_001_000);
    expect(ms).toBeLessThan(50);
    expect(n).toBeGreaterThan(ELEMENT_BUDGET.perObject);
    expect(budgetProblem(n, ELEMENT_BUDGET.perObject, "object")).toEqual({ path: "spec", message: "renders 1,001,000 map elements, more than the limit of 10,000 per object" });
  });

  test("the limits are 10,000 per object and 200,000 in total", () => {
    expect(ELEMENT_BUDGET).toEqual({ perObject: 10_000, total: 200_000 });
  });
});

describe("element budget: no cross products", () => {
  // Split into disjoint pieces of one map, these two rendered 46,200 elements (every gap between hosts times every port).
  test("150 all-port hosts and 300 any-destination ports render exactly the sum of their own elements", () => {
    const r = renderRuleset(state({ policies: [hosts, ports] }));
    expect(r.elementCount).toBe(1200);
    expect(r.elementCount).toBeLessThanOrEqual(policyElementCount(hosts) + policyElementCount(ports));
    expect([...r.elements].filter(([, e]) => e.size > 0).map(([m, e]) => [m, e.size])).toEqual([
      ["egress4_ports", 450],
      ["egress4_ports_1", 300],
      ["egress4_any", 150],
      ["egress6_ports", 300],
    ]);
    expect(elementCount(r.text)).toBe(1200);
  });

  test("10,000 policies that do not overlap use one layer per map", () => {
    const many = Array.from({ length: 10_000 }, (_, i) => policy(`p-${i}`, { egress: [{ to: [{ cidr: `10.${i >> 8}.${i & 255}.0/24` }], ports: [{ port: 443 }] }] }));
    const r = renderRuleset(state({ policies: many }));
    expect(r.elementCount).toBe(10_000);
    expect([...r.elements.keys()].filter((m) => /_\d+$/.test(m))).toEqual([]);
  });

  test("property: the rendered ruleset never has more map elements than the sum of its objects' counts", () => {
    fc.assert(
      fc.property(policiesArb(6), servicesArb(4), (rawPolicies, rawServices) => {
        const policies = rawPolicies.map((o) => {
          const r = parsePolicy(o);
          if (!r.ok) throw new Error("generator produced an invalid policy");
          return r.value;
        });
        const services = rawServices.map((o) => {
          const r = parseService(o);
          if (!r.ok) throw new Error("generator produced an invalid service");
          return r.value;
        });
        const r = renderRuleset(state({ policies, services }));
        const budget = policies.reduce((n, p) => n + policyElementCount(p), 0) + services.reduce((n, s) => n + serviceElementCount(s), 0);
        expect(r.elementCount).toBe(elementCount(r.text));
        expect(r.elementCount).toBeLessThanOrEqual(budget);
      }),
      { numRuns: 300 },
    );
  }, 60_000);
});
