// The incremental classifier against the reference classification: over random sequences of
// cluster states (objects kept by identity, edited, recreated, invalid, ignored, duplicated,
// reordered, over the budget), every call equals buildDesiredState on the same input, and the
// short way is taken where it may be.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { parseCidr } from "../lib/api/address.ts";
import { IncrementalClassifier } from "../lib/classifier.ts";
import { type Accepted, buildDesiredState, type Classified, type ClassifyOptions, type Verdict } from "../lib/desired-state.ts";
import { LastValid } from "../lib/last-valid.ts";

const cluster = (() => {
  const r = parseCidr("10.0.0.0/8");
  if (!r.ok) throw new Error(r.message);
  return r.value;
})();
const clusterPrefixes = [cluster];

const plain = (c: Classified) => ({
  state: (({ changes: _, ...state }) => state)(c.state),
  firewall: c.firewall,
  firewallPresent: c.firewallPresent,
  accepted: c.accepted,
  rejected: c.rejected,
  ignored: c.ignored,
  notes: c.notes,
  // Read by key: their order is not part of what a classification says.
  verdicts: [...c.verdicts].toSorted(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  admitted: keysOf(c.admitted).toSorted(),
});

function keysOf(s: ReadonlySetLike<string>): string[] {
  const out: string[] = [];
  const keys = s.keys();
  for (let k = keys.next(); !k.done; k = keys.next()) out.push(k.value);
  return out;
}

let uids = 0;
/** One version of an object of the pool: kind by slot, validity and content by `variant`. */
function make(slot: number, variant: number, uid: string, generation: number): unknown {
  const name = `o-${slot % 6}`;
  const meta = { name, namespace: "firewall", uid, generation };
  switch (slot % 5) {
    case 0:
    case 1: {
      // Policies: valid with one to four ports (element counts vary), invalid, or in another namespace.
      if (variant % 7 === 6) return { apiVersion: "metal-stack.io/v1", kind: "ClusterwideNetworkPolicy", metadata: { ...meta, namespace: "other" }, spec: {} };
      if (variant % 5 === 4) return { apiVersion: "metal-stack.io/v1", kind: "ClusterwideNetworkPolicy", metadata: meta, spec: { egress: [{ ports: [{ port: 70000 }] }] } };
      const ports = Array.from({ length: 1 + (variant % 4) }, (_, i) => ({ port: 1000 + i + variant }));
      return { apiVersion: "metal-stack.io/v1", kind: "ClusterwideNetworkPolicy", metadata: meta, spec: { egress: [{ to: [{ cidr: `198.51.100.${slot}/32` }], ports }] } };
    }
    case 2:
      // Services: a LoadBalancer (valid or with a bad address), or a ClusterIP (ignored).
      if (variant % 4 === 3) return { apiVersion: "v1", kind: "Service", metadata: { ...meta, namespace: "shop" }, spec: { type: "ClusterIP", ports: [{ port: 80 }] } };
      return { apiVersion: "v1", kind: "Service", metadata: { ...meta, namespace: "shop" }, spec: { type: "LoadBalancer", ports: [{ port: 443 + (variant % 3) }] },
        status: { loadBalancer: { ingress: [{ ip: variant % 4 === 2 ? "not-an-ip" : `203.0.113.${slot}` }] } } };
    case 3:
      // The Firewall: valid, invalid, or another firewall's (ignored).
      return { apiVersion: "metal-stack.io/v1", kind: "Firewall", metadata: { ...meta, name: variant % 5 === 4 ? "other" : "firewall" }, spec: variant % 3 === 2 ? { interval: "nope" } : { interval: "10s", internalprefixes: [`192.0.2.${variant % 8}/32`] } };
    default:
      return { apiVersion: "v1", kind: "ConfigMap", metadata: meta };
  }
}

describe("IncrementalClassifier", () => {
  test("property: every call equals buildDesiredState on the same input, over any sequence of changes", () => {
    let incremental = 0;
    let changesSeen = 0;
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.tuple(fc.nat(20), fc.nat(30), fc.nat(10)), { maxLength: 6 }), { minLength: 1, maxLength: 12 }),
        fc.boolean(),
        (steps, tight) => {
          const budget = tight ? { perObject: 3, total: 5 } : undefined;
          const a = new LastValid<Accepted>();
          const b = new LastValid<Accepted>();
          const classifier = new IncrementalClassifier();
          let admittedA: ReadonlySetLike<string> | undefined;
          let admittedB: ReadonlySetLike<string> | undefined;
          let previous: Classified | undefined;
          // The pool: slot → the object now in the cluster (kept by identity until changed).
          const pool = new Map<number, { object: unknown; uid: string; generation: number }>();
          for (const ops of steps) {
            let order = false;
            let twice: unknown;
            for (const [slot, variant, what] of ops) {
              const cur = pool.get(slot);
              if (what <= 4) {
                // An edit: the same object (uid) in a new version.
                const uid = cur?.uid ?? `u${uids++}`;
                const generation = (cur?.generation ?? 0) + 1;
                pool.set(slot, { object: make(slot, variant, uid, generation), uid, generation });
              } else if (what === 5) {
                // Deleted and created again: a new uid.
                const uid = `u${uids++}`;
                pool.set(slot, { object: make(slot, variant, uid, 1), uid, generation: 1 });
              } else if (what <= 7) pool.delete(slot);
              else if (what === 8) order = true;
              else twice = cur?.object;
            }
            const objects = [...pool.values()].map((p) => ({ object: p.object }));
            if (order) objects.reverse();
            if (twice !== undefined) objects.push({ object: twice });
            const options = (memory: LastValid<Accepted>, admitted: ReadonlySetLike<string> | undefined): ClassifyOptions =>
              ({ firewallName: "firewall", clusterPrefixes, privateVrf: 42, lastValid: memory, ...(budget ? { budget } : {}), ...(admitted ? { admitted } : {}) });
            const got = classifier.classify(objects, options(a, admittedA));
            const want = buildDesiredState(objects, options(b, admittedB));
            expect(plain(got)).toEqual(plain(want));
            // What it says changed is all that changed: every other key has the very same verdict.
            // (The same result again, when nothing changed: its changes are those of the call that made it.)
            if (got.changes && got !== previous) {
              const from = got.changes.from.deref();
              expect(from).toBe(previous);
              const keys = new Set([...got.verdicts.keys(), ...(from?.verdicts.keys() ?? [])]);
              for (const k of keys) if (!got.changes.keys.has(k)) expect(got.verdicts.get(k)).toBe(from?.verdicts.get(k) as Verdict);
              changesSeen++;
              // And the state's: exactly what came and what went, by identity.
              const told = got.state.changes;
              expect(told?.from.deref()).toBe(from?.state);
              for (const [now, before, t] of [[got.state.policies, from?.state.policies ?? [], told?.policies], [got.state.services, from?.state.services ?? [], told?.services]] as const) {
                const was = new Set<unknown>(before);
                const is = new Set<unknown>(now);
                expect(new Set<unknown>(t?.added)).toEqual(new Set([...is].filter((x) => !was.has(x))));
                expect(new Set<unknown>(t?.removed)).toEqual(new Set([...was].filter((x) => !is.has(x))));
              }
            }
            previous = got;
            expect(a.size).toBe(b.size);
            if (classifier.lastPath === "incremental") incremental++;
            admittedA = got.admitted;
            admittedB = want.admitted;
          }
        },
      ),
      { numRuns: 300 },
    );
    // The property is about the short way: it must actually have been taken, often.
    expect(incremental).toBeGreaterThan(300);
    expect(changesSeen).toBeGreaterThan(300);
  });

  test("a change of one policy among 2,000 takes the short way; a second object of one name falls back and is rejected as a duplicate", () => {
    const memory = new LastValid<Accepted>();
    const options: ClassifyOptions = { firewallName: "firewall", clusterPrefixes, privateVrf: 42, lastValid: memory };
    const policy = (i: number, port = 443) => ({ apiVersion: "metal-stack.io/v1", kind: "ClusterwideNetworkPolicy", metadata: { name: `p-${i}`, namespace: "firewall", uid: `u${i}`, generation: 1 }, spec: { egress: [{ ports: [{ port }] }] } });
    const objects = Array.from({ length: 2000 }, (_, i) => ({ object: policy(i) }));
    const c = new IncrementalClassifier();
    c.classify(objects, options);
    expect(c.lastPath).toBe("full");
    objects[700] = { object: policy(700, 8443) };
    const r = c.classify(objects, options);
    expect(c.lastPath).toBe("incremental");
    expect(r.state.policies[700]?.egress[0]?.ports?.[0]?.first).toBe(8443);
    const dup = c.classify([...objects, { object: policy(5, 22) }], options);
    expect(c.lastPath).toBe("full");
    expect(dup.rejected.map((x) => x.problems[0]?.message)).toEqual(['"p-5" is defined twice; the first definition is used']);
  });
});
