// An HA pair: two controllers, each with its own Firewall object, service IP
// and kernel (a network namespace each), sharing one API server and the
// policies. They must both apply, report into their own Firewall, share the
// exporter Endpoints without overwriting each other, and settle: no writes
// back and forth once the world is still.
import { hasOwner } from "./owners.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { parseCidr } from "../lib/api/address.ts";
import { Controller } from "../lib/controller.ts";
import { controllerDeps } from "./controller-deps.ts";
import { runCommand } from "../lib/exec.ts";
import { type ClusterApi, clusterApi, type KubeObject } from "../lib/kube/api.ts";
import { TestApiServer } from "./apiserver/server.ts";
import { needs, netnsExecutor } from "./netns/topology.ts";
import { waitUntil } from "./wait-until.ts";

const env = needs(["ip", "nft"]);
const CWNP = "/apis/metal-stack.io/v1/namespaces/firewall/clusterwidenetworkpolicies";
const FIREWALLS = "/apis/metal-stack.io/v1/namespaces/firewall/firewalls";
const EP = "/api/v1/namespaces/firewall/endpoints/nftables-exporter";

const cidr = (s: string) => {
  const r = parseCidr(s);
  if (!r.ok) throw new Error(r.message);
  return r.value;
};


describe.skipIf(env.skip)("an HA pair of controllers", () => {
  const suffix = randomBytes(3).toString("hex");
  const pair = [
    { name: "fw-a", ns: `fct-ha-a-${suffix}`, ip: "10.0.1.1" },
    { name: "fw-b", ns: `fct-ha-b-${suffix}`, ip: "10.0.1.2" },
  ];
  let server: TestApiServer;
  let api: ClusterApi;
  let dir: string;
  const stop = new AbortController();
  const runs: Promise<void>[] = [];

  const get = async (path: string) => (await api.request("GET", path)).body as KubeObject & { status?: Record<string, unknown>; subsets?: { addresses?: { ip: string; targetRef?: { name: string } }[] }[] };
  const post = async (path: string, body: unknown) => {
    const r = await api.request("POST", path, { body });
    if (r.status >= 300) throw new Error(`POST ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  };
  const hasChain = (ns: string, owner: string) => hasOwner((argv) => runCommand(["ip", "netns", "exec", ns, ...argv]), owner);
  const firewall = (name: string) => ({ apiVersion: "metal-stack.io/v1", kind: "Firewall", metadata: { name, namespace: "firewall" }, spec: { interval: "1s" } });

  beforeAll(async () => {
    server = await new TestApiServer().start();
    const kc = new KubeConfig();
    kc.loadFromString(server.kubeconfig());
    api = clusterApi(kc);
    dir = mkdtempSync(join(tmpdir(), "fct-ha-"));
    await post("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: "firewall" } });
    for (const fw of pair) {
      expect((await runCommand(["ip", "netns", "add", fw.ns])).code).toBe(0);
      const exec = netnsExecutor(fw.ns);
      const controller = new Controller(
        { firewallName: fw.name, clusterPrefixes: [cidr("10.0.0.0/8")], privateVrf: 42, serviceIp: fw.ip, rulesetFile: join(dir, `${fw.name}.v4`) },
        controllerDeps(api, exec, { host: fw.name, overrides: { shaper: { describe: () => [], reconcile: async () => ({ changed: false, problems: [] }) } } }),
        stop.signal,
      );
      runs.push(controller.run());
    }
  });

  afterAll(async () => {
    stop.abort();
    await Promise.all(runs);
    await server?.stop();
    for (const fw of pair) await runCommand(["ip", "netns", "del", fw.ns]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("both apply the shared policies and report into their own Firewall objects", async () => {
    await waitUntil("CRDs", async () => (await api.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/firewalls.metal-stack.io")).status === 200);
    for (const fw of pair) await post(FIREWALLS, firewall(fw.name));
    await post(CWNP, { apiVersion: "metal-stack.io/v1", kind: "ClusterwideNetworkPolicy", metadata: { name: "allow-web", namespace: "firewall" }, spec: { egress: [{ ports: [{ port: 443 }] }] } });
    for (const fw of pair) await waitUntil(`${fw.name} applied`, () => hasChain(fw.ns, "np.eg.tcp.allow-web"));
    for (const fw of pair) {
      await waitUntil(`${fw.name} status`, async () => JSON.stringify((await get(`${FIREWALLS}/${fw.name}`)).status ?? {}).includes('"RulesApplied"'));
    }
    await waitUntil("policy Ready", async () => (await get(`${CWNP}/allow-web`)).status?.state === "Ready");
  });

  test("the exporter Endpoints carry both firewalls, each by its targetRef, and each has its own EndpointSlice", async () => {
    await waitUntil("both addresses", async () => (await get(EP)).subsets?.[0]?.addresses?.length === 2);
    const addresses = (await get(EP)).subsets?.[0]?.addresses ?? [];
    expect(addresses.map((a) => [a.ip, a.targetRef?.name])).toEqual([["10.0.1.1", "fw-a"], ["10.0.1.2", "fw-b"]]);
    const slices = (await get("/apis/discovery.k8s.io/v1/namespaces/firewall/endpointslices")) as unknown as { items: KubeObject[] };
    expect(slices.items.map((s) => s.metadata.name).filter((n) => n.startsWith("nftables-exporter")).sort()).toEqual(["nftables-exporter-fw-a", "nftables-exporter-fw-b"]);
  });

  test("once settled, they do not write the shared objects back and forth", async () => {
    await new Promise((r) => setTimeout(r, 1500));
    const before = { ep: (await get(EP)).metadata.resourceVersion, policy: (await get(`${CWNP}/allow-web`)).metadata.resourceVersion };
    server.resetRequests();
    // Several periodic reconciles of both (interval 1s).
    await new Promise((r) => setTimeout(r, 3500));
    expect({ ep: (await get(EP)).metadata.resourceVersion, policy: (await get(`${CWNP}/allow-web`)).metadata.resourceVersion }).toEqual(before);
    expect(server.countRequests({ method: "PUT", path: /endpoints|endpointslices/ })).toBe(0);
    expect(server.countRequests({ method: "PATCH", path: /clusterwidenetworkpolicies/ })).toBe(0);
  }, 15_000);

  test("a firewall leaving the pair: its table goes, the other removes its address and slice", async () => {
    await api.request("DELETE", `${FIREWALLS}/fw-b`);
    await waitUntil("fw-b table removed", async () => !(await runCommand(["ip", "netns", "exec", pair[1]?.ns ?? "", "nft", "list", "tables"])).stdout.includes("inet firewall"));
    await waitUntil("fw-b address gone", async () => (await get(EP)).subsets?.[0]?.addresses?.length === 1);
    expect((await get(EP)).subsets?.[0]?.addresses?.[0]?.ip).toBe("10.0.1.1");
    expect(await hasChain(pair[0]?.ns ?? "", "np.eg.tcp.allow-web")).toBe(true);
  });
});
