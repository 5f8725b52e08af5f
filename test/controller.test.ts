// The long-running controller against the test API server, acting on a real
// kernel: the firewall namespace of a traffic topology. The controller runs in
// this process; every nft/tc/ip command it issues runs in that namespace.
import { hasOwner, ownerCount } from "./owners.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { parseCidr } from "../lib/api/address.ts";
import { Controller } from "../lib/controller.ts";
import { controllerDeps } from "./controller-deps.ts";
import { type ClusterApi, clusterApi, type KubeObject } from "../lib/kube/api.ts";
import { nftClient } from "../lib/nft/client.ts";
import { kernelReader } from "../lib/nft/netlink.ts";
import { kubectlMissing, kubectlOk, startTestServer, type TestServer, tableRows } from "./apiserver/harness.ts";
import { createTopology, needs, type Topology } from "./netns/topology.ts";
import { waitUntil } from "./wait-until.ts";

const env = needs(["ip", "nft", "tc"]);
const noKubectl = kubectlMissing("test/controller.test.ts");

const CWNP = "/apis/metal-stack.io/v1/namespaces/firewall/clusterwidenetworkpolicies";
const FIREWALLS = "/apis/metal-stack.io/v1/namespaces/firewall/firewalls";
const A = "203.0.113.5";
const B = "198.51.100.10";

const cidr = (s: string) => {
  const r = parseCidr(s);
  if (!r.ok) throw new Error(r.message);
  return r.value;
};

const policyObject = (name: string, to: string, port: number, namespace = "firewall") => ({
  apiVersion: "metal-stack.io/v1",
  kind: "ClusterwideNetworkPolicy",
  metadata: { name, namespace },
  spec: { egress: [{ to: [{ cidr: to }], ports: [{ protocol: "TCP", port }] }] },
});

const firewallObject = () => ({
  apiVersion: "metal-stack.io/v1",
  kind: "Firewall",
  metadata: { name: "firewall", namespace: "firewall" },
  spec: { interval: "2s", internalprefixes: ["10.0.0.0/8"] },
});


