// status.stats end to end: the controller in-process against the test API
// server, its nft in the firewall namespace of a traffic topology, and real
// suricata 7 capturing (af-packet) on the firewall's external interface.
// Real traffic moves the devices, rules and idsstats the status shows;
// suricata stopped, the rest is still written and the message says why.
import { hasOwner } from "./owners.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { parseCidr } from "../lib/api/address.ts";
import { Controller } from "../lib/controller.ts";
import { SuricataClient } from "../lib/ids/suricata.ts";
import { type ClusterApi, clusterApi, type KubeObject } from "../lib/kube/api.ts";
import { statsSnapshot } from "../lib/stats/model-snapshot.ts";
import { collectStats } from "../lib/stats/collect.ts";
import { kubectlMissing, kubectlOk, seed, startTestServer, type TestServer } from "./apiserver/harness.ts";
import { controllerDeps } from "./controller-deps.ts";
import { type Background, createTopology, needs, type Topology } from "./netns/topology.ts";
import { waitUntil } from "./wait-until.ts";

const env = needs(["ip", "nft", "tc", "suricata"]);
const noKubectl = kubectlMissing("test/controller-stats.test.ts");

const CWNP = "/apis/metal-stack.io/v1/namespaces/firewall/clusterwidenetworkpolicies";
const FIREWALLS = "/apis/metal-stack.io/v1/namespaces/firewall/firewalls";
const A = "203.0.113.5";
// The firewall OS's own table: a counted input rule with a comment (stats.rules covers every table).
const METAL = "table inet metal {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 2222 counter accept comment \"metal ssh\"\n\t}\n}\n";

const cidr = (text: string) => {
  const r = parseCidr(text);
  if (!r.ok) throw new Error(r.message);
  return r.value;
};

interface Stats {
  devices: { external: { in: number; out: number; total: number } };
  idsstats: Record<string, { packets: number; drop: number; invalidchecksums: number }>;
  rules: Record<"accept" | "drop" | "other", Record<string, { counter: { packets: number; bytes: number } }>>;
}

describe.skipIf(env.skip || noKubectl)("status.stats with real traffic and real suricata", () => {
  let t: TestServer;
  let topo: Topology;
  let api: ClusterApi;
  let stop: AbortController;
  let running: Promise<void>;
  let dir: string;
  let suricata: Background | undefined;

  const get = async (path: string) => (await api.request("GET", path)).body as KubeObject & { status?: { stats?: Stats; message?: string; lastRun?: string } };
  const status = async () => (await get(`${FIREWALLS}/firewall`)).status;
  const post = async (path: string, body: unknown) => {
    const r = await api.request("POST", path, { body });
    if (r.status !== 201) throw new Error(`POST ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  };

  beforeAll(async () => {
    t = await startTestServer();
    const kc = new KubeConfig();
    kc.loadFromString(t.server.kubeconfig());
    api = clusterApi(kc);
    await seed(t);
    topo = await createTopology({ clusterAddresses: ["10.0.1.80"] });
    expect((await topo.exec("firewall", ["nft", "-f", "-"], { stdin: METAL })).code).toBe(0);
    dir = mkdtempSync(join(tmpdir(), "fct-stats-"));
    const socketPath = join(dir, "command.socket");
    writeFileSync(
      join(dir, "suricata.yaml"),
      readFileSync(new URL("./fixtures/suricata/suricata.yaml.in", import.meta.url), "utf8").replaceAll("@DIR@", dir).replaceAll("@IFACE@", topo.ifaces.firewallExternal),
    );
    writeFileSync(join(dir, "empty.rules"), "");
    suricata = topo.start("firewall", ["suricata", "-c", join(dir, "suricata.yaml"), "--af-packet", "-S", join(dir, "empty.rules"), "-l", dir]);
    await waitUntil("suricata's command socket", async () => existsSync(socketPath), 30_000, 50);
    stop = new AbortController();
    const ids = new SuricataClient({ socketPath, signal: stop.signal });
    const exec = topo.executor("firewall");
    const controller = new Controller(
      { firewallName: "firewall", clusterPrefixes: [cidr("10.0.0.0/8")], privateVrf: 42, serviceIp: "10.0.1.1", rulesetFile: join(dir, "ruleset.v4") },
      controllerDeps(api, exec, { overrides: { statistics: (model) => collectStats({ snapshot: () => statsSnapshot("nft", exec, model), ids: () => ids.collect() }) } }),
      stop.signal,
    );
    running = controller.run();
    await post(FIREWALLS, { apiVersion: "metal-stack.io/v1", kind: "Firewall", metadata: { name: "firewall", namespace: "firewall" }, spec: { interval: "1s", internalprefixes: ["192.0.2.0/24"] } });
    await post(CWNP, { apiVersion: "metal-stack.io/v1", kind: "ClusterwideNetworkPolicy", metadata: { name: "allow-a", namespace: "firewall" }, spec: { egress: [{ to: [{ cidr: `${A}/32` }], ports: [{ protocol: "TCP", port: 443 }] }] } });
    await waitUntil("policy in the kernel", () => hasOwner(topo.executor("firewall"), "np.eg.tcp.allow-a"));
  }, 60_000);

  afterAll(async () => {
    stop?.abort();
    await running;
    await suricata?.stop();
    await topo?.destroy();
    await t?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("after traffic the status shows device bytes, every table's counted rules and suricata's packet counts", async () => {
    const iface = topo.ifaces.firewallExternal;
    await waitUntil("stats moved by traffic", async () => {
      expect(await topo.tcpConnect("cluster", A, 443)).toBe(true);
      const s = (await status())?.stats;
      return (s?.rules.accept["accept traffic for np allow-a tcp"]?.counter.packets ?? 0) > 0 && (s?.idsstats[iface]?.packets ?? 0) > 0 && (s?.devices.external.out ?? 0) > 0;
    }, 30_000, 200);
    const s = (await status())?.stats as Stats;
    expect(s.devices.external.total).toBe(s.devices.external.in + s.devices.external.out);
    expect(Object.keys(s.idsstats)).toEqual([iface]);
    expect(s.idsstats[iface]?.drop).toBe(0);
    // The base table's rule is there too (counted, with its comment), in its verdict's group.
    expect(s.rules.accept["metal ssh"]).toEqual({ counter: { packets: 0, bytes: 0 } });
    expect(Object.keys(s.rules.other)).toContain("count and log dropped packets");
    const described = await kubectlOk(t, ["describe", "firewall", "-n", "firewall", "firewall"]);
    for (const heading of ["Devices:", "Idsstats:", iface, "Rules:", "metal ssh", "accept traffic for np allow-a tcp"]) expect(described).toContain(heading);
  }, 60_000);

  test("suricata stopped: the rest of the status is still written, and the message says why", async () => {
    await suricata?.stop();
    await waitUntil("the reason in the status", async () => (await status())?.message?.includes("IDS statistics unavailable: suricata socket") === true, 20_000);
    const before = (await status())?.lastRun;
    await waitUntil("lastRun still moving", async () => (await status())?.lastRun !== before, 10_000);
    const s = (await status())?.stats as Stats;
    expect(s.idsstats).toEqual({});
    expect(s.rules.accept["accept traffic for np allow-a tcp"]?.counter.packets).toBeGreaterThan(0);
  }, 40_000);
});
