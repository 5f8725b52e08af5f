// Named counters of SPEC §4.1 and §4.5 with real traffic: the accounting counters
// (external_*/internal_* by the Firewall's internal prefixes), the per-policy counters,
// drop_total, and that a changed ruleset carries their values over (§4.7).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createTopology, needs, type Topology } from "../netns/topology.ts";
import { block, type Check, type Controller, controller, type CounterValue, counters, firewall, mismatches, ownerComment, pass, policy } from "./controller.ts";

const env = needs(["ip", "nft", "ss"]);

const EXT4 = "203.0.113.5"; // external: outside the internal prefixes
const EXT6 = "2001:db8:1::2";
const INT4 = "198.51.100.10"; // "internal": inside the Firewall's internalprefixes
const INT6 = "2001:db8:2::10";
const CL4 = "10.0.1.2";

const ACCOUNTING = ["external_in", "external_out", "internal_in", "internal_out"] as const;
// Per-policy counts: the sum of the policy's map elements, keyed by the comment they carry.
const POLICY_COUNTER = ownerComment("np.eg.tcp.allow-count");
const INGRESS_COUNTER = ownerComment("np.in.tcp.ssh-in");
const EXTRA_COUNTER = ownerComment("np.eg.udp.allow-extra");

const fw = firewall({ internalprefixes: ["198.51.100.0/24", "2001:db8:2::/48"] });
const allowCount = policy("allow-count", {
  egress: [
    {
      to: [{ cidr: "203.0.113.0/24" }, { cidr: "198.51.100.0/24" }, { cidr: "2001:db8:1::/64" }, { cidr: "2001:db8:2::/48" }],
      ports: [{ protocol: "TCP", port: 443 }],
    },
  ],
});
const sshIn = policy("ssh-in", { ingress: [{ from: [{ cidr: "192.0.2.0/24" }], ports: [{ protocol: "TCP", port: 22 }] }] });
const extra = policy("allow-extra", { egress: [{ to: [{ cidr: "192.0.2.0/24" }], ports: [{ protocol: "UDP", port: 123 }] }] });

type Snapshot = Record<string, CounterValue>;
const get = (s: Snapshot, name: string): CounterValue => {
  const c = s[name];
  if (!c) throw new Error(`counter ${name} is missing; have: ${Object.keys(s).join(", ")}`);
  return c;
};
/** Packet deltas of the named counters between two snapshots. */
const deltas = (a: Snapshot, b: Snapshot, names: readonly string[]) =>
  Object.fromEntries(names.map((n) => [n, get(b, n).packets - get(a, n).packets]));