describe.skipIf(env.skip || noKubectl)("the controller against an API server, on a real kernel", () => {
  let t: TestServer;
  let topo: Topology;
  let api: ClusterApi;
  let controller: Controller;
  let stop: AbortController;
  let running: Promise<void>;
  let dir: string;
  /** Makes `nft -f` refuse every transaction, as a broken kernel or nft would. */
  let refuseCheck = false;

  const fwExec = () => topo.executor("firewall");
  const chains = async () => (await fwExec()(["nft", "list", "chains", "inet"])).stdout;
  const hasChain = (owner: string) => hasOwner(fwExec(), owner);
  const get = async (path: string) => (await api.request("GET", path)).body as KubeObject & { status?: Record<string, unknown> };
  const create = async (path: string, body: unknown) => {
    const r = await api.request("POST", path, { body });
    if (r.status !== 201 && r.status !== 200) throw new Error(`POST ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  };
  const del = (path: string) => api.request("DELETE", path);

  beforeAll(async () => {
    t = await startTestServer();
    const kc = new KubeConfig();
    kc.loadFromString(t.server.kubeconfig());
    api = clusterApi(kc);
    await create("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: "firewall" } });
    await create("/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: "shop" } });
    topo = await createTopology({ clusterAddresses: ["10.0.1.80"] });
    dir = mkdtempSync(join(tmpdir(), "fct-controller-"));
    stop = new AbortController();
    // The production path: generation and element counters read over netlink in the firewall namespace.
    const kernel = kernelReader({ netns: topo.ns.firewall });
    const real = nftClient("nft", fwExec(), kernel);
    controller = new Controller(
      { firewallName: "firewall", clusterPrefixes: [cidr("10.0.0.0/8"), cidr("fd00:66::/64")], privateVrf: 42, serviceIp: "10.0.1.1", rulesetFile: join(dir, "ruleset.v4") },
      controllerDeps(api, fwExec(), {
        ...(kernel ? { kernel } : {}),
        // Refused both ways a transaction goes: nft scripts, and element batches over netlink.
        overrides: {
          nft: {
            ...real,
            run: (script: string) => (refuseCheck ? Promise.resolve({ code: 1, stdout: "", stderr: "Error: injected refusal" }) : real.run(script)),
            ...(real.applyElements ? { applyElements: (load: Parameters<NonNullable<typeof real.applyElements>>[0]) => (refuseCheck ? Promise.reject(new Error("injected refusal")) : (real.applyElements as NonNullable<typeof real.applyElements>)(load)) } : {}),
          },
        },
      }),
      stop.signal,
    );
    running = controller.run();
  });

  afterAll(async () => {
    stop?.abort();
    await running;
    await topo?.destroy();
    await t?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("installs its CRDs at start", async () => {
    await waitUntil("CRDs established", async () => {
      const crd = await get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/clusterwidenetworkpolicies.metal-stack.io");
      return JSON.stringify(crd.status ?? {}).includes('"Established"');
    });
  });

  test("without a Firewall object nothing is applied; with one, a policy takes effect within a second", async () => {
    await create(CWNP, policyObject("allow-a", `${A}/32`, 443));
    await new Promise((r) => setTimeout(r, 300));
    expect(await hasChain("np.eg.tcp.allow-a")).toBe(false);
    await create(FIREWALLS, firewallObject());
    const ms = await waitUntil("policy chain in the kernel", () => hasChain("np.eg.tcp.allow-a"));
    expect(ms).toBeLessThan(1000);
    expect(await topo.tcpConnect("cluster", A, 443)).toBe(true);
    expect(await topo.tcpConnect("cluster", A, 444)).toBe(false);
  });

  test("policy status: Ready for applied, Invalid with every problem (and an Event), Ignored outside firewall", async () => {
    // The CRD's schema refuses this object; one that predates the schema (or a cluster without
    // CEL) may still hold it, and then the controller's own validation must catch it.
    t.server.setValidation(false);
    try {
      await create(CWNP, { ...policyObject("broken", "203.0.113.0/28", 443), spec: { egress: [{ to: [{ cidr: "203.0.113.0/28", except: ["198.51.100.0/24"] }], ports: [{ port: 0 }] }] } });
    } finally {
      t.server.setValidation(true);
    }
    await create("/apis/metal-stack.io/v1/namespaces/shop/clusterwidenetworkpolicies", policyObject("elsewhere", `${B}/32`, 80, "shop"));
    await waitUntil("statuses", async () => {
      const [a, b, c] = await Promise.all([get(`${CWNP}/allow-a`), get(`${CWNP}/broken`), get("/apis/metal-stack.io/v1/namespaces/shop/clusterwidenetworkpolicies/elsewhere")]);
      return a.status?.state === "Ready" && b.status?.state === "Invalid" && c.status?.state === "Ignored";
    });
    const broken = await get(`${CWNP}/broken`);
    expect(broken.status?.message).toContain("spec.egress[0].to[0].except[0]: 198.51.100.0/24 is not inside cidr 203.0.113.0/28");
    expect(broken.status?.message).toContain("spec.egress[0].ports[0].port: 0 is not a port");
    expect(broken.status?.observedGeneration).toBe(broken.metadata.generation);
    const events = (await get("/api/v1/namespaces/firewall/events")) as unknown as { items: { involvedObject: { name: string }; reason: string; type: string }[] };
    expect(events.items.some((e) => e.involvedObject.name === "broken" && e.type === "Warning" && e.reason === "InvalidPolicy")).toBe(true);
    // The valid policy still applies.
    expect(await topo.tcpConnect("cluster", A, 443)).toBe(true);
  });

  test("the interval writes the kernel's counters into status.stats: devices and every counted rule, matching the kernel", async () => {
    expect(await topo.tcpConnect("cluster", A, 443)).toBe(true);
    type Stats = { devices: { external: { in: number; out: number; total: number } }; rules: Record<string, Record<string, { counter: { packets: number; bytes: number } }>> };
    const stats = async () => (await get(`${FIREWALLS}/firewall`)).status?.stats as Stats | undefined;
    await waitUntil("stats after traffic", async () => ((await stats())?.rules.accept?.["accept traffic for np allow-a tcp"]?.counter.packets ?? 0) > 0, 10_000);
    const s = (await stats()) as Stats;
    expect(s.devices.external.out).toBeGreaterThan(0);
    expect(s.devices.external.total).toBe(s.devices.external.in + s.devices.external.out);
    // Every value the status shows is one the kernel had: never more than the counter now holds.
    const now = (await ownerCount(fwExec(), "np.eg.tcp.allow-a")).packets;
    const shown = s.rules.accept?.["accept traffic for np allow-a tcp"]?.counter.packets ?? 0;
    expect(shown).toBeGreaterThan(0);
    expect(shown).toBeLessThanOrEqual(now);
    expect(Object.keys(s.rules.accept ?? {})).toContain("accept established connections");
    expect(Object.keys(s.rules.other ?? {})).toContain("count and log dropped packets");
    const described = await kubectlOk(t, ["describe", "firewall", "-n", "firewall", "firewall"]);
    expect(described).toContain("Devices:");
    expect(described).toContain("accept traffic for np allow-a tcp");
  });

  test("operators see it with kubectl: cwnp states, the Firewall's status, the exporter Services and Endpoints", async () => {
    const cwnp = tableRows(await kubectlOk(t, ["get", "cwnp", "-n", "firewall"]));
    expect(cwnp[0]).toEqual(["NAME", "STATE", "MESSAGE", "AGE"]);
    expect(cwnp.find((r) => r[0] === "allow-a")?.[1]).toBe("Ready");
    expect(cwnp.find((r) => r[0] === "broken")?.[1]).toBe("Invalid");
    await waitUntil("Firewall status", async () => JSON.stringify((await get(`${FIREWALLS}/firewall`)).status ?? {}).includes("RulesApplied"));
    const described = await kubectlOk(t, ["describe", "firewall", "-n", "firewall", "firewall"]);
    expect(described).toContain("Status:");
    expect(described).toContain("RulesApplied");
    expect(described).toContain("Last Run:");
    const svc = await kubectlOk(t, ["get", "svc,ep", "-n", "firewall"]);
    expect(svc).toContain("nftables-exporter");
    expect(svc).toContain("node-exporter");
    expect(svc).toContain("10.0.1.1:9630");
    expect(svc).toContain("10.0.1.1:9100");
  });

  test("a deleted or edited exporter Endpoints object is restored", async () => {
    await del("/api/v1/namespaces/firewall/endpoints/node-exporter");
    await waitUntil("endpoints restored", async () => (await api.request("GET", "/api/v1/namespaces/firewall/endpoints/node-exporter")).status === 200);
    const ep = await get("/api/v1/namespaces/firewall/endpoints/node-exporter");
    expect(JSON.stringify(ep)).toContain("10.0.1.1");
  });

  test("a policy status someone else changed is put right by the next periodic reconcile (the unchanged ones are not looked at again)", async () => {
    await waitUntil("Ready", async () => (await get(`${CWNP}/allow-a`)).status?.state === "Ready");
    await controller.idle();
    const r = await api.request("PATCH", `${CWNP}/allow-a/status`, { body: { status: { state: "Invalid", message: "forged" } }, contentType: "application/merge-patch+json" });
    expect(r.status).toBe(200);
    // Not a change that matters to the rules: only the interval (2 s) brings the reconcile that sees it.
    await waitUntil("written back", async () => {
      const a = await get(`${CWNP}/allow-a`);
      return a.status?.state === "Ready" && a.status?.message !== "forged";
    }, 10_000);
  }, 15_000);

  test("its own status writes do not trigger reconciles", async () => {
    await controller.idle();
    await new Promise((r) => setTimeout(r, 200));
    const before = controller.reconciles;
    await new Promise((r) => setTimeout(r, 600));
    // At most the periodic one (interval 2s) may have run meanwhile.
    expect(controller.reconciles - before).toBeLessThanOrEqual(1);
  });

  test("periodic reconciles after its own Firewall status writes classify nothing anew", async () => {
    await controller.idle();
    const firewallStatus = async () => JSON.stringify((await get(`${FIREWALLS}/firewall`)).status ?? {});
    const reconciles = controller.reconciles;
    const classifications = controller.classifications;
    const before = await firewallStatus();
    // Two periodic runs (interval 2 s), each writing the Firewall's status (its lastRun moves).
    await waitUntil("two periodic reconciles", async () => controller.reconciles >= reconciles + 2, 10_000);
    await controller.idle();
    expect(await firewallStatus()).not.toBe(before);
    expect(controller.classifications).toBe(classifications);
  }, 15_000);

  test("after one policy is edited among many, only that policy's status is looked at (the edit, then its own status write)", async () => {
    for (let i = 0; i < 20; i++) await create(CWNP, policyObject(`many-${i}`, `${B}/32`, 7000 + i));
    await waitUntil("all Ready", async () => {
      for (let i = 0; i < 20; i++) if ((await get(`${CWNP}/many-${i}`)).status?.state !== "Ready") return false;
      return true;
    }, 10_000);
    // A periodic pass after the last status write came back: every status is known to be right.
    const reconciles = controller.reconciles;
    await waitUntil("a periodic reconcile", async () => controller.reconciles > reconciles, 10_000);
    await controller.idle();
    const looks = controller.policyStatusLooks;
    const r = await api.request("PATCH", `${CWNP}/many-7`, { body: { spec: { egress: [{ to: [{ cidr: `${B}/32` }], ports: [{ protocol: "TCP", port: 7777 }] }] } }, contentType: "application/merge-patch+json" });
    expect(r.status).toBe(200);
    await waitUntil("the edit's status", async () => (await get(`${CWNP}/many-7`)).status?.observedGeneration === 2, 10_000);
    // The status write's new version is looked at by the next reconcile (a periodic one); one more
    // after that looks at nothing.
    await waitUntil("the status write's version looked at", async () => controller.policyStatusLooks - looks >= 2, 10_000);
    const after = controller.reconciles;
    await waitUntil("one more periodic reconcile", async () => controller.reconciles > after, 10_000);
    await controller.idle();
    expect(controller.policyStatusLooks - looks).toBe(2);
    for (let i = 0; i < 20; i++) await del(`${CWNP}/many-${i}`);
  }, 40_000);

  test("a flood of 1,000 policy changes is coalesced into a few reconciles and ends in the right state", async () => {
    await controller.idle();
    const before = controller.reconciles;
    const writes: Promise<unknown>[] = [];
    const portTo = (port: number) =>
      api.request("PATCH", `${CWNP}/allow-a`, { body: { spec: { egress: [{ to: [{ cidr: `${A}/32` }], ports: [{ protocol: "TCP", port }] }] } }, contentType: "application/merge-patch+json" });
    for (let i = 0; i < 999; i++) {
      writes.push(portTo(1000 + i));
      if (writes.length >= 50) await Promise.all(writes.splice(0));
    }
    await Promise.all(writes);
    await portTo(1999); // the 1,000th change, last for sure (the batches above land in any order)
    await create(CWNP, policyObject("flood-end", `${B}/32`, 8443));
    await waitUntil("final state", () => hasChain("np.eg.tcp.flood-end"), 10_000);
    await controller.idle();
    const runs = controller.reconciles - before;
    expect(runs).toBeLessThan(100);
    expect(await topo.tcpConnect("cluster", A, 1999)).toBe(true);
    expect(await topo.tcpConnect("cluster", A, 443)).toBe(false);
    expect(await topo.tcpConnect("cluster", B, 8443)).toBe(true);
  });

  test("after event-driven patches the table stays proven by its generation marker, in place, without replacing it", async () => {
    await controller.idle();
    const handles = async () => (await fwExec()(["nft", "-a", "list", "chain", "inet", "firewall", "forward"])).stdout.match(/# handle \d+/g)?.join(",");
    const before = await handles();
    expect(before).toBeTruthy();
    // The marker names the generation the kernel is at: nobody committed anything since our last transaction.
    const reader = kernelReader({ netns: topo.ns.firewall });
    if (!reader) throw new Error("netlink is not available in this runtime");
    await waitUntil("generation marker equal to the kernel's generation", async () => (await chains()).includes(`chain generation.${reader.generation()} {`), 8000);
    expect((await chains()).match(/chain (generation|fingerprint)\.\S+ \{/g)).toEqual([`chain generation.${reader.generation()} {`]);
    expect(await handles()).toBe(before);
  }, 15_000);

  test("a failed apply keeps the previous rules, is reported in the Firewall's status and as an Event, and recovers", async () => {
    await controller.idle();
    refuseCheck = true;
    try {
      await create(CWNP, policyObject("during-failure", `${A}/32`, 5443));
      await waitUntil("RulesApplied False", async () => {
        const conditions = ((await get(`${FIREWALLS}/firewall`)).status?.conditions ?? []) as { type: string; status: string; reason: string }[];
        return conditions.some((c) => c.type === "RulesApplied" && c.status === "False" && c.reason === "NftCheckFailed");
      });
      expect(controller.readiness().ok).toBe(false);
      expect(await hasChain("np.eg.tcp.during-failure")).toBe(false);
      expect(await topo.tcpConnect("cluster", A, 1999)).toBe(true);
      const events = (await get("/api/v1/namespaces/firewall/events")) as unknown as { items: { involvedObject: { kind: string; name: string }; reason: string; type: string; message: string }[] };
      expect(events.items.some((e) => e.involvedObject.kind === "Firewall" && e.type === "Warning" && e.reason === "NftCheckFailed" && e.message.includes("injected refusal"))).toBe(true);
    } finally {
      refuseCheck = false;
    }
    await waitUntil("applied after recovery", () => hasChain("np.eg.tcp.during-failure"), 15_000);
    await waitUntil("ready again", async () => controller.readiness().ok, 10_000);
    await del(`${CWNP}/during-failure`);
  }, 40_000);

  test("API down for a while: rules stay, readiness says so, and reconciling resumes when it is back", async () => {
    await t.server.down();
    await waitUntil("not ready", async () => !controller.readiness().ok, 5000);
    expect(await topo.tcpConnect("cluster", B, 8443)).toBe(true);
    await new Promise((r) => setTimeout(r, 1000));
    expect(await topo.tcpConnect("cluster", B, 8443)).toBe(true);
    await t.server.up();
    await create(CWNP, policyObject("after-outage", `${A}/32`, 7443));
    await waitUntil("policy after the outage", () => hasChain("np.eg.tcp.after-outage"), 35_000);
    await waitUntil("ready again", async () => controller.readiness().ok, 10_000);
  }, 60_000);

  test("an expired watch (410 Gone) relists, and later changes still arrive", async () => {
    t.server.compact();
    t.server.dropWatches();
    await create(CWNP, policyObject("after-relist", `${A}/32`, 6443));
    await waitUntil("policy after relist", () => hasChain("np.eg.tcp.after-relist"), 35_000);
  }, 60_000);

  test("a deleted policy stops its traffic", async () => {
    expect(await topo.tcpConnect("cluster", B, 8443)).toBe(true);
    await del(`${CWNP}/flood-end`);
    await waitUntil("chain gone", async () => !(await hasChain("np.eg.tcp.flood-end")));
    expect(await topo.tcpConnect("cluster", B, 8443)).toBe(false);
  });

  test("Firewall deleted: our table goes, the base table stays; recreated: it comes back", async () => {
    const base = "table inet metal {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 22 accept\n\t}\n}\n";
    expect((await fwExec()(["nft", "-f", "-"], { stdin: base })).code).toBe(0);
    const metalBefore = (await fwExec()(["nft", "list", "table", "inet", "metal"])).stdout;
    await del(`${FIREWALLS}/firewall`);
    await waitUntil("table removed", async () => !(await fwExec()(["nft", "list", "tables"])).stdout.includes("inet firewall"));
    expect((await fwExec()(["nft", "list", "table", "inet", "metal"])).stdout).toBe(metalBefore);
    // The table goes first, then the controller releases its finalizer and the object is gone.
    await waitUntil("Firewall object gone", async () => (await api.request("GET", `${FIREWALLS}/firewall`)).status === 404);
    await create(FIREWALLS, firewallObject());
    await waitUntil("table back", () => hasChain("np.eg.tcp.allow-a"));
    expect(await topo.tcpConnect("cluster", A, 1999)).toBe(true);
  });

  test("stopping (SIGTERM) leaves the rules in place", async () => {
    stop.abort();
    await running;
    expect(await hasChain("np.eg.tcp.allow-a")).toBe(true);
    expect(await topo.tcpConnect("cluster", A, 1999)).toBe(true);
  });
});
