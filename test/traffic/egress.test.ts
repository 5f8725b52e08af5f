// Real traffic through the firewall namespace proves the egress rules of SPEC §4.1–4.2:
// default deny, cidr + port matching, excepts per block, port ranges, any-port and
// any-destination rules, IPv4 and IPv6, TCP, UDP and ICMP echo.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createTopology, needs, type Topology } from "../netns/topology.ts";
import { block, type Check, type Controller, controller, dropFirewallTable, icmpTool, mismatches, nft, pass, policy } from "./controller.ts";

const env = needs(["ip", "nft", "ss", icmpTool()]);

// External hosts (all in the external namespace): the defaults plus one outside 2001:db8:2::/64.
const EXT4 = "192.0.2.2";
const EXT6 = "2001:db8:1::2";
const A = "203.0.113.5"; // in 203.0.113.0/25
const B = "203.0.113.200"; // in 203.0.113.128/25
const C = "198.51.100.10";
const V6_LOW = "2001:db8:2::10"; // in 2001:db8:2::/64
const V6_HIGH = "2001:db8:2:1::10"; // in 2001:db8:2::/48, outside 2001:db8:2::/64
const CL4 = "10.0.1.2";
const CL6 = "fd00:66::2";

describe.skipIf(env.skip)("egress with real traffic (SPEC §4.1, §4.2)", () => {
  let t: Topology;
  let fc: Controller;

  beforeAll(async () => {
    t = await createTopology({ externalAddresses: [V6_HIGH] });
    fc = controller(t);
  });
  afterAll(async () => {
    fc?.cleanup();
    await t?.destroy();
  });

  const expectTraffic = async (checks: readonly Check[]) => expect(await mismatches(t, checks)).toEqual([]);

  test("without the controller's table everything is forwarded (so a blocked check below means the ruleset blocked it)", async () => {
    await dropFirewallTable(t);
    await expectTraffic([
      pass("tcp", "cluster", EXT4, 80),
      pass("udp", "cluster", EXT4, 53),
      pass("tcp", "cluster", EXT6, 80),
      pass("udp", "cluster", EXT6, 53),
      pass("tcp", "external", CL4, 80),
      pass("udp", "external", CL6, 53),
      pass("icmp", "cluster", A),
      pass("icmp", "cluster", V6_LOW),
    ]);
  });

  test("default deny: with no policies, new TCP, UDP and ICMP flows fail both ways over IPv4 and IPv6", async () => {
    const r = await fc.apply([]);
    expect(r.stderr).not.toMatch(/^rejected /m);
    await expectTraffic([
      block("tcp", "cluster", EXT4, 80),
      block("udp", "cluster", EXT4, 53),
      block("tcp", "cluster", EXT6, 80),
      block("udp", "cluster", EXT6, 53),
      block("tcp", "external", CL4, 80),
      block("udp", "external", CL4, 53),
      block("tcp", "external", CL6, 80),
      block("udp", "external", CL6, 53),
      block("icmp", "cluster", A),
      block("icmp", "cluster", V6_LOW),
    ]);
  });

  test("egress to a cidr on a port: that port passes with its replies, another port or destination fails, and nothing opens inbound", async () => {
    await fc.apply([
      policy("allow-web", { egress: [{ to: [{ cidr: "203.0.113.0/24" }], ports: [{ protocol: "TCP", port: 443 }, { protocol: "UDP", port: 53 }] }] }),
    ]);
    await expectTraffic([
      // allowed: the connection completes, so the replies (ct established) come back
      pass("tcp", "cluster", A, 443),
      pass("udp", "cluster", A, 53),
      pass("tcp", "cluster", B, 443),
      // other port, other protocol on the port, other destination
      block("tcp", "cluster", A, 444),
      block("udp", "cluster", A, 54),
      block("udp", "cluster", A, 443),
      block("tcp", "cluster", A, 53),
      block("tcp", "cluster", C, 443),
      block("udp", "cluster", EXT4, 53),
      // replies are allowed, new connections from outside are not
      block("tcp", "external", CL4, 443),
      block("udp", "external", CL4, 53),
    ]);
  });

  test("a v4-only policy does not open IPv6", async () => {
    await fc.apply([
      policy("allow-web", {
        egress: [{ to: [{ cidr: "203.0.113.0/24" }, { cidr: "192.0.2.0/24" }], ports: [{ protocol: "TCP", port: 443 }, { protocol: "UDP", port: 53 }] }],
      }),
    ]);
    await expectTraffic([
      pass("tcp", "cluster", EXT4, 443),
      block("tcp", "cluster", EXT6, 443),
      block("udp", "cluster", EXT6, 53),
      block("tcp", "cluster", V6_LOW, 443),
    ]);
  });

  test("an IPv6 block opens its prefix on its ports over IPv6 only", async () => {
    await fc.apply([
      policy("allow-web6", { egress: [{ to: [{ cidr: "2001:db8:2::/48" }], ports: [{ protocol: "TCP", port: 443 }, { protocol: "UDP", port: 53 }] }] }),
    ]);
    await expectTraffic([
      pass("tcp", "cluster", V6_LOW, 443),
      pass("udp", "cluster", V6_LOW, 53),
      pass("tcp", "cluster", V6_HIGH, 443),
      block("tcp", "cluster", V6_LOW, 444),
      block("udp", "cluster", V6_LOW, 54),
      block("tcp", "cluster", EXT6, 443),
      block("tcp", "cluster", A, 443),
      block("udp", "cluster", A, 53),
      block("tcp", "external", CL6, 443),
    ]);
  });

  test("an address in a block's except is blocked while the rest of the block passes (IPv4 and IPv6, TCP and UDP)", async () => {
    await fc.apply([
      policy("allow-except", {
        egress: [
          {
            to: [
              { cidr: "203.0.113.0/24", except: ["203.0.113.0/25"] },
              { cidr: "2001:db8:2::/48", except: ["2001:db8:2::/64"] },
            ],
            ports: [{ protocol: "TCP", port: 443 }, { protocol: "UDP", port: 53 }],
          },
        ],
      }),
    ]);
    await expectTraffic([
      pass("tcp", "cluster", B, 443),
      pass("udp", "cluster", B, 53),
      block("tcp", "cluster", A, 443),
      block("udp", "cluster", A, 53),
      pass("tcp", "cluster", V6_HIGH, 443),
      pass("udp", "cluster", V6_HIGH, 53),
      block("tcp", "cluster", V6_LOW, 443),
      block("udp", "cluster", V6_LOW, 53),
    ]);
  });

  // Block 1 excepts E, block 2 is exactly E: if excepts leaked across blocks (§4.9), E would be closed.
  const leakCases: Record<string, Parameters<typeof policy>[1]> = {
    "except block first": {
      egress: [
        {
          to: [
            { cidr: "203.0.113.0/24", except: ["203.0.113.0/25"] },
            { cidr: "203.0.113.0/25" },
            { cidr: "2001:db8:2::/48", except: ["2001:db8:2::/64"] },
            { cidr: "2001:db8:2::/64" },
          ],
          ports: [{ protocol: "TCP", port: 443 }, { protocol: "UDP", port: 53 }],
        },
      ],
    },
    "except block last": {
      egress: [
        {
          to: [
            { cidr: "2001:db8:2::/64" },
            { cidr: "203.0.113.0/25" },
            { cidr: "2001:db8:2::/48", except: ["2001:db8:2::/64"] },
            { cidr: "203.0.113.0/24", except: ["203.0.113.0/25"] },
          ],
          ports: [{ protocol: "TCP", port: 443 }, { protocol: "UDP", port: 53 }],
        },
      ],
    },
    "blocks in separate rules": {
      egress: [
        { to: [{ cidr: "203.0.113.0/24", except: ["203.0.113.0/25"] }, { cidr: "2001:db8:2::/48", except: ["2001:db8:2::/64"] }], ports: [{ protocol: "TCP", port: 443 }, { protocol: "UDP", port: 53 }] },
        { to: [{ cidr: "203.0.113.0/25" }, { cidr: "2001:db8:2::/64" }], ports: [{ protocol: "TCP", port: 443 }, { protocol: "UDP", port: 53 }] },
      ],
    },
  };
  for (const [label, spec] of Object.entries(leakCases)) {
    test(`except applies per block: an address excepted from one block passes through another block that covers it (${label})`, async () => {
      await fc.apply([policy("allow-overlap", spec)]);
      await expectTraffic([
        pass("tcp", "cluster", A, 443), // excepted from block 1, inside block 2
        pass("udp", "cluster", A, 53),
        pass("tcp", "cluster", B, 443), // block 1 only
        pass("tcp", "cluster", V6_LOW, 443),
        pass("udp", "cluster", V6_LOW, 53),
        pass("tcp", "cluster", V6_HIGH, 443),
        block("tcp", "cluster", A, 444),
        block("tcp", "cluster", C, 443),
      ]);
    });
  }

  test("except in another policy does not close a block of this policy", async () => {
    await fc.apply([
      policy("allow-narrow", { egress: [{ to: [{ cidr: "203.0.113.0/24", except: ["203.0.113.0/25"] }], ports: [{ protocol: "TCP", port: 443 }] }] }),
      policy("allow-wide", { egress: [{ to: [{ cidr: "203.0.113.0/25" }], ports: [{ protocol: "TCP", port: 443 }] }] }),
    ]);
    await expectTraffic([pass("tcp", "cluster", A, 443), pass("tcp", "cluster", B, 443), block("tcp", "cluster", C, 443)]);
  });

  test("port ranges are inclusive: port and endPort pass, port-1 and endPort+1 fail (TCP and UDP, IPv4 and IPv6)", async () => {
    await fc.apply([
      policy("allow-ranges", {
        egress: [
          {
            to: [{ cidr: "198.51.100.0/24" }, { cidr: "2001:db8:2::/48" }],
            ports: [
              { protocol: "TCP", port: 8000, endPort: 8100 },
              { protocol: "UDP", port: 5000, endPort: 5010 },
            ],
          },
        ],
      }),
    ]);
    await expectTraffic([
      pass("tcp", "cluster", C, 8000),
      pass("tcp", "cluster", C, 8050),
      pass("tcp", "cluster", C, 8100),
      block("tcp", "cluster", C, 7999),
      block("tcp", "cluster", C, 8101),
      pass("udp", "cluster", C, 5000),
      pass("udp", "cluster", C, 5010),
      block("udp", "cluster", C, 4999),
      block("udp", "cluster", C, 5011),
      block("udp", "cluster", C, 8000), // the TCP range is not a UDP range
      pass("tcp", "cluster", V6_LOW, 8100),
      block("tcp", "cluster", V6_LOW, 8101),
      pass("udp", "cluster", V6_LOW, 5010),
      block("udp", "cluster", V6_LOW, 5011),
    ]);
  });

  test("a rule without ports (or with `ports: []`) opens every TCP and UDP port and ICMP echo, to its destinations only", async () => {
    await fc.apply([
      policy("allow-any-port", { egress: [{ to: [{ cidr: `${B}/32` }] }] }),
      policy("allow-any-port6", { egress: [{ to: [{ cidr: `${V6_LOW}/128` }], ports: [] }] }),
    ]);
    await expectTraffic([
      pass("tcp", "cluster", B, 1),
      pass("tcp", "cluster", B, 1234),
      pass("tcp", "cluster", B, 65535),
      pass("udp", "cluster", B, 4321),
      pass("udp", "cluster", B, 65535),
      pass("icmp", "cluster", B),
      pass("tcp", "cluster", V6_LOW, 1234),
      pass("udp", "cluster", V6_LOW, 4321),
      pass("icmp", "cluster", V6_LOW),
      block("tcp", "cluster", A, 1234),
      block("udp", "cluster", A, 4321),
      block("icmp", "cluster", A),
      block("tcp", "cluster", V6_HIGH, 1234),
      block("icmp", "cluster", V6_HIGH),
      block("tcp", "external", CL4, 1234),
    ]);
  });

  test("a rule without `to` (or with `to: []`) opens its ports to every destination, IPv4 and IPv6", async () => {
    await fc.apply([
      policy("allow-any-dest-tcp", { egress: [{ ports: [{ protocol: "TCP", port: 8443 }] }] }),
      policy("allow-any-dest-udp", { egress: [{ to: [], ports: [{ protocol: "UDP", port: 8443 }] }] }),
    ]);
    await expectTraffic([
      pass("tcp", "cluster", EXT4, 8443),
      pass("tcp", "cluster", A, 8443),
      pass("tcp", "cluster", C, 8443),
      pass("tcp", "cluster", EXT6, 8443),
      pass("tcp", "cluster", V6_HIGH, 8443),
      pass("udp", "cluster", B, 8443),
      pass("udp", "cluster", V6_LOW, 8443),
      block("tcp", "cluster", A, 8444),
      block("udp", "cluster", V6_LOW, 8444),
      block("icmp", "cluster", A),
      // egress to anywhere does not admit anything into the cluster
      block("tcp", "external", CL4, 8443),
      block("udp", "external", CL6, 8443),
    ]);
  });

  test("an SCTP port opens neither TCP nor UDP on that port", async () => {
    const r = await fc.apply([policy("allow-sctp", { egress: [{ to: [{ cidr: "203.0.113.0/24" }, { cidr: "2001:db8:2::/48" }], ports: [{ protocol: "SCTP", port: 3868 }] }] })]);
    expect(r.stderr).not.toMatch(/^rejected /m);
    expect(await nft(t, ["list", "table", "inet", "firewall"])).toContain("accept traffic for np allow-sctp sctp");
    await expectTraffic([block("tcp", "cluster", A, 3868), block("udp", "cluster", A, 3868), block("tcp", "cluster", V6_LOW, 3868)]);
  });

  test("a policy removed from the manifests: its traffic fails afterwards, the remaining policy's still passes", async () => {
    const keep = policy("allow-keep", { egress: [{ to: [{ cidr: "198.51.100.0/24" }], ports: [{ protocol: "TCP", port: 443 }] }] });
    const drop = policy("allow-drop", { egress: [{ to: [{ cidr: "203.0.113.0/24" }, { cidr: "2001:db8:2::/48" }], ports: [{ protocol: "TCP", port: 443 }, { protocol: "UDP", port: 53 }] }] });
    await fc.apply([keep, drop]);
    await expectTraffic([pass("tcp", "cluster", A, 443), pass("udp", "cluster", V6_LOW, 53), pass("tcp", "cluster", C, 443)]);
    await fc.apply([keep]);
    await expectTraffic([block("tcp", "cluster", A, 443), block("udp", "cluster", V6_LOW, 53), block("tcp", "cluster", V6_LOW, 443), pass("tcp", "cluster", C, 443)]);
  });

  test("namespace scoping: a policy outside namespace `firewall` opens nothing and the exit code stays 0", async () => {
    const spec = { egress: [{ to: [{ cidr: "203.0.113.0/24" }], ports: [{ protocol: "TCP" as const, port: 443 }] }] };
    const r = await fc.run([policy("allow-elsewhere", spec, "default"), policy("allow-kube-system", spec, "kube-system")]);
    expect(r.code).toBe(0);
    expect(r.stderr).not.toMatch(/^rejected /m);
    await expectTraffic([block("tcp", "cluster", A, 443)]);
    // The same policy in namespace firewall does open it: the block above was the scoping.
    await fc.apply([policy("allow-elsewhere", spec, "firewall")]);
    await expectTraffic([pass("tcp", "cluster", A, 443)]);
  });
});
