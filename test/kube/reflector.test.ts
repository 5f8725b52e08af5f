import { describe, expect, test } from "bun:test";
import type { ApiResponse, ClusterApi, KubeObject, WatchEvent } from "../../lib/kube/api.ts";
import { Reflector } from "../../lib/kube/reflector.ts";
import { waitUntil } from "../wait-until.ts";

/** A cluster API whose list answers what the test says and whose watch delivers what the test pushes. */
function fakeApi(list: () => unknown) {
  let push: ((e: WatchEvent) => void) | undefined;
  const api: ClusterApi = {
    request: async (): Promise<ApiResponse> => ({ status: 200, body: list() }),
    watch: (_path, _query, onEvent, signal) =>
      new Promise<void>((resolve) => {
        push = onEvent;
        signal.addEventListener("abort", () => resolve(), { once: true });
      }),
  };
  return { api, push: (e: WatchEvent) => push?.(e), watching: () => push !== undefined };
}

const svc = (name: string, type: string, labels: Record<string, string> = {}) => ({ metadata: { name, namespace: "shop", resourceVersion: "1", labels }, spec: { type } });
const relevant = (o: KubeObject) => ((o as { spec?: { type?: string } }).spec?.type === "LoadBalancer" ? o.spec : null);

describe("Reflector", () => {
  test("items of a list get the list's kind and apiVersion, as a real API server leaves them off built-in kinds", async () => {
    const { api } = fakeApi(() => ({ apiVersion: "v1", kind: "ServiceList", metadata: { resourceVersion: "5" }, items: [svc("web", "LoadBalancer")] }));
    const stop = new AbortController();
    const r = new Reflector({ api, path: "/api/v1/services", onChange: () => {}, signal: stop.signal });
    await r.listOnce();
    expect(r.get("shop", "web")).toMatchObject({ apiVersion: "v1", kind: "Service", metadata: { name: "web" } });
    stop.abort();
  });

  test("objects whose relevant part is null come, change and go without a change being reported", async () => {
    let items = [svc("plain", "ClusterIP")];
    const { api, push, watching } = fakeApi(() => ({ apiVersion: "v1", kind: "ServiceList", metadata: { resourceVersion: "5" }, items }));
    let changes = 0;
    const stop = new AbortController();
    const r = new Reflector({ api, path: "/api/v1/services", onChange: () => changes++, relevant, signal: stop.signal });
    void r.start();
    await waitUntil("watching", async () => watching());
    const first = changes; // the first list counts once
    push({ type: "ADDED", object: { apiVersion: "v1", kind: "Service", ...svc("other", "ClusterIP") } });
    push({ type: "MODIFIED", object: { apiVersion: "v1", kind: "Service", ...svc("other", "ClusterIP", { a: "b" }) } });
    push({ type: "DELETED", object: { apiVersion: "v1", kind: "Service", ...svc("other", "ClusterIP") } });
    expect(changes).toBe(first);
    // A LoadBalancer coming is a change; turning into a ClusterIP too.
    push({ type: "ADDED", object: { apiVersion: "v1", kind: "Service", ...svc("lb", "LoadBalancer") } });
    expect(changes).toBe(first + 1);
    push({ type: "MODIFIED", object: { apiVersion: "v1", kind: "Service", ...svc("lb", "ClusterIP") } });
    expect(changes).toBe(first + 2);
    items = [];
    stop.abort();
  });

  test("writes counts every stored or removed object, irrelevant ones and status-only changes included; an unchanged count means the same items", async () => {
    const { api, push, watching } = fakeApi(() => ({ apiVersion: "v1", kind: "ServiceList", metadata: { resourceVersion: "5" }, items: [svc("a", "ClusterIP")] }));
    const stop = new AbortController();
    const r = new Reflector({ api, path: "/api/v1/services", onChange: () => {}, relevant, signal: stop.signal });
    void r.start();
    await waitUntil("watching", async () => watching());
    const w0 = r.writes;
    expect(w0).toBe(1); // the list's one object
    const items0 = r.items();
    expect(r.writes).toBe(w0);
    push({ type: "MODIFIED", object: { apiVersion: "v1", kind: "Service", ...svc("a", "ClusterIP"), status: { loadBalancer: {} } } });
    expect(r.writes).toBe(w0 + 1);
    expect(r.items()).not.toEqual(items0);
    push({ type: "BOOKMARK", object: { apiVersion: "v1", kind: "Service", metadata: { resourceVersion: "9" } } as unknown as KubeObject });
    expect(r.writes).toBe(w0 + 1);
    push({ type: "DELETED", object: { apiVersion: "v1", kind: "Service", ...svc("a", "ClusterIP") } });
    expect(r.writes).toBe(w0 + 2);
    push({ type: "DELETED", object: { apiVersion: "v1", kind: "Service", ...svc("a", "ClusterIP") } }); // not there: nothing
    expect(r.writes).toBe(w0 + 2);
    stop.abort();
  });

  test("stableItems keep an object's identity while only its status changes; a relevant change, a new generation or a new uid gives the new one; items are always the newest", async () => {
    const { api, push, watching } = fakeApi(() => ({ apiVersion: "v1", kind: "ServiceList", metadata: { resourceVersion: "5" }, items: [] }));
    const stop = new AbortController();
    const r = new Reflector({ api, path: "/api/v1/services", onChange: () => {}, signal: stop.signal });
    void r.start();
    await waitUntil("watching", async () => watching());
    const v = (gen: number, uid: string, port: number, status: string) => ({ apiVersion: "v1", kind: "Service", metadata: { name: "web", namespace: "shop", uid, generation: gen, resourceVersion: String(gen * 100 + port) }, spec: { type: "LoadBalancer", ports: [{ port }] }, status: { note: status } });
    const first = v(1, "u1", 443, "a");
    push({ type: "ADDED", object: first });
    const statusOnly = v(1, "u1", 443, "b");
    push({ type: "MODIFIED", object: statusOnly });
    expect(r.items()[0]).toBe(statusOnly);
    expect(r.stableItems()[0]).toBe(first);
    expect(r.get("shop", "web")).toBe(statusOnly);
    expect(r.getStable("shop", "web")).toBe(first);
    expect(r.getStable("shop", "gone")).toBeUndefined();
    for (const next of [v(1, "u1", 444, "b"), v(2, "u1", 444, "b"), v(2, "u2", 444, "b")]) {
      push({ type: "MODIFIED", object: next });
      expect(r.stableItems()[0]).toBe(next);
    }
    stop.abort();
  });

  test("changedSince names each key written after a count once, the list's and deletions included; a count it no longer reaches back to, or never had, gives undefined", async () => {
    const { api, push, watching } = fakeApi(() => ({ apiVersion: "v1", kind: "ServiceList", metadata: { resourceVersion: "5" }, items: [{ apiVersion: "v1", kind: "Service", ...svc("a", "ClusterIP") }] }));
    const stop = new AbortController();
    const r = new Reflector({ api, path: "/api/v1/services", onChange: () => {}, signal: stop.signal });
    void r.start();
    await waitUntil("watching", async () => watching());
    const w0 = r.writes;
    expect(r.changedSince(0)).toEqual(new Set(["shop/a"]));
    expect(r.changedSince(w0)).toEqual(new Set());
    push({ type: "ADDED", object: { apiVersion: "v1", kind: "Service", ...svc("b", "ClusterIP") } });
    push({ type: "MODIFIED", object: { apiVersion: "v1", kind: "Service", ...svc("a", "LoadBalancer") } });
    push({ type: "MODIFIED", object: { apiVersion: "v1", kind: "Service", ...svc("b", "LoadBalancer") } });
    const w1 = r.writes;
    push({ type: "DELETED", object: { apiVersion: "v1", kind: "Service", ...svc("a", "LoadBalancer") } });
    expect(r.changedSince(w0)).toEqual(new Set(["shop/b", "shop/a"]));
    expect(r.changedSince(w1)).toEqual(new Set(["shop/a"]));
    expect(r.changedSince(r.writes + 1)).toBeUndefined();
    // Past the journal's reach (it keeps at least the last 4,096 writes), a walk of all items is due.
    for (let i = 0; i < 9000; i++) push({ type: "MODIFIED", object: { apiVersion: "v1", kind: "Service", ...svc("b", i % 2 === 0 ? "ClusterIP" : "LoadBalancer") } });
    expect(r.changedSince(w0)).toBeUndefined();
    expect(r.changedSince(r.writes - 4096)).toEqual(new Set(["shop/b"]));
    stop.abort();
  });

  test("relist() ends the watch and lists again, and the cache is not fresh until that list succeeded", async () => {
    let lists = 0;
    const { api, watching } = fakeApi(() => {
      lists++;
      return { apiVersion: "v1", kind: "ServiceList", metadata: { resourceVersion: String(lists) }, items: [] };
    });
    const stop = new AbortController();
    const r = new Reflector({ api, path: "/api/v1/services", onChange: () => {}, signal: stop.signal });
    void r.start();
    await waitUntil("watching", async () => watching() && r.fresh);
    expect(lists).toBe(1);
    r.relist();
    expect(r.fresh).toBe(false);
    await waitUntil("listed again", async () => lists === 2 && r.fresh);
    stop.abort();
  });
});
