// The controller on its bad days (SPEC §4.7, §6): an API server that comes back
// empty, one that hangs, invalid edits of working objects, a Service and a
// policy of the same name, a storm of events, and a real `kubectl delete` of
// the Firewall. In every case the firewall keeps filtering and tells the truth.
// The controller runs in this process against the test API server; its
// nft/tc/ip commands run in the firewall namespace of a traffic topology.
import { hasOwner } from "./owners.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { parseCidr } from "../lib/api/address.ts";
import { parsePolicy } from "../lib/api/policy.ts";
import type { Validated } from "../lib/api/problem.ts";
import { Controller } from "../lib/controller.ts";
import { controllerDeps } from "./controller-deps.ts";
import { type ClusterApi, clusterApi, type KubeObject } from "../lib/kube/api.ts";
import { FINALIZER } from "../lib/kube/finalizer.ts";
import { budgetProblem, ELEMENT_BUDGET, policyElementCount } from "../lib/ruleset/budget.ts";
import { kubectl, kubectlMissing, seed, startTestServer, type TestServer } from "./apiserver/harness.ts";
import { createTopology, needs, type Topology } from "./netns/topology.ts";
import { waitUntil } from "./wait-until.ts";

const env = needs(["ip", "nft", "tc"]);
const noKubectl = kubectlMissing("test/controller-failsafe.test.ts");

const CWNP = "/apis/metal-stack.io/v1/namespaces/firewall/clusterwidenetworkpolicies";
const FIREWALLS = "/apis/metal-stack.io/v1/namespaces/firewall/firewalls";
const SERVICES = "/api/v1/namespaces/firewall/services";
const A = "203.0.113.5";
const B = "198.51.100.10";
/** Readiness bound for a silent API server, short for the test (the default is 30 s). */
const STALE_MS = 3000;

const cidr = (s: string) => {
  const r = parseCidr(s);
  if (!r.ok) throw new Error(r.message);
  return r.value;
};

const policy = (name: string, to: string, port: number) => ({
  apiVersion: "metal-stack.io/v1",
  kind: "ClusterwideNetworkPolicy",
  metadata: { name, namespace: "firewall" },
  spec: { egress: [{ to: [{ cidr: to }], ports: [{ protocol: "TCP", port }] }] },
});
const firewall = () => ({
  apiVersion: "metal-stack.io/v1",
  kind: "Firewall",
  metadata: { name: "firewall", namespace: "firewall" },
  spec: { interval: "2s", internalprefixes: ["10.0.0.0/8"] },
});

const expectValid = <T>(r: Validated<T>): T => {
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  return r.value;
};

interface Event {
  involvedObject: { kind: string; name: string };
  reason: string;
  type: string;
  message: string;
}