describe.skipIf(env.skip)("counters with real traffic (SPEC §4.1, §4.5, §4.7)", () => {
  let t: Topology;
  let fc: Controller;

  beforeAll(async () => {
    t = await createTopology();
    fc = controller(t);
  });
  afterAll(async () => {
    fc?.cleanup();
    await t?.destroy();
  });

  const traffic = async (checks: readonly Check[]) => expect(await mismatches(t, checks, { concurrency: 1 })).toEqual([]);

  test("the ruleset declares the accounting counters, drop_total, and one counter per policy chain", async () => {
    await fc.apply([fw, allowCount, sshIn]);
    const names = Object.keys(await counters(t));
    for (const n of [...ACCOUNTING, "drop_total", "drop_ratelimit", POLICY_COUNTER, INGRESS_COUNTER]) expect(names).toContain(n);
  });

  test("egress to an external address counts external_out (and its replies external_in), not internal_*, and the policy counter (IPv4 and IPv6)", async () => {
    await fc.apply([fw, allowCount, sshIn]);
    for (const dest of [EXT4, EXT6]) {
      const s0 = await counters(t);
      await traffic([pass("tcp", "cluster", dest, 443)]);
      const s1 = await counters(t);
      const d = deltas(s0, s1, [...ACCOUNTING, POLICY_COUNTER]);
      expect({ dest, ...d }).toMatchObject({ dest, internal_in: 0, internal_out: 0 });
      expect(d.external_out).toBeGreaterThanOrEqual(3); // SYN, ACK, FIN/ACK at least
      expect(d.external_in).toBeGreaterThanOrEqual(2); // SYN/ACK and data at least
      expect(d[POLICY_COUNTER]).toBeGreaterThanOrEqual(1); // the first packet of the connection
      expect(get(s1, "external_out").bytes).toBeGreaterThan(get(s0, "external_out").bytes);
    }
  });

  test("egress to an address in the Firewall's internalprefixes counts internal_out / internal_in instead of external_* (IPv4 and IPv6)", async () => {
    await fc.apply([fw, allowCount, sshIn]);
    for (const dest of [INT4, INT6]) {
      const s0 = await counters(t);
      await traffic([pass("tcp", "cluster", dest, 443)]);
      const s1 = await counters(t);
      const d = deltas(s0, s1, [...ACCOUNTING, POLICY_COUNTER]);
      expect({ dest, ...d }).toMatchObject({ dest, external_in: 0, external_out: 0 });
      expect(d.internal_out).toBeGreaterThanOrEqual(3);
      expect(d.internal_in).toBeGreaterThanOrEqual(2);
      expect(d[POLICY_COUNTER]).toBeGreaterThanOrEqual(1);
    }
  });

  test("ingress from an external host counts external_in for the incoming connection and the ingress policy's counter", async () => {
    await fc.apply([fw, allowCount, sshIn]);
    const s0 = await counters(t);
    await traffic([pass("tcp", "external", CL4, 22)]);
    const s1 = await counters(t);
    const d = deltas(s0, s1, [...ACCOUNTING, INGRESS_COUNTER, POLICY_COUNTER]);
    expect(d).toMatchObject({ internal_in: 0, internal_out: 0, [POLICY_COUNTER]: 0 });
    expect(d.external_in).toBeGreaterThanOrEqual(3);
    expect(d.external_out).toBeGreaterThanOrEqual(2);
    expect(d[INGRESS_COUNTER]).toBeGreaterThanOrEqual(1);
  });

  test("drop_total counts denied traffic and stays still while only allowed traffic flows", async () => {
    await fc.apply([fw, allowCount, sshIn]);
    const s0 = await counters(t);
    await traffic([pass("tcp", "cluster", EXT4, 443), pass("tcp", "cluster", INT6, 443)]);
    const s1 = await counters(t);
    expect(get(s1, "drop_total")).toEqual(get(s0, "drop_total"));
    await traffic([block("tcp", "cluster", EXT4, 444), block("udp", "cluster", EXT6, 53), block("tcp", "external", CL4, 80)]);
    const s2 = await counters(t);
    expect(get(s2, "drop_total").packets - get(s1, "drop_total").packets).toBeGreaterThanOrEqual(3);
    expect(get(s2, "drop_total").bytes).toBeGreaterThan(get(s1, "drop_total").bytes);
    // denied traffic is not counted by the policy
    expect(get(s2, POLICY_COUNTER)).toEqual(get(s1, POLICY_COUNTER));
  });

  test("counters survive a change of the ruleset: values carry over when a policy is added, and keep counting from there", async () => {
    await fc.apply([fw, allowCount, sshIn]);
    await traffic([pass("tcp", "cluster", EXT4, 443), pass("tcp", "cluster", INT4, 443), block("tcp", "cluster", EXT4, 445)]);
    const before = await counters(t);
    const kept = [...ACCOUNTING, "drop_total", POLICY_COUNTER, INGRESS_COUNTER];
    for (const n of kept) expect({ n, packets: get(before, n).packets > 0 }).toEqual({ n, packets: true });

    const r = await fc.apply([fw, allowCount, sshIn, extra]);
    expect(r.stderr).toContain('"rules":"changed"');
    const after = await counters(t);
    expect(Object.keys(after)).toContain(EXTRA_COUNTER);
    for (const n of kept) {
      // nothing flowed in between: every value is exactly what it was
      expect({ n, ...get(after, n) }).toEqual({ n, ...get(before, n) });
    }

    await traffic([pass("tcp", "cluster", EXT4, 443), pass("udp", "cluster", "192.0.2.2", 123)]);
    const later = await counters(t);
    expect(get(later, POLICY_COUNTER).packets).toBeGreaterThan(get(after, POLICY_COUNTER).packets);
    expect(get(later, "external_out").packets).toBeGreaterThan(get(after, "external_out").packets);
    expect(get(later, EXTRA_COUNTER).packets).toBeGreaterThanOrEqual(1);

    // Taking the policy away again (another change) still keeps the accounting values.
    await fc.apply([fw, allowCount, sshIn]);
    const removed = await counters(t);
    for (const n of [...ACCOUNTING, "drop_total", POLICY_COUNTER]) expect({ n, ...get(removed, n) }).toEqual({ n, ...get(later, n) });
  });
});
