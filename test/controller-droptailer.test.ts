// The drop log follows the cluster: the controller (in-process, against the
// test API server) feeds it the droptailer Secret and pod it watches. No
// Secret: not shipping, said in the Firewall status; Secret and a Running pod:
// drops arrive at a server requiring client certificates; a rotated Secret
// takes effect without a restart.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { parseCidr } from "../lib/api/address.ts";
import { Controller } from "../lib/controller.ts";
import { DropLog } from "../lib/droptailer/drop-log.ts";
import { runCommand } from "../lib/exec.ts";
import { type ClusterApi, clusterApi, type KubeObject } from "../lib/kube/api.ts";
import { seed, startTestServer, type TestServer } from "./apiserver/harness.ts";
import { controllerDeps } from "./controller-deps.ts";
import { DroptailerTestServer, makePki, type Pki } from "./droptailer/server.ts";
import { needs, netnsExecutor } from "./netns/topology.ts";
import { waitUntil } from "./wait-until.ts";

const env = needs(["ip", "nft"]);
const FIREWALLS = "/apis/metal-stack.io/v1/namespaces/firewall/firewalls";
const SECRETS = "/api/v1/namespaces/firewall/secrets";
const PODS = "/api/v1/namespaces/firewall/pods";
const drop = (seq: number, dpt: number) => `4,${seq},${6_000_000_000 + seq * 1000},-;nftables-firewall-dropped: IN=vrf104009 OUT=vlan42 SRC=198.51.100.1 DST=10.0.1.80 PROTO=TCP SPT=40000 DPT=${dpt} SYN\n`;

