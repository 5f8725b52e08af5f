/**
 * Fault injection of the test API server: outages, dropped watches, latency,
 * compaction, in-process and over its `/__test/` HTTP endpoints, as seen by
 * @kubernetes/client-node.
 */
import { CoreV1Api, Watch } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startTestServer, waitFor, type TestServer } from "./harness.ts";

let t: TestServer;
let core: CoreV1Api;

beforeAll(async () => {
  t = await startTestServer({ bookmarkIntervalMs: 0 });
  core = t.kubeConfig.makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: "firewall" } } });
});

afterAll(async () => {
  await t.close();
});

/** Opens a client-node watch on ConfigMaps; `done` resolves with what its done callback got. */
async function watchConfigMaps() {
  const events: string[] = [];
  let resolveDone: (e: unknown) => void = () => {};
  const done = new Promise<unknown>((r) => (resolveDone = r));
  const before = t.server.openWatches;
  const controller = await new Watch(t.kubeConfig).watch(
    "/api/v1/namespaces/firewall/configmaps",
    { resourceVersion: t.server.rest.store.resourceVersion },
    (type, o: { metadata?: { name?: string } }) => events.push(`${type} ${o.metadata?.name ?? ""}`),
    (err) => resolveDone(err ?? null),
  );
  await waitFor(() => t.server.openWatches > before, 5000, "watch to open");
  return { events, done, abort: () => controller.abort() };
}

/** The error of a rejected promise. */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error("expected a rejection");
}

/** Bun's fetch (and so client-node under Bun) reports a refused connection with code ECONNREFUSED. */
const connectionRefused = (e: unknown) => /ECONNREFUSED/.test(`${String(e)} ${String((e as { code?: unknown }).code)} ${String((e as { cause?: unknown }).cause)}`);

describe("outage", () => {
  test("down() breaks open watches and refuses connections; up() serves again on the same port with the state kept", async () => {
    await core.createNamespacedConfigMap({ namespace: "firewall", body: { metadata: { name: "kept" }, data: { a: "1" } } });
    const port = t.server.port;
    const w = await watchConfigMaps();
    await t.server.down();
    expect(t.server.isUp).toBe(false);
    // The done callback fires with the connection error (ECONNRESET under Bun); a client reconnects from there.
    expect(await w.done).toBeInstanceOf(Error);
    expect(connectionRefused(await rejection(fetch(`${t.server.url}/version`)))).toBe(true);
    expect(connectionRefused(await rejection(core.readNamespacedConfigMap({ name: "kept", namespace: "firewall" })))).toBe(true);
    await t.server.up();
    expect(t.server.port).toBe(port);
    const kept = await core.readNamespacedConfigMap({ name: "kept", namespace: "firewall" });
    expect(kept.data).toEqual({ a: "1" });
  });

  test("POST /__test/down-for?ms=N answers, goes down, and comes back by itself after N ms", async () => {
    const r = await fetch(`${t.server.url}/__test/down-for?ms=300`, { method: "POST" });
    expect(r.status).toBe(200);
    await waitFor(() => !t.server.isUp, 2000, "outage");
    expect(connectionRefused(await rejection(fetch(`${t.server.url}/version`)))).toBe(true);
    await waitFor(() => t.server.isUp, 3000, "recovery");
    expect((await fetch(`${t.server.url}/version`)).status).toBe(200);
  });
});

describe("watches", () => {
  test("dropWatches() ends every open stream cleanly: client-node's done callback fires without an error", async () => {
    const a = await watchConfigMaps();
    const b = await watchConfigMaps();
    t.server.dropWatches();
    expect(await a.done).toBeNull();
    expect(await b.done).toBeNull();
    expect(t.server.openWatches).toBe(0);
  });

  test("POST /__test/drop-watches does the same from another process", async () => {
    const w = await watchConfigMaps();
    expect((await fetch(`${t.server.url}/__test/drop-watches`, { method: "POST" })).status).toBe(200);
    expect(await w.done).toBeNull();
  });

  test("POST /__test/compact makes watches from older resourceVersions fail with 410", async () => {
    const old = t.server.rest.store.resourceVersion;
    await core.createNamespacedConfigMap({ namespace: "firewall", body: { metadata: { name: "after" } } });
    expect((await fetch(`${t.server.url}/__test/compact`, { method: "POST" })).status).toBe(200);
    const r = await fetch(`${t.server.url}/api/v1/namespaces/firewall/configmaps?watch=1&resourceVersion=${old}`);
    expect(r.status).toBe(200);
    const [line] = (await r.text()).trim().split("\n");
    expect(JSON.parse(line ?? "{}")).toMatchObject({ type: "ERROR", object: { kind: "Status", code: 410, reason: "Expired" } });
  });
});

describe("latency", () => {
  test("setLatency(ms) delays every answer by at least ms; 0 turns it off", async () => {
    t.server.setLatency(150);
    let start = performance.now();
    await core.readNamespace({ name: "firewall" });
    expect(performance.now() - start).toBeGreaterThanOrEqual(140);
    t.server.setLatency(0);
    start = performance.now();
    await core.readNamespace({ name: "firewall" });
    expect(performance.now() - start).toBeLessThan(100);
  });

  test("POST /__test/latency?ms=N sets it from another process", async () => {
    await fetch(`${t.server.url}/__test/latency?ms=120`, { method: "POST" });
    const start = performance.now();
    await fetch(`${t.server.url}/version`);
    expect(performance.now() - start).toBeGreaterThanOrEqual(110);
    await fetch(`${t.server.url}/__test/latency?ms=0`, { method: "POST" });
  });
});

describe("request counters", () => {
  test("requests are recorded with their Kubernetes verb and path, and can be counted and reset", async () => {
    t.server.resetRequests();
    await core.listNamespacedConfigMap({ namespace: "firewall" });
    await core.readNamespacedConfigMap({ name: "kept", namespace: "firewall" });
    await core.patchNamespacedConfigMap({ name: "kept", namespace: "firewall", body: [{ op: "add", path: "/data/b", value: "2" }] });
    expect(t.server.countRequests({ verb: "list", path: "/api/v1/namespaces/firewall/configmaps" })).toBe(1);
    expect(t.server.countRequests({ verb: "get" })).toBe(1);
    expect(t.server.countRequests({ verb: "patch", path: /configmaps\/kept$/ })).toBe(1);
    expect(t.server.requests.map((r) => r.verb)).toEqual(["list", "get", "patch"]);
    expect(t.server.requests[2]?.contentType).toBe("application/json-patch+json");
    const viaHttp = (await (await fetch(`${t.server.url}/__test/requests`)).json()) as { verb: string }[];
    expect(viaHttp.map((r) => r.verb)).toEqual(["list", "get", "patch"]);
  });
});
