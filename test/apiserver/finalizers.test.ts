/**
 * Finalizers and graceful deletion: DELETE marks, the last finalizer's removal
 * deletes, no new finalizers while deleting; and real `kubectl delete` waits
 * until a controller removes its finalizer.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { kubectl, kubectlMissing, seed, startTestServer, waitFor, type TestServer } from "./harness.ts";

let t: TestServer;
const FW = "/apis/metal-stack.io/v1/namespaces/firewall/firewalls";

async function call(method: string, path: string, body?: unknown, contentType = "application/json") {
  const r = await fetch(`${t.server.url}${path}`, { method, headers: { "Content-Type": contentType }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  return { status: r.status, body: (await r.json()) as { metadata: Record<string, unknown>; message?: string; details?: unknown } };
}

/** Collects the event types a raw watch of one Firewall sees. */
function watch(name: string) {
  const events: string[] = [];
  const ac = new AbortController();
  void (async () => {
    const r = await fetch(`${t.server.url}${FW}?watch=1&fieldSelector=metadata.name=${name}&resourceVersion=${t.server.rest.store.resourceVersion}`, { signal: ac.signal });
    const reader = r.body?.getReader();
    let buf = "";
    for (;;) {
      const chunk = await reader?.read().catch(() => undefined);
      if (!chunk || chunk.done) return;
      buf += new TextDecoder().decode(chunk.value);
      for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
        const ev = JSON.parse(buf.slice(0, i)) as { type: string; object: { metadata: { generation?: number } } };
        events.push(`${ev.type} ${ev.object.metadata.generation ?? ""}`);
        buf = buf.slice(i + 1);
      }
    }
  })().catch(() => {});
  return { events, stop: () => ac.abort() };
}

beforeAll(async () => {
  t = await startTestServer({ bookmarkIntervalMs: 0 });
  await seed(t);
});
afterAll(async () => t.close());

describe("finalizers", () => {
  test("DELETE marks (200, deletionTimestamp, generation+1, MODIFIED); again changes nothing; removing the finalizer deletes (DELETED)", async () => {
    await call("POST", FW, { metadata: { name: "f1", finalizers: ["example.com/cleanup"] }, spec: {} });
    const w = watch("f1");
    await waitFor(() => t.server.openWatches > 0);
    const del = await call("DELETE", `${FW}/f1`);
    expect(del.status).toBe(200);
    expect(typeof del.body.metadata.deletionTimestamp).toBe("string");
    expect(del.body.metadata.deletionGracePeriodSeconds).toBe(0);
    expect(del.body.metadata.generation).toBe(2);
    const again = await call("DELETE", `${FW}/f1`);
    expect(again.status).toBe(200);
    expect(again.body.metadata.resourceVersion).toBe(del.body.metadata.resourceVersion);
    expect((await call("GET", `${FW}/f1`)).status).toBe(200);
    // The client cannot move or clear deletionTimestamp.
    const labelled = await call("PATCH", `${FW}/f1`, { metadata: { labels: { a: "b" }, deletionTimestamp: null } }, "application/merge-patch+json");
    expect(labelled.body.metadata.deletionTimestamp).toBe(del.body.metadata.deletionTimestamp);
    const gone = await call("PATCH", `${FW}/f1`, { metadata: { finalizers: null } }, "application/merge-patch+json");
    expect(gone.status).toBe(200);
    expect((await call("GET", `${FW}/f1`)).status).toBe(404);
    await waitFor(() => w.events.includes("DELETED 2"), 2000, "DELETED event");
    expect(w.events).toEqual(["MODIFIED 2", "MODIFIED 2", "DELETED 2"]);
    w.stop();
  });

  test("no new finalizer while being deleted: 422 Forbidden, worded as a real apiserver", async () => {
    await call("POST", FW, { metadata: { name: "f2", finalizers: ["a"] }, spec: {} });
    await call("DELETE", `${FW}/f2`);
    const r = await call("PATCH", `${FW}/f2`, [{ op: "add", path: "/metadata/finalizers/-", value: "b" }], "application/json-patch+json");
    expect(r.status).toBe(422);
    expect(r.body.message).toBe('Firewall.metal-stack.io "f2" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{"b"}');
    await call("PATCH", `${FW}/f2`, { metadata: { finalizers: [] } }, "application/merge-patch+json");
    expect((await call("GET", `${FW}/f2`)).status).toBe(404);
  });

  test("built-in kinds too: a ConfigMap with a finalizer stays until it is removed", async () => {
    const CM = "/api/v1/namespaces/firewall/configmaps";
    await call("POST", CM, { metadata: { name: "c", finalizers: ["x"] } });
    expect((await call("DELETE", `${CM}/c`)).status).toBe(200);
    expect(typeof (await call("GET", `${CM}/c`)).body.metadata.deletionTimestamp).toBe("string");
    await call("PUT", `${CM}/c`, { ...(await call("GET", `${CM}/c`)).body, metadata: { ...(await call("GET", `${CM}/c`)).body.metadata, finalizers: [] } });
    expect((await call("GET", `${CM}/c`)).status).toBe(404);
  });

  test.skipIf(kubectlMissing("finalizers.test.ts"))("kubectl delete waits until the controller removes its finalizer", async () => {
    await call("POST", FW, { metadata: { name: "firewall", finalizers: ["firewall.metal-stack.io/controller"] }, spec: {} });
    // The "controller": once the object is being deleted, it cleans up for 1.5 s and removes its finalizer.
    const controller = (async () => {
      await waitFor(() => t.server.rest.store.get("metal-stack.io/firewalls", "firewall", "firewall")?.metadata.deletionTimestamp !== undefined, 10_000);
      await new Promise((r) => setTimeout(r, 1500));
      await call("PATCH", `${FW}/firewall`, [{ op: "remove", path: "/metadata/finalizers" }], "application/json-patch+json");
    })();
    const started = Date.now();
    const r = await kubectl(t, ["delete", "firewall", "-n", "firewall", "firewall", "--timeout=20s"]);
    const took = Date.now() - started;
    await controller;
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe('firewall.metal-stack.io "firewall" deleted');
    expect(r.code).toBe(0);
    expect(took).toBeGreaterThan(1400);
    expect((await call("GET", `${FW}/firewall`)).status).toBe(404);
  }, 30_000);
});
