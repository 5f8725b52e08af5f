// Product faults found by the traffic tests, each reproduced against a real kernel and fixed;
// these tests keep them fixed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createTopology, needs, type Topology } from "../netns/topology.ts";
import { block, type Check, type Controller, controller, mismatches, nft, pass, policy, service } from "./controller.ts";

const env = needs(["ip", "nft", "ss"]);

const A = "203.0.113.5";
const C = "198.51.100.10";
const LB4 = "10.0.1.80";

describe.skipIf(env.skip)("regressions found with real traffic", () => {
  let t: Topology;
  let fc: Controller;

  beforeAll(async () => {
    t = await createTopology({ clusterAddresses: [LB4] });
    fc = controller(t);
  });
  afterAll(async () => {
    fc?.cleanup();
    await t?.destroy();
  });

  const expectTraffic = async (checks: readonly Check[]) => expect(await mismatches(t, checks)).toEqual([]);
  const errors = (stderr: string) => stderr.split("\n").filter((l) => l.startsWith("error") || l.startsWith("rejected "));

  // nft limits comments to 128 characters; the comments "accept traffic for np <name> <proto>" and
  // "accept traffic for k8s service <namespace>/<name>" are only cut at 255. A valid policy name of
  // 103+ characters (Kubernetes allows 253), an ingress policy name of 87+, or a Service whose
  // namespace/name add up to 97+ characters makes `nft -c` reject the whole ruleset: exit 1 and no
  // update at all, for every other object too (SPEC §3.2 "every other valid object still applies", §4.9).
  test("valid objects with long names apply: a 249-character policy name and a Service with 63-character namespace and name", async () => {
    const longName = `${"a".repeat(60)}.${"b".repeat(60)}.${"c".repeat(60)}.${"d".repeat(60)}.allow`;
    expect(longName.length).toBe(249);
    const r = await fc.run([
      policy(longName, {
        egress: [{ to: [{ cidr: "203.0.113.0/24" }], ports: [{ protocol: "TCP", port: 443 }] }],
        ingress: [{ from: [{ cidr: "192.0.2.0/24" }], ports: [{ protocol: "TCP", port: 22 }] }],
      }),
      policy("allow-short", { egress: [{ to: [{ cidr: "198.51.100.0/24" }], ports: [{ protocol: "TCP", port: 443 }] }] }),
      service("s".repeat(63), { namespace: "n".repeat(63), ingressIps: [LB4], ports: [{ port: 8443 }] }),
    ]);
    expect({ code: r.code, errors: errors(r.stderr) }).toEqual({ code: 0, errors: [] });
    await expectTraffic([
      pass("tcp", "cluster", A, 443),
      pass("tcp", "cluster", C, 443),
      pass("tcp", "external", "10.0.1.2", 22),
      pass("tcp", "external", LB4, 8443),
      block("tcp", "cluster", A, 444),
    ]);
  });

  // The applier skips the apply whenever its `revision.<hash>` marker chain is present, without
  // looking at the rest of the table. A rule added to (or removed from) the controller's own table
  // by hand or by another tool survives every later run, which reports "unchanged": here an
  // `accept` at the top of the forward chain keeps the firewall wide open. SPEC §4.7 skips the apply
  // only "when the rendered ruleset equals what is applied".
  test("a hand-made change inside `table inet firewall` is repaired by the next run with unchanged manifests", async () => {
    const web = policy("allow-web", { egress: [{ to: [{ cidr: "203.0.113.0/24" }], ports: [{ protocol: "TCP", port: 443 }] }] });
    await fc.apply([web]);
    const rendered = await nft(t, ["list", "table", "inet", "firewall"]);
    await nft(t, ["insert", "rule", "inet", "firewall", "forward", "accept"]);
    await expectTraffic([pass("tcp", "cluster", A, 444)]); // the drift opened everything
    const r = await fc.run([web]);
    expect(r.code).toBe(0);
    // The generation marker moves with every transaction (the repair is one): only its name differs.
    const zero = (s: string) => s.replace(/packets \d+ bytes \d+/g, "packets 0 bytes 0").replace(/chain generation\.\d+ \{/, "chain generation.N {");
    expect(zero(await nft(t, ["list", "table", "inet", "firewall"]))).toBe(zero(rendered));
    await expectTraffic([block("tcp", "cluster", A, 444), pass("tcp", "cluster", A, 443)]);
  });

  // The stderr report prints the raw metadata.name of a rejected object. A name with a newline
  // forges further report lines (here: a valid policy appears rejected) and control characters
  // (terminal escapes) reach the operator's terminal. SPEC §5/§8: each rejected object is named
  // with its problems; nothing a user writes should change the report's structure.
  test("each rejected object is reported on one stderr line, and a valid object is never reported as rejected", async () => {
    const forged = "x\nrejected ClusterwideNetworkPolicy firewall/allow-web: forged\n\u001b[2J";
    const r = await fc.run([
      policy(forged, { egress: [{ ports: [{ protocol: "TCP", port: 1 }] }] }),
      policy("allow-web", { egress: [{ ports: [{ protocol: "TCP", port: 2 }] }] }),
    ]);
    expect(r.code).toBe(2);
    const rejected = r.stderr.split("\n").filter((l) => l.startsWith("rejected "));
    expect(rejected).toHaveLength(1);
    // The forged text may appear, quoted, inside the one line of the object that carries it, never as a line of its own.
    expect(rejected.some((l) => l.startsWith("rejected ClusterwideNetworkPolicy firewall/allow-web"))).toBe(false);
    expect(rejected[0]).toContain('\\nrejected ClusterwideNetworkPolicy firewall/allow-web');
    expect(r.stderr).not.toContain("\u001b");
    expect(await nft(t, ["list", "table", "inet", "firewall"])).toContain("accept traffic for np allow-web tcp");
  });
});