describe.skipIf(env.skip || noKubectl)("the controller fails closed and tells the truth", () => {
  let t: TestServer;
  let topo: Topology;
  let api: ClusterApi;
  let controller: Controller;
  let stop: AbortController;
  let running: Promise<void>;
  let dir: string;

  const fwExec = () => topo.executor("firewall");
  const tables = async () => (await fwExec()(["nft", "list", "tables"])).stdout;
  const hasChain = (owner: string) => hasOwner(fwExec(), owner);
  const get = async (path: string) => (await api.request("GET", path)).body as KubeObject & { status?: Record<string, unknown> };
  const write = async (method: "POST" | "PATCH", path: string, body: unknown) => {
    const r = await api.request(method, path, method === "PATCH" ? { body, contentType: "application/merge-patch+json" } : { body });
    if (r.status !== 201 && r.status !== 200) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body as KubeObject;
  };
  const events = async () => ((await get("/api/v1/namespaces/firewall/events")) as unknown as { items: Event[] }).items;
  const lastRun = async () => String((await get(`${FIREWALLS}/firewall`)).status?.lastRun ?? "");
  /** A policy's own traffic passes and the default deny holds: the ruleset still filters. */
  const filtering = async () => {
    expect(await topo.tcpConnect("cluster", A, 443)).toBe(true);
    expect(await topo.tcpConnect("cluster", A, 444)).toBe(false);
    expect(await topo.tcpConnect("cluster", B, 443)).toBe(false);
  };
  /** Namespace, CRDs (unless the controller installed them) and the objects this suite starts from. */
  const populate = async (crds: boolean) => {
    if (crds) await seed(t);
    else await write("POST", "/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: "firewall" } });
    await write("POST", FIREWALLS, firewall());
    await write("POST", CWNP, policy("allow-a", `${A}/32`, 443));
  };

  beforeAll(async () => {
    t = await startTestServer();
    const kc = new KubeConfig();
    kc.loadFromString(t.server.kubeconfig());
    // Short request timeout: a hung API server must not hold a test for the default 30 s.
    api = clusterApi(kc, { timeoutMs: 2000 });
    await populate(true);
    topo = await createTopology({ clusterAddresses: ["10.0.1.80"] });
    dir = mkdtempSync(join(tmpdir(), "fct-failsafe-"));
    stop = new AbortController();
    controller = new Controller(
      { firewallName: "firewall", clusterPrefixes: [cidr("10.0.0.0/8")], privateVrf: 42, serviceIp: "10.0.1.1", rulesetFile: join(dir, "ruleset.v4"), apiStaleAfterMs: STALE_MS },
      controllerDeps(api, fwExec()),
      stop.signal,
    );
    running = controller.run();
    await waitUntil("policy in the kernel", () => hasChain("np.eg.tcp.allow-a"));
    await waitUntil("ready", async () => controller.readiness().ok);
  });

  afterAll(async () => {
    stop?.abort();
    await running;
    await topo?.destroy();
    await t?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("the controller puts its finalizer on its Firewall object", async () => {
    await waitUntil("finalizer", async () => ((await get(`${FIREWALLS}/firewall`)).metadata.finalizers as string[] | undefined)?.includes(FINALIZER) === true);
  });

  test("an invalid LoadBalancer Service firewall/web does not touch the valid policy firewall/web", async () => {
    await write("POST", CWNP, policy("web", `${B}/32`, 8080));
    await write("POST", SERVICES, {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "web", namespace: "firewall" },
      spec: { type: "LoadBalancer", loadBalancerSourceRanges: ["not-a-cidr"], ports: [{ port: 443, protocol: "TCP" }] },
    });
    await waitUntil("Service rejected (Event)", async () => (await events()).some((e) => e.involvedObject.kind === "Service" && e.involvedObject.name === "web" && e.reason === "InvalidService"));
    const web = await get(`${CWNP}/web`);
    expect(web.status?.state).toBe("Ready");
    expect(web.status?.message).toBe("valid");
    expect((await events()).filter((e) => e.involvedObject.kind === "ClusterwideNetworkPolicy" && e.involvedObject.name === "web")).toEqual([]);
    expect(await topo.tcpConnect("cluster", B, 8080)).toBe(true);
    await api.request("DELETE", `${SERVICES}/web`);
  });

  test("an invalid edit of a working policy keeps its last valid version in force and says which", async () => {
    const before = await get(`${CWNP}/allow-a`);
    const generation = before.metadata.generation as number;
    // Valid for the CRD's schema (256 blocks, 128 ports allowed), refused by the controller: 100 hosts
    // times 128 ports is over the element budget of one object.
    const hosts = Array.from({ length: 100 }, (_, i) => ({ cidr: `198.18.${i}.1/32` }));
    const ports = Array.from({ length: 128 }, (_, i) => ({ protocol: "TCP", port: 2000 + 2 * i }));
    const edited = { ...policy("allow-a", `${A}/32`, 443), spec: { egress: [{ to: hosts, ports }] } };
    const count = policyElementCount(expectValid(parsePolicy(edited)));
    expect(count).toBeGreaterThan(ELEMENT_BUDGET.perObject);
    await write("PATCH", `${CWNP}/allow-a`, { spec: edited.spec });
    await waitUntil("Invalid status", async () => (await get(`${CWNP}/allow-a`)).status?.state === "Invalid");
    const status = (await get(`${CWNP}/allow-a`)).status;
    const problem = budgetProblem(count, ELEMENT_BUDGET.perObject, "object");
    expect(status?.message).toBe(`${problem.path}: ${problem.message}; generation ${generation}, the last valid one, stays in force`);
    expect(status?.observedGeneration).toBe(generation + 1);
    await filtering();
    expect((await events()).some((e) => e.involvedObject.name === "allow-a" && e.reason === "InvalidPolicy" && e.message.endsWith(`generation ${generation}, the last valid one, stays in force`))).toBe(true);
    // Fixed again: Ready, and the new version applies.
    await write("PATCH", `${CWNP}/allow-a`, { spec: policy("allow-a", `${A}/32`, 443).spec });
    await waitUntil("Ready again", async () => (await get(`${CWNP}/allow-a`)).status?.state === "Ready");
    await filtering();
  });

  test("under a storm of Service events the periodic work still runs on schedule", async () => {
    await write("POST", SERVICES, {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "stormy", namespace: "firewall" },
      spec: { type: "LoadBalancer", ports: [{ port: 443, protocol: "TCP" }] },
    });
    await write("POST", SERVICES, { apiVersion: "v1", kind: "Service", metadata: { name: "plain", namespace: "firewall" }, spec: { ports: [{ port: 80 }] } });
    await controller.idle();
    // Relabelling a ClusterIP Service is no reason to reconcile at all.
    const quiet = controller.reconciles;
    for (let i = 0; i < 10; i++) await write("PATCH", `${SERVICES}/plain`, { metadata: { labels: { tick: String(i) } } });
    await controller.idle();
    expect(controller.reconciles - quiet).toBeLessThanOrEqual(1); // at most the periodic one
    // A LoadBalancer relabelled every 0.3 s reconciles every time; lastRun must still move every 2 s.
    const runs: string[] = [await lastRun()];
    const until = performance.now() + 9000;
    let i = 0;
    while (performance.now() < until) {
      await write("PATCH", `${SERVICES}/stormy`, { metadata: { labels: { tick: String(i++) } } });
      const now = await lastRun();
      if (now !== runs.at(-1)) runs.push(now);
      await new Promise((r) => setTimeout(r, 300));
    }
    // 9 s at a 2 s interval: at least 3 periodic runs even with timer jitter.
    expect(runs.length - 1).toBeGreaterThanOrEqual(3);
    await api.request("DELETE", `${SERVICES}/stormy`);
    await api.request("DELETE", `${SERVICES}/plain`);
  }, 20_000);

  test("a hung API server makes readiness fail with the reason; the rules stay; it recovers", async () => {
    t.server.hang();
    try {
      await waitUntil("not ready", async () => !controller.readiness().ok, STALE_MS + 12_000);
      expect(controller.readiness().reason).toMatch(/^the API server has not answered for \d+ s/);
      await filtering();
    } finally {
      t.server.unhang();
    }
    await waitUntil("ready again", async () => controller.readiness().ok, 40_000);
  }, 70_000);

  test("an API server that comes back empty changes nothing in the kernel: not ready, CRDs back, traffic still filtered", async () => {
    const rulesBefore = (await fwExec()(["nft", "list", "table", "inet", "firewall"])).stdout.replace(/counter packets \d+ bytes \d+/g, "");
    await t.server.restartEmpty();
    await waitUntil("CRDs reinstalled", async () => (await api.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/firewalls.metal-stack.io")).status === 200, 40_000);
    await waitUntil("not ready: Firewall absent", async () => controller.readiness().reason.startsWith("Firewall firewall/firewall is not in the API server"), 40_000);
    expect(controller.readiness().ok).toBe(false);
    // Give it a few periodic runs to do something wrong.
    await new Promise((r) => setTimeout(r, 4500));
    expect(controller.readiness().reason.startsWith("Firewall firewall/firewall is not in the API server")).toBe(true);
    expect((await fwExec()(["nft", "list", "table", "inet", "firewall"])).stdout.replace(/counter packets \d+ bytes \d+/g, "")).toBe(rulesBefore);
    await filtering();
    // Restored: the objects come back, the controller is ready again and follows them.
    await populate(false);
    await waitUntil("ready again", async () => controller.readiness().ok, 40_000);
    await filtering();
  }, 120_000);

  test("an API server restored by someone else (CRDs and objects back at once) is followed, not ignored", async () => {
    await t.server.restartEmpty();
    await populate(true);
    await write("POST", CWNP, policy("after-restore", `${B}/32`, 8443));
    await waitUntil("the restored server's new policy in the kernel", () => hasChain("np.eg.tcp.after-restore"), 40_000);
    await waitUntil("ready again", async () => controller.readiness().ok, 40_000);
    await filtering();
  }, 90_000);

  test("kubectl delete firewall: the finalizer is honoured, our table goes, the base table stays", async () => {
    const base = "table inet metal {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 22 accept\n\t}\n}\n";
    expect((await fwExec()(["nft", "-f", "-"], { stdin: base })).code).toBe(0);
    const metalBefore = (await fwExec()(["nft", "list", "table", "inet", "metal"])).stdout;
    await waitUntil("finalizer", async () => ((await get(`${FIREWALLS}/firewall`)).metadata.finalizers as string[] | undefined)?.includes(FINALIZER) === true);
    expect(existsSync(join(dir, "ruleset.v4"))).toBe(true);
    const r = await kubectl(t, ["delete", "firewall", "-n", "firewall", "firewall", "--timeout=30s"]);
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe('firewall.metal-stack.io "firewall" deleted');
    expect(r.code).toBe(0);
    expect((await api.request("GET", `${FIREWALLS}/firewall`)).status).toBe(404);
    expect(await tables()).not.toContain("inet firewall");
    expect((await fwExec()(["nft", "list", "table", "inet", "metal"])).stdout).toBe(metalBefore);
    // The persisted ruleset too: a reboot must not bring the deleted rules back.
    expect(existsSync(join(dir, "ruleset.v4"))).toBe(false);
    // Without a Firewall object the controller is not ready, and says why.
    await waitUntil("not ready", async () => controller.readiness().reason === "Firewall firewall/firewall was deleted: table inet firewall and its shaping were removed; nothing to do until it is created again");
  }, 60_000);
});
