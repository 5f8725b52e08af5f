// Real traffic proves the ingress rules of SPEC §4.3 (policy `spec.ingress[]`) and §4.4
// (Services of type LoadBalancer): who may open connections into the cluster, on which
// address and port, from which sources, over IPv4 and IPv6, TCP and UDP.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createTopology, needs, type Topology } from "../netns/topology.ts";
import { block, type Check, type Controller, controller, mismatches, nft, pass, policy, service } from "./controller.ts";

const env = needs(["ip", "nft", "ss"]);

const CL4 = "10.0.1.2";
const CL6 = "fd00:66::2";
const LB4 = "10.0.1.80"; // status.loadBalancer.ingress ip
const LB6 = "fd00:66::80";
const LBIP4 = "10.0.1.81"; // spec.loadBalancerIP
const LBIP6 = "fd00:66::81";
// External sources: the external host's own addresses and its extra ones.
const EXT4 = "192.0.2.2";
const EXT6 = "2001:db8:1::2";
const ADMIN4 = "198.51.100.10";
const ADMIN6 = "2001:db8:2::10";
const OTHER4 = "203.0.113.5";

describe.skipIf(env.skip)("ingress with real traffic (SPEC §4.3, §4.4)", () => {
  let t: Topology;
  let fc: Controller;

  beforeAll(async () => {
    t = await createTopology({ clusterAddresses: [LB4, LB6, LBIP4, LBIP6] });
    fc = controller(t);
  });
  afterAll(async () => {
    fc?.cleanup();
    await t?.destroy();
  });

  const expectTraffic = async (checks: readonly Check[]) => expect(await mismatches(t, checks)).toEqual([]);
  const sshFromAdmins = policy("ssh-from-admins", {
    ingress: [
      {
        from: [{ cidr: "198.51.100.0/24" }, { cidr: "2001:db8:2::/48" }],
        ports: [{ protocol: "TCP", port: 22 }, { protocol: "UDP", port: 161 }],
      },
    ],
  });

  test("with nothing applied, external hosts reach every cluster address used below (the checks can see a pass)", async () => {
    await expectTraffic([
      pass("tcp", "external", CL4, 22, ADMIN4),
      pass("tcp", "external", LB4, 443),
      pass("tcp", "external", LBIP6, 443),
    ]);
  });

  test("ingress policy: external hosts reach the cluster on the listed port only from the listed sources (IPv4 and IPv6, TCP and UDP)", async () => {
    await fc.apply([sshFromAdmins]);
    await expectTraffic([
      pass("tcp", "external", CL4, 22, ADMIN4),
      pass("udp", "external", CL4, 161, ADMIN4),
      pass("tcp", "external", CL6, 22, ADMIN6),
      pass("udp", "external", CL6, 161, ADMIN6),
      // not from other sources
      block("tcp", "external", CL4, 22, EXT4),
      block("tcp", "external", CL4, 22, OTHER4),
      block("udp", "external", CL4, 161, EXT4),
      block("tcp", "external", CL6, 22, EXT6),
      block("udp", "external", CL6, 161, EXT6),
      // not on other ports or the other protocol
      block("tcp", "external", CL4, 23, ADMIN4),
      block("udp", "external", CL4, 22, ADMIN4),
      block("tcp", "external", CL6, 161, ADMIN6),
    ]);
  });

  test("an ingress policy does not open egress towards its sources", async () => {
    await fc.apply([sshFromAdmins]);
    await expectTraffic([
      block("tcp", "cluster", ADMIN4, 22),
      block("udp", "cluster", ADMIN4, 161),
      block("tcp", "cluster", ADMIN6, 22),
      block("udp", "cluster", ADMIN6, 161),
    ]);
  });

  test("an ingress rule without ports admits every port from its sources; one without `from` admits its port from anywhere", async () => {
    await fc.apply([
      policy("from-partner-any-port", { ingress: [{ from: [{ cidr: "203.0.113.0/24" }, { cidr: "2001:db8:2::/48" }] }] }),
      policy("web-from-anywhere", { ingress: [{ ports: [{ protocol: "TCP", port: 8080 }] }] }),
    ]);
    await expectTraffic([
      pass("tcp", "external", CL4, 1234, OTHER4),
      pass("udp", "external", CL4, 4321, OTHER4),
      pass("tcp", "external", CL6, 1234, ADMIN6),
      block("tcp", "external", CL4, 1234, ADMIN4),
      block("udp", "external", CL6, 4321, EXT6),
      pass("tcp", "external", CL4, 8080, EXT4),
      pass("tcp", "external", CL4, 8080, ADMIN4),
      pass("tcp", "external", CL6, 8080, EXT6),
      block("tcp", "external", CL4, 8081, EXT4),
      block("udp", "external", CL4, 8080, EXT4),
      // still nothing outwards
      block("tcp", "cluster", OTHER4, 1234),
      block("tcp", "cluster", EXT4, 8080),
    ]);
  });

  test("LoadBalancer service: external hosts reach its status.loadBalancer.ingress addresses on its ports and protocols, nothing else", async () => {
    const r = await fc.apply([
      service("web", { namespace: "shop", ingressIps: [LB4, LB6], ports: [{ port: 443 }, { port: 5353, protocol: "UDP" }] }),
    ]);
    expect(r.stderr).not.toMatch(/^rejected /m);
    await expectTraffic([
      pass("tcp", "external", LB4, 443, EXT4),
      pass("tcp", "external", LB4, 443, ADMIN4),
      pass("udp", "external", LB4, 5353),
      pass("tcp", "external", LB6, 443, EXT6),
      pass("udp", "external", LB6, 5353),
      block("tcp", "external", LB4, 444),
      block("udp", "external", LB4, 443),
      block("tcp", "external", LB4, 5353),
      block("tcp", "external", LB6, 444),
      // other cluster addresses on the same port stay closed
      block("tcp", "external", CL4, 443),
      block("tcp", "external", CL6, 443),
      block("tcp", "external", LBIP4, 443),
    ]);
  });

  test("LoadBalancer service with loadBalancerSourceRanges: only the listed sources get through", async () => {
    await fc.apply([
      service("web", {
        namespace: "shop",
        ingressIps: [LB4, LB6],
        ports: [{ port: 443 }, { port: 5353, protocol: "UDP" }],
        sourceRanges: ["198.51.100.0/24", "2001:db8:2::/48"],
      }),
    ]);
    await expectTraffic([
      pass("tcp", "external", LB4, 443, ADMIN4),
      pass("udp", "external", LB4, 5353, ADMIN4),
      pass("tcp", "external", LB6, 443, ADMIN6),
      pass("udp", "external", LB6, 5353, ADMIN6),
      block("tcp", "external", LB4, 443, EXT4),
      block("tcp", "external", LB4, 443, OTHER4),
      block("udp", "external", LB4, 5353, EXT4),
      block("tcp", "external", LB6, 443, EXT6),
      block("udp", "external", LB6, 5353, EXT6),
      block("tcp", "external", LB4, 444, ADMIN4),
    ]);
  });

  test("spec.loadBalancerIP opens its address too (IPv4 and IPv6)", async () => {
    await fc.apply([
      service("legacy4", { namespace: "voip", loadBalancerIP: LBIP4, ports: [{ port: 5060, protocol: "UDP" }, { port: 5061 }] }),
      service("legacy6", { namespace: "voip", loadBalancerIP: LBIP6, ports: [{ port: 5061 }] }),
    ]);
    await expectTraffic([
      pass("udp", "external", LBIP4, 5060),
      pass("tcp", "external", LBIP4, 5061),
      pass("tcp", "external", LBIP6, 5061),
      block("tcp", "external", LBIP4, 5060),
      block("udp", "external", LBIP6, 5060),
      block("tcp", "external", LB4, 5061),
    ]);
  });

  test("Services of other types open nothing and are not rejections (exit code 0)", async () => {
    const r = await fc.run([
      service("internal", { namespace: "shop", type: "ClusterIP", ingressIps: [LB4, LB6], loadBalancerIP: LBIP4, ports: [{ port: 443 }] }),
      service("nodeport", { namespace: "shop", type: "NodePort", ingressIps: [LB4], ports: [{ port: 8443 }] }),
    ]);
    expect(r.code).toBe(0);
    expect(r.stderr).not.toMatch(/^rejected /m);
    expect(await nft(t, ["list", "table", "inet", "firewall"])).not.toContain("shop");
    await expectTraffic([
      block("tcp", "external", LB4, 443),
      block("tcp", "external", LB6, 443),
      block("tcp", "external", LBIP4, 443),
      block("tcp", "external", LB4, 8443),
    ]);
  });

  test("a LoadBalancer service removed from the manifests closes its ports", async () => {
    const web = service("web", { namespace: "shop", ingressIps: [LB4], ports: [{ port: 443 }] });
    const other = service("other", { namespace: "shop", ingressIps: [LB6], ports: [{ port: 443 }] });
    await fc.apply([web, other]);
    await expectTraffic([pass("tcp", "external", LB4, 443), pass("tcp", "external", LB6, 443)]);
    await fc.apply([other]);
    await expectTraffic([block("tcp", "external", LB4, 443), pass("tcp", "external", LB6, 443)]);
  });
});
