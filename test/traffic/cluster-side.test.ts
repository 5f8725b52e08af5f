// Real traffic proves the cluster-side binding of SPEC §4.1 step 4: with --private-vrf, egress
// accepts only what arrives on vlanN/vrfN, so a packet from the external side with a spoofed
// cluster source address is not forwarded, while legitimate egress, ingress and services still are.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createTopology, needs, type Topology } from "../netns/topology.ts";
import { block, type Check, type Controller, controller, dropFirewallTable, mismatches, pass, policy, service } from "./controller.ts";

const env = needs(["ip", "nft", "ss"]);

const CL4 = "10.0.1.2";
const CL6 = "fd00:66::2";
const LB4 = "10.0.1.80";
const EXT4 = "192.0.2.2";
const EXT6 = "2001:db8:1::2";
// Cluster-prefix addresses (10.0.0.0/8, fd00:66::/64) the external host claims as its own.
const SPOOF4 = "10.9.9.9";
const SPOOF6 = "fd00:66::99";

describe.skipIf(env.skip)("cluster-side binding with real traffic (SPEC §4.1 step 4)", () => {
  let t: Topology;
  let fc: Controller;

  beforeAll(async () => {
    t = await createTopology({ clusterAddresses: [LB4] });
    fc = controller(t);
    const must = async (ns: "cluster" | "firewall" | "external", argv: string[]) => {
      const r = await t.exec(ns, argv);
      if (r.code !== 0) throw new Error(`${argv.join(" ")} in ${ns}: ${r.stderr}`);
    };
    // The attacker's best case: it owns the spoofed addresses, and the replies find their way back to
    // it (a firewall route towards the external side, and on the cluster host a route that sends
    // fd00:66::99 through the firewall instead of asking its own link), so a whole connection can be
    // tried with the ordinary checks. Only the ruleset stands in the way.
    await must("external", ["ip", "addr", "add", `${SPOOF4}/32`, "dev", t.ifaces.external]);
    await must("external", ["ip", "addr", "add", `${SPOOF6}/128`, "dev", t.ifaces.external, "nodad"]);
    await must("firewall", ["ip", "route", "add", `${SPOOF4}/32`, "via", EXT4, "dev", t.ifaces.firewallExternal]);
    await must("firewall", ["ip", "-6", "route", "add", `${SPOOF6}/128`, "via", EXT6, "dev", t.ifaces.firewallExternal]);
    await must("cluster", ["ip", "-6", "route", "add", `${SPOOF6}/128`, "via", "fd00:66::1", "dev", t.ifaces.cluster]);
  });
  afterAll(async () => {
    fc?.cleanup();
    await t?.destroy();
  });

  const expectTraffic = async (checks: readonly Check[]) => expect(await mismatches(t, checks)).toEqual([]);

  // Egress to any destination: exactly the rule a spoofed cluster source would ride on.
  const anyDestination = policy("egress-anywhere", { egress: [{ ports: [{ protocol: "TCP", port: 8080 }, { protocol: "UDP", port: 5353 }] }] });

  test("without the controller's table the kernel forwards the spoofed flows (so a block below is the ruleset's doing)", async () => {
    await dropFirewallTable(t);
    await expectTraffic([
      pass("tcp", "external", CL4, 8080, SPOOF4),
      pass("udp", "external", CL4, 5353, SPOOF4),
      pass("tcp", "external", CL6, 8080, SPOOF6),
    ]);
  });

  test("a spoofed cluster source arriving on the external side is not forwarded by an egress rule, IPv4 and IPv6, TCP and UDP", async () => {
    await fc.apply([anyDestination]);
    await expectTraffic([
      block("tcp", "external", CL4, 8080, SPOOF4),
      block("udp", "external", CL4, 5353, SPOOF4),
      block("tcp", "external", CL6, 8080, SPOOF6),
      block("udp", "external", CL6, 5353, SPOOF6),
    ]);
  });

  test("legitimate egress from the cluster side still passes, with its replies", async () => {
    await fc.apply([anyDestination]);
    await expectTraffic([
      pass("tcp", "cluster", EXT4, 8080),
      pass("udp", "cluster", EXT4, 5353),
      pass("tcp", "cluster", EXT6, 8080),
      pass("udp", "cluster", EXT6, 5353),
      block("tcp", "cluster", EXT4, 8081),
    ]);
  });

  test("ingress policies and LoadBalancer services still open traffic towards the cluster side", async () => {
    await fc.apply([
      anyDestination,
      policy("ssh-in", { ingress: [{ from: [{ cidr: "192.0.2.0/24" }], ports: [{ protocol: "TCP", port: 22 }] }] }),
      service("web", { namespace: "shop", ingressIps: [LB4], ports: [{ port: 8443 }] }),
    ]);
    await expectTraffic([
      pass("tcp", "external", CL4, 22),
      pass("tcp", "external", LB4, 8443),
      block("tcp", "external", CL4, 8080, SPOOF4),
      block("tcp", "external", LB4, 8444),
    ]);
  });
});