describe.skipIf(env.skip)("the drop log follows the droptailer Secret and pod", () => {
  let t: TestServer;
  let api: ClusterApi;
  let dir: string;
  let pki: Pki;
  let server: DroptailerTestServer;
  let stop: AbortController;
  let running: Promise<void>;
  let dropLog: DropLog;
  const ns = `fct-dlc-${process.pid}`;

  const write = async (method: "POST" | "PUT" | "PATCH", path: string, body: unknown) => {
    const r = await api.request(method, path, method === "PATCH" ? { body, contentType: "application/merge-patch+json" } : { body });
    if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body as KubeObject;
  };
  const secret = (cert: Buffer, key: Buffer) => ({
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "droptailer-client", namespace: "firewall" },
    data: { "ca.crt": pki.ca.toString("base64"), "tls.crt": cert.toString("base64"), "tls.key": key.toString("base64") },
  });
  const message = async () => String(((await api.request("GET", `${FIREWALLS}/firewall`)).body as { status?: { message?: string } }).status?.message ?? "");

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "fct-dlc-"));
    pki = await makePki(join(dir, "pki"));
    server = await DroptailerTestServer.start(pki);
    writeFileSync(join(dir, "boot_id"), "3f1c5e2a-9b8d-4c7e-a1f0-0123456789ab\n");
    writeFileSync(join(dir, "uptime"), "7000.00 100.00\n");
    writeFileSync(join(dir, "kmsg"), "");
    t = await startTestServer();
    const kc = new KubeConfig();
    kc.loadFromString(t.server.kubeconfig());
    api = clusterApi(kc);
    await seed(t);
    expect((await runCommand(["ip", "netns", "add", ns])).code).toBe(0);
    stop = new AbortController();
    dropLog = new DropLog({ stateDir: join(dir, "state"), signal: stop.signal, port: server.port, kmsg: { path: join(dir, "kmsg"), bootIdPath: join(dir, "boot_id"), uptimePath: join(dir, "uptime"), pollMs: 20 } });
    const reading = dropLog.run();
    const cluster = parseCidr("10.0.0.0/8");
    if (!cluster.ok) throw new Error(cluster.message);
    const controller = new Controller(
      { firewallName: "firewall", clusterPrefixes: [cluster.value], privateVrf: 42, serviceIp: "10.0.1.1", rulesetFile: join(dir, "ruleset.v4") },
      controllerDeps(api, netnsExecutor(ns), { overrides: { dropLog, shaper: { describe: () => [], reconcile: async () => ({ changed: false, problems: [] }) } } }),
      stop.signal,
    );
    running = Promise.all([controller.run(), reading]).then(() => {});
    await dropLog.ready;
    await write("POST", FIREWALLS, { apiVersion: "metal-stack.io/v1", kind: "Firewall", metadata: { name: "firewall", namespace: "firewall" }, spec: { interval: "1s" } });
  }, 60_000);

  afterAll(async () => {
    stop?.abort();
    await running;
    await server?.stop();
    await runCommand(["ip", "netns", "del", ns]);
    await t?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("without the Secret it does not ship, and the Firewall status says why", async () => {
    await waitUntil("the reason in the status", async () => (await message()).includes("drop log not shipping: Secret firewall/droptailer-client not found"), 10_000);
    expect(dropLog.status()).toMatchObject({ shipping: false, reason: "Secret firewall/droptailer-client not found" });
  });

  test("with the Secret and a Running droptailer pod, drops arrive; the status no longer complains", async () => {
    await write("POST", SECRETS, secret(pki.clientCert, pki.clientKey));
    await write("POST", PODS, { apiVersion: "v1", kind: "Pod", metadata: { name: "droptailer-6c7d", namespace: "firewall" }, spec: { containers: [{ name: "droptailer", image: "droptailer" }] } });
    await write("PATCH", `${PODS}/droptailer-6c7d/status`, { status: { phase: "Running", podIP: "127.0.0.1" } });
    await waitUntil("a target", async () => dropLog.status().reason !== "Secret firewall/droptailer-client not found" && !String(dropLog.status().reason ?? "").startsWith("no Running"), 10_000);
    appendFileSync(join(dir, "kmsg"), drop(1, 1001));
    await waitUntil("the drop at the server", async () => server.received.length === 1, 15_000);
    expect(server.received[0]?.fields).toMatchObject({ ACTION: "drop", DPT: "1001", SYN: "" });
    await waitUntil("the status without the complaint", async () => !(await message()).includes("drop log not shipping"), 10_000);
  }, 40_000);

  test("a Secret rotated to a certificate the server does not trust stops shipping, with the reason; rotated back, the waiting drops arrive", async () => {
    const builds = dropLog.status().channelBuilds;
    await write("PUT", `${SECRETS}/droptailer-client`, secret(pki.wrongClientCert, pki.wrongClientKey));
    await waitUntil("the rotated Secret in effect", async () => dropLog.status().channelBuilds > builds, 10_000);
    appendFileSync(join(dir, "kmsg"), drop(2, 1002));
    await waitUntil("not shipping", async () => dropLog.status().shipping === false, 15_000);
    expect(server.received).toHaveLength(1);
    await write("PUT", `${SECRETS}/droptailer-client`, secret(pki.clientCert, pki.clientKey));
    await waitUntil("the waiting drop delivered", async () => server.received.length === 2, 20_000);
    expect(server.received.map((d) => d.fields.DPT)).toEqual(["1001", "1002"]);
  }, 60_000);

  test("the droptailer pod moves to another address: shipping follows without a restart", async () => {
    const moved = await DroptailerTestServer.start(pki, server.port, "127.0.0.2");
    try {
      const builds = dropLog.status().channelBuilds;
      await write("PATCH", `${PODS}/droptailer-6c7d/status`, { status: { podIP: "127.0.0.2" } });
      await waitUntil("the move in effect", async () => dropLog.status().channelBuilds > builds, 10_000);
      appendFileSync(join(dir, "kmsg"), drop(3, 1003));
      await waitUntil("the drop at the moved server", async () => moved.received.length === 1, 15_000);
      expect(moved.received[0]?.fields.DPT).toBe("1003");
      expect(server.received).toHaveLength(2);
    } finally {
      await moved.stop();
    }
  }, 40_000);
});
