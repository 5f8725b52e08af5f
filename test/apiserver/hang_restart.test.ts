/**
 * The hang and restart-with-empty-state faults, in-process and over the
 * `/__test/` endpoints, seen by raw HTTP and by @kubernetes/client-node.
 */
import { CoreV1Api, Watch } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { FRESHNESS_WAIT_MS } from "./handler.ts";
import { seed, startTestServer, waitFor, type TestServer } from "./harness.ts";

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ bookmarkIntervalMs: 0 });
  await seed(t);
});
afterAll(async () => t.close());

const admin = (action: string) => fetch(`${t.server.url}/__test/${action}`, { method: "POST" }).then((r) => r.json());

describe("hang", () => {
  test("requests get no answer while hung; unhang closes their connections; later requests are answered", async () => {
    await admin("hang");
    const ac = new AbortController();
    let settled = "";
    const pending = fetch(`${t.server.url}/api/v1/namespaces`, { signal: ac.signal }).then(
      (r) => (settled = `answered ${r.status}`),
      (e: unknown) => (settled = `failed ${String(e)}`),
    );
    await new Promise((r) => setTimeout(r, 500));
    expect(settled).toBe("");
    expect(t.server.isHung).toBe(true);
    await admin("unhang");
    await pending;
    // The connection was closed; Bun's fetch may retry an idempotent GET on a new one, which is answered.
    expect(settled).toMatch(/^(failed|answered 200)/);
    expect((await fetch(`${t.server.url}/api/v1/namespaces`)).status).toBe(200);
  });

  test("open watches send nothing while hung and are cut at unhang; a client-node watch resumes and gets the missed change", async () => {
    const core = t.kubeConfig.makeApiClient(CoreV1Api);
    const events: string[] = [];
    let done: unknown = "open";
    await new Watch(t.kubeConfig).watch("/api/v1/namespaces/firewall/configmaps", { resourceVersion: t.server.rest.store.resourceVersion, allowWatchBookmarks: true }, (type, o: { metadata?: { name?: string } }) => events.push(`${type} ${o.metadata?.name ?? ""}`), (e) => (done = e ?? null));
    await waitFor(() => t.server.openWatches === 1);
    t.server.hang();
    const cm = t.server.rest.registry.find("", "v1", "configmaps");
    if (!cm) throw new Error("no configmaps type");
    t.server.rest.create(cm, "firewall", { metadata: { name: "during-hang" } });
    t.server.bookmark();
    await new Promise((r) => setTimeout(r, 300));
    expect(events).toEqual([]);
    t.server.unhang();
    await waitFor(() => done !== "open", 2000, "watch to end");
    expect(done).toBeInstanceOf(Error);
    // Resuming from the last resourceVersion the client saw replays the change it missed.
    const list = await core.listNamespacedConfigMap({ namespace: "firewall" });
    expect(list.items.map((c) => c.metadata?.name)).toContain("during-hang");
  });

  test("hang-for?ms=N unhangs by itself", async () => {
    expect(await admin("hang-for?ms=300")).toEqual({ hung: true, ms: 300 });
    await waitFor(() => !t.server.isHung, 2000, "unhang");
  });
});

describe("restartEmpty", () => {
  test("drops every object, CRD and namespace, resets the resourceVersion, same port; watches end", async () => {
    const port = t.server.port;
    const before = Number(t.server.rest.store.resourceVersion);
    let done: unknown = "open";
    await new Watch(t.kubeConfig).watch("/api/v1/namespaces", {}, () => {}, (e) => (done = e ?? null));
    await waitFor(() => t.server.openWatches === 1);
    await t.server.restartEmpty();
    await waitFor(() => done !== "open", 2000, "watch to end");
    expect(t.server.port).toBe(port);
    expect(t.server.rest.store.resourceVersion).toBe("4");
    expect(before).toBeGreaterThan(4);
    const core = t.kubeConfig.makeApiClient(CoreV1Api);
    const ns = await core.listNamespace();
    expect(ns.items.map((n) => n.metadata?.name)).toEqual(["default", "kube-node-lease", "kube-public", "kube-system"]);
    expect((await fetch(`${t.server.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions`).then((r) => r.json())).items).toEqual([]);
    expect((await fetch(`${t.server.url}/apis/metal-stack.io/v1/firewalls`)).status).toBe(404);
  });

  test("old resourceVersions: list \"\" works; list from it waits 3 s then 504 Too large; a watch from it is silent until the counter passes it", async () => {
    await seed(t);
    const old = 1000;
    expect((await fetch(`${t.server.url}/api/v1/namespaces?resourceVersion=`)).status).toBe(200);
    const started = Date.now();
    const r = await fetch(`${t.server.url}/api/v1/namespaces?resourceVersion=${old}`);
    expect(Date.now() - started).toBeGreaterThanOrEqual(FRESHNESS_WAIT_MS - 100);
    expect(r.status).toBe(504);
    expect(await r.json()).toEqual({
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: `Timeout: Too large resource version: ${old}, current: ${t.server.rest.store.resourceVersion}`,
      reason: "Timeout",
      details: { causes: [{ reason: "ResourceVersionTooLarge", message: "Too large resource version" }], retryAfterSeconds: 1 },
      code: 504,
    });
    // Watch from a version the new server has not reached: accepted, silent (no events, no bookmarks).
    const current = Number(t.server.rest.store.resourceVersion);
    const ac = new AbortController();
    const w = await fetch(`${t.server.url}/api/v1/namespaces/firewall/configmaps?watch=1&allowWatchBookmarks=true&resourceVersion=${current + 2}`, { signal: ac.signal });
    expect(w.status).toBe(200);
    const reader = w.body?.getReader();
    const lines: string[] = [];
    void (async () => {
      for (;;) {
        const c = await reader?.read().catch(() => undefined);
        if (!c || c.done) return;
        lines.push(...new TextDecoder().decode(c.value).split("\n").filter((l) => l));
      }
    })();
    const cm = t.server.rest.registry.find("", "v1", "configmaps");
    if (!cm) throw new Error("no configmaps type");
    t.server.rest.create(cm, "firewall", { metadata: { name: "a" } }); // rv current+1: not after current+2
    t.server.bookmark(); // below the watch's version: not sent
    t.server.rest.create(cm, "firewall", { metadata: { name: "b" } }); // rv current+2: not after it either
    await new Promise((r) => setTimeout(r, 300));
    expect(lines).toEqual([]);
    t.server.rest.create(cm, "firewall", { metadata: { name: "c" } }); // rv current+3: sent
    await waitFor(() => lines.length === 1, 2000, "event after the old version");
    expect((JSON.parse(lines[0] ?? "{}") as { type: string; object: { metadata: { name: string } } }).object.metadata.name).toBe("c");
    ac.abort();
  });

  test("/__test/restart-empty answers, then restarts", async () => {
    expect(await admin("restart-empty")).toEqual({ restarting: true });
    await waitFor(() => t.server.rest.store.resourceVersion === "4" && t.server.isUp, 3000, "restart");
  });
});
