import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { type Policy, parsePolicy } from "../../lib/api/policy.ts";
import { type LoadBalancer, parseService } from "../../lib/api/service.ts";
import { elementOwners, IncrementalRenderer } from "../../lib/ruleset/incremental.ts";
import { type DesiredState, type RenderedRuleset, renderRuleset } from "../../lib/ruleset/render.ts";
import { policiesArb, servicesArb } from "./arbitraries.ts";
import { cidr, policy, state } from "./helpers.ts";

const parsedPolicies = (raw: unknown[]): Policy[] =>
  raw.map((o) => {
    const r = parsePolicy(o);
    if (!r.ok) throw new Error(`generator produced an invalid policy: ${JSON.stringify(r.problems)}`);
    return r.value;
  });
const parsedServices = (raw: unknown[]): LoadBalancer[] =>
  raw.map((o) => {
    const r = parseService(o);
    if (!r.ok) throw new Error(`generator produced an invalid service: ${JSON.stringify(r.problems)}`);
    return r.value;
  });

/** Everything a render returns, as plain data. */
const plain = (r: RenderedRuleset) => ({
  text: r.text,
  elements: [...r.elements].map(([m, e]) => [m, [...e]]),
  // Keyed by owner name: only lookups read it, so its iteration order is not part of what a render says.
  owners: [...r.owners].toSorted(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  maps: [...r.maps],
  forwardRules: r.forwardRules,
  countedRules: r.countedRules,
  counters: r.counters,
  skeleton: r.skeleton,
  verdict: r.verdict,
  elementCount: r.elementCount,
  overflow: r.overflow,
});

/** At most one object per name (the first), as the desired state has it. */
function distinct<T>(items: readonly T[], key: (x: T) => string): T[] {
  const seen = new Set<string>();
  return items.filter((x) => !seen.has(key(x)) && seen.add(key(x)) !== undefined);
}

describe("incremental rendering", () => {
  test("property: over any sequence of changes, every render equals a render from scratch, and its delta is exact", () => {
    let deltas = 0;
    fc.assert(
      fc.property(
        // Two versions per name are likely (names collide between the pools): edits, not just adds and removes.
        policiesArb(8), policiesArb(8), servicesArb(4), servicesArb(4),
        // Each state may tell what changed: exactly, against the state rendered last (as an
        // incremental classification does), or falsely, against some other state (to be ignored).
        fc.array(fc.tuple(fc.array(fc.nat(15), { maxLength: 12 }), fc.array(fc.nat(7), { maxLength: 6 }), fc.boolean(), fc.constantFrom("none", "exact", "stale")), { minLength: 2, maxLength: 8 }),
        (p1, p2, s1, s2, steps) => {
          const pool = [...parsedPolicies(p1), ...parsedPolicies(p2)];
          const svcPool = [...parsedServices(s1), ...parsedServices(s2)];
          const renderer = new IncrementalRenderer();
          let last: RenderedRuleset | undefined;
          let lastState: DesiredState | undefined;
          for (const [pi, si, logging, tell] of steps) {
            const policies = distinct(pi.flatMap((i) => (pool.length > 0 ? [pool[i % pool.length] as Policy] : [])), (p) => p.name);
            const services = distinct(si.flatMap((i) => (svcPool.length > 0 ? [svcPool[i % svcPool.length] as LoadBalancer] : [])), (s) => `${s.namespace}/${s.name}`);
            const plainState = state({ policies, services, logAcceptedConnections: logging });
            const diff = <T>(now: readonly T[], before: readonly T[]) => ({ added: now.filter((x) => !before.includes(x)), removed: before.filter((x) => !now.includes(x)) });
            const s: DesiredState = tell === "exact" && lastState
              ? { ...plainState, changes: { from: new WeakRef(lastState), policies: diff(policies, lastState.policies), services: diff(services, lastState.services) } }
              : tell === "stale"
                ? { ...plainState, changes: { from: new WeakRef(state({ policies: [] })), policies: { added: [], removed: policies }, services: { added: [], removed: services } } }
                : plainState;
            lastState = s;
            const before = last;
            const r = renderer.render(s);
            expect(plain(r)).toEqual(plain(renderRuleset(s)));
            // The delta, applied to the previous result's elements, gives exactly these.
            if (r.delta) {
              expect(r.delta.from.deref()).toBe(before as RenderedRuleset);
              const rebuilt = new Map([...(before as RenderedRuleset).elements].map(([m, e]) => [m, new Map(e)]));
              for (const [m, d] of r.delta.maps) {
                const e = rebuilt.get(m) ?? new Map<string, string>();
                for (const [k, o] of d.removed) {
                  expect(e.get(k)).toBe(o);
                  e.delete(k);
                }
                for (const [k, o] of d.added) e.set(k, o);
                rebuilt.set(m, e);
              }
              const nonEmpty = (x: Map<string, Map<string, string>>) => [...x].filter(([m, e]) => e.size > 0 || m.match(/_\d+$/) === null).map(([m, e]) => [m, [...e].sort()]).sort();
              expect(nonEmpty(rebuilt)).toEqual(nonEmpty(new Map([...r.elements].map(([m, e]) => [m, new Map(e)]))));
              deltas++;
            }
            last = r;
          }
        },
      ),
      { numRuns: 150 },
    );
    // The property is about deltas too: many renders must have had one.
    expect(deltas).toBeGreaterThan(50);
  }, 60_000);

  const many = Array.from({ length: 300 }, (_, i) => policy(`p-${String(i).padStart(4, "0")}`, { egress: [{ to: [{ cidr: `198.18.${i >> 8}.${i & 255}/32` }], ports: [{ port: 443 }] }] }));
  const wide = policy("zz-wide", { egress: [{ to: [{ cidr: "198.18.0.0/25" }], ports: [{ port: 400, endPort: 500 }] }] });

  test("a new policy that overlaps nothing is placed without layering any map from scratch", () => {
    const renderer = new IncrementalRenderer();
    renderer.render(state({ policies: many }));
    expect(renderer.lastRender).toEqual({ scratch: 10, patched: 0 });
    const added = policy("zz-new", { egress: [{ to: [{ cidr: "203.0.113.7/32" }], ports: [{ port: 22 }] }] });
    const s = state({ policies: [...many, added] });
    expect(plain(renderer.render(s))).toEqual(plain(renderRuleset(s)));
    expect(renderer.lastRender).toEqual({ scratch: 0, patched: 10 });
  });

  test("a map's element owners, in element order, read before and after its elements were (the elements of a layer fill when first read)", () => {
    const renderer = new IncrementalRenderer();
    renderer.render(state({ policies: many }));
    const r = renderer.render(state({ policies: [...many, wide] }));
    for (const [name, elements] of r.elements) {
      const before = [...elementOwners(elements)];
      expect(before).toEqual([...elements.values()]);
      expect([...elementOwners(elements)]).toEqual(before);
      expect(before.length).toBe(elements.size);
      if (name === "egress4_ports") expect(new Set(before).size).toBe(300);
    }
  });

  test("an overlapping policy re-layers its group: a wide one sorting after the hosts it covers goes into a second layer, and out again", () => {
    const renderer = new IncrementalRenderer();
    renderer.render(state({ policies: many }));
    const s = state({ policies: [...many, wide] });
    const r = renderer.render(s);
    expect(plain(r)).toEqual(plain(renderRuleset(s)));
    expect(renderer.lastRender).toEqual({ scratch: 0, patched: 10 });
    expect(r.elements.get("egress4_ports")?.size).toBe(300);
    expect([...(r.elements.get("egress4_ports_1") ?? [])]).toEqual([["198.18.0.0/25 . tcp . 400-500", "np.eg.tcp.zz-wide"]]);
    // And back: removing it brings the hosts down again.
    const back = renderer.render(state({ policies: many }));
    expect(plain(back)).toEqual(plain(renderRuleset(state({ policies: many }))));
    expect(back.maps.has("egress4_ports_1")).toBe(false);
  });

  test("in a map of thousands of elements, elements added, removed and changed in the middle, at the start and at the end give the text of a render from scratch", () => {
    // Enough elements for many runs of joined lines (one ends after about every 128th): a change
    // re-joins one run, and the runs around it must still be the right ones.
    const hosts = (n: number) => policy(`h-${String(n).padStart(5, "0")}`, { egress: [{ to: [{ cidr: `198.19.${n >> 8}.${n & 255}/32` }], ports: [{ port: 443 }, { protocol: "UDP", port: 53 }] }] });
    let policies = Array.from({ length: 3000 }, (_, i) => hosts(i * 2));
    const renderer = new IncrementalRenderer();
    renderer.render(state({ policies }));
    const steps: ((ps: Policy[]) => Policy[])[] = [
      (ps) => [...ps, hosts(3001)], // in the middle of the address order
      (ps) => [...ps, hosts(1)], // near the start
      (ps) => [...ps, hosts(6001)], // at the end
      (ps) => ps.filter((p) => p.name !== "h-03000"),
      (ps) => ps.filter((p) => p.name !== "h-00000"),
      (ps) => ps.map((p) => (p.name === "h-02000" ? policy("h-02000", { egress: [{ to: [{ cidr: "198.19.7.208/32" }], ports: [{ port: 8443 }] }] }) : p)),
      (ps) => ps.filter((_, i) => i % 97 !== 5),
      // One element's key replaced in place: its run keeps its first entry and its length.
      (ps) => ps.map((p) => (p.name === "h-01002" ? policy("h-01002", { egress: [{ to: [{ cidr: "198.19.3.234/32" }], ports: [{ port: 444 }, { protocol: "UDP", port: 53 }] }] }) : p)),
    ];
    for (const step of steps) {
      policies = step(policies);
      const s = state({ policies });
      const r = renderer.render(s);
      expect(renderer.lastRender.scratch).toBe(0);
      expect(r.text).toBe(renderRuleset(s).text);
    }
  });

  test("every object replaced by an equal value (each one's status was written) changes nothing: no map from scratch, the same maps handed on; a real change among them still applies", () => {
    const renderer = new IncrementalRenderer();
    const first = renderer.render(state({ policies: many }));
    const copies = many.map((p) => structuredClone(p));
    const again = renderer.render(state({ policies: copies }));
    expect(renderer.lastRender).toEqual({ scratch: 0, patched: 10 });
    expect(again.elements.get("egress4_ports")).toBe(first.elements.get("egress4_ports") as ReadonlyMap<string, string>);
    expect(again.text).toBe(first.text);
    // Equal copies again, and one of them really changed: only that one is looked at.
    const edited = copies.map((p, i) => (i === 7 ? policy(p.name, { egress: [{ to: [{ cidr: "203.0.113.9/32" }], ports: [{ port: 22 }] }] }) : structuredClone(p)));
    const s = state({ policies: edited });
    expect(plain(renderer.render(s))).toEqual(plain(renderRuleset(s)));
    expect(renderer.lastRender.scratch).toBe(0);
  });

  test("unchanged maps are handed on as the same objects (their text is not built again)", () => {
    const renderer = new IncrementalRenderer();
    const a = renderer.render(state({ policies: many }));
    const b = renderer.render(state({ policies: [...many, policy("zz-v6", { egress: [{ to: [{ cidr: "2001:db8::/64" }], ports: [{ port: 443 }] }] })] }));
    expect(b.elements.get("egress4_ports")).toBe(a.elements.get("egress4_ports") as ReadonlyMap<string, string>);
    expect(b.elements.get("egress6_ports")).not.toBe(a.elements.get("egress6_ports") as ReadonlyMap<string, string>);
  });

  test("a map too deep to render within the budget is reported on every render, also one that changed only other maps", () => {
    // Alternating all-address single-port and single-address all-port policies: each crosses every
    // earlier one, the chain goes past the layers, and the top layer's split passes the total budget.
    const crossing = Array.from({ length: 640 }, (_, i) => {
      const name = `p-${String(i).padStart(4, "0")}`;
      return i % 2 === 0
        ? policy(name, { egress: [{ ports: [{ port: 1000 + i }] }] })
        : policy(name, { egress: [{ to: [{ cidr: `198.18.${i >> 8}.${i & 255}/32` }], ports: [{ port: 1, endPort: 65535 }] }] });
    });
    const renderer = new IncrementalRenderer();
    expect(renderer.render(state({ policies: crossing })).overflow).toEqual(["egress4_ports"]);
    const v6 = policy("zz-v6", { egress: [{ to: [{ cidr: "2001:db8::/64" }], ports: [{ port: 443 }] }] });
    const s = state({ policies: [...crossing, v6] });
    const r = renderer.render(s);
    expect(renderer.lastRender).toEqual({ scratch: 0, patched: 10 });
    expect(r.overflow).toEqual(["egress4_ports"]);
    expect(r.overflow).toEqual(renderRuleset(s).overflow);
  }, 30_000);

  test("a change of settings (cluster prefixes, accept logging) renders from scratch", () => {
    const renderer = new IncrementalRenderer();
    renderer.render(state({ policies: many }));
    const s = state({ policies: many, clusterPrefixes: [cidr("10.0.0.0/16")] });
    expect(plain(renderer.render(s))).toEqual(plain(renderRuleset(s)));
    expect(renderer.lastRender).toEqual({ scratch: 10, patched: 0 });
  });
});
