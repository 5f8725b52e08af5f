/**
 * @kubernetes/client-node 2.0.1 against the test API server: list/watch with
 * resourceVersions, 410 for forgotten history, the status subresource,
 * generation bookkeeping, optimistic concurrency, selectors, core kinds.
 */
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  DiscoveryV1Api,
  EventsV1Api,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  Watch,
  type KubernetesObject,
  type V1Service,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { seed, startTestServer, waitFor, type TestServer } from "./harness.ts";

const G = { group: "metal-stack.io", version: "v1", namespace: "firewall" } as const;
const CWNP = { ...G, plural: "clusterwidenetworkpolicies" } as const;
const FW = { ...G, plural: "firewalls" } as const;
const CWNP_PATH = "/apis/metal-stack.io/v1/namespaces/firewall/clusterwidenetworkpolicies";
const merge = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

type Obj = KubernetesObject & { spec?: Record<string, unknown>; status?: Record<string, unknown> };

function policy(name: string, port = 443, labels: Record<string, string> = {}): Obj {
  return {
    apiVersion: "metal-stack.io/v1",
    kind: "ClusterwideNetworkPolicy",
    metadata: { name, namespace: "firewall", labels },
    spec: { egress: [{ to: [{ cidr: "203.0.113.0/24" }], ports: [{ protocol: "TCP", port }] }] },
  };
}

/** The status code of a failed client-node call. */
async function failure(p: Promise<unknown>): Promise<{ code: number; body: Record<string, unknown> }> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ApiException) {
      const body = typeof e.body === "string" ? (JSON.parse(e.body) as Record<string, unknown>) : (e.body as Record<string, unknown>);
      return { code: e.code, body };
    }
    throw e;
  }
  throw new Error("expected the call to fail");
}

interface Recorded {
  readonly type: string;
  readonly name: string;
  readonly rv: string;
  readonly object: Obj & { code?: number; reason?: string };
}

/** Starts a client-node watch that records events; `done` resolves with the done-callback's error. */
async function record(t: TestServer, path: string, params: Record<string, string | number | boolean | undefined>) {
  const events: Recorded[] = [];
  let resolveDone: (e: unknown) => void = () => {};
  const done = new Promise<unknown>((r) => (resolveDone = r));
  const controller = await new Watch(t.kubeConfig).watch(
    path,
    params,
    (type, object: Obj & { code?: number }) => events.push({ type, name: object.metadata?.name ?? "", rv: object.metadata?.resourceVersion ?? "", object }),
    (err) => resolveDone(err ?? null),
  );
  return { events, done, abort: () => controller.abort() };
}

let t: TestServer;
let custom: CustomObjectsApi;
let core: CoreV1Api;

beforeAll(async () => {
  t = await startTestServer({ bookmarkIntervalMs: 0 });
  await seed(t);
  custom = t.kubeConfig.makeApiClient(CustomObjectsApi);
  core = t.kubeConfig.makeApiClient(CoreV1Api);
});

afterAll(async () => {
  await t.close();
});

describe("list and watch", () => {
  test("a watch from a list's resourceVersion sees ADDED, MODIFIED, DELETED in order, each with a growing resourceVersion", async () => {
    await custom.createNamespacedCustomObject({ ...CWNP, body: policy("before-list") });
    const list = (await custom.listNamespacedCustomObject(CWNP)) as { metadata: { resourceVersion: string }; items: Obj[] };
    expect(list.items.map((i) => i.metadata?.name)).toContain("before-list");
    const w = await record(t, CWNP_PATH, { resourceVersion: list.metadata.resourceVersion, allowWatchBookmarks: true });
    await custom.createNamespacedCustomObject({ ...CWNP, body: policy("watched") });
    await custom.patchNamespacedCustomObject({ ...CWNP, name: "watched", body: { spec: { description: "changed" } } }, merge);
    await custom.deleteNamespacedCustomObject({ ...CWNP, name: "watched" });
    await waitFor(() => w.events.length >= 3, 5000, "three events");
    w.abort();
    expect(w.events.map((e) => `${e.type} ${e.name}`)).toEqual(["ADDED watched", "MODIFIED watched", "DELETED watched"]);
    const rvs = w.events.map((e) => Number(e.rv));
    expect(rvs[0]).toBeGreaterThan(Number(list.metadata.resourceVersion));
    expect([...rvs].sort((a, b) => a - b)).toEqual(rvs);
    expect(new Set(rvs).size).toBe(3);
  });

  test("a watch from an older resourceVersion replays the history after it, then goes on live", async () => {
    const start = ((await custom.listNamespacedCustomObject(CWNP)) as { metadata: { resourceVersion: string } }).metadata.resourceVersion;
    await custom.createNamespacedCustomObject({ ...CWNP, body: policy("replayed") });
    const w = await record(t, CWNP_PATH, { resourceVersion: start });
    await custom.deleteNamespacedCustomObject({ ...CWNP, name: "replayed" });
    await waitFor(() => w.events.length >= 2, 5000, "replay and live event");
    w.abort();
    expect(w.events.map((e) => `${e.type} ${e.name}`)).toEqual(["ADDED replayed", "DELETED replayed"]);
  });

  test("a watch without resourceVersion first sends ADDED for every existing object", async () => {
    await custom.createNamespacedCustomObject({ ...CWNP, body: policy("existing-1") });
    await custom.createNamespacedCustomObject({ ...CWNP, body: policy("existing-2") });
    const w = await record(t, CWNP_PATH, {});
    await waitFor(() => w.events.filter((e) => e.name.startsWith("existing-")).length >= 2, 5000, "initial ADDED events");
    w.abort();
    expect(w.events.filter((e) => e.name.startsWith("existing-")).map((e) => e.type)).toEqual(["ADDED", "ADDED"]);
  });

  test("a watch from a compacted resourceVersion gets one ERROR event with a 410 Expired Status, then the stream ends", async () => {
    const old = ((await custom.listNamespacedCustomObject(CWNP)) as { metadata: { resourceVersion: string } }).metadata.resourceVersion;
    await custom.createNamespacedCustomObject({ ...CWNP, body: policy("after-compaction") });
    t.server.compact();
    const w = await record(t, CWNP_PATH, { resourceVersion: old });
    // client-node 2.0.1: the HTTP answer is 200, so Watch.watch() resolves; the 410 arrives as an
    // ERROR event whose object is the Status (callback(type "ERROR", status)), and the done callback
    // then fires with null when the server ends the stream. ListWatch/informers react to the
    // ERROR event's code 410 by clearing their resourceVersion and relisting.
    expect(await w.done).toBeNull();
    expect(w.events).toHaveLength(1);
    const [e] = w.events;
    expect(e?.type).toBe("ERROR");
    expect(e?.object).toMatchObject({ kind: "Status", code: 410, reason: "Expired" });
    expect(String((e?.object as { message?: string }).message)).toMatch(/^too old resource version: \d+ \(\d+\)$/);
  });

  test("an informer relists after its watch is dropped and the history compacted, and keeps up with changes", async () => {
    const informer = makeInformer(t.kubeConfig, CWNP_PATH, () => custom.listNamespacedCustomObject(CWNP) as never);
    const seen = new Set<string>();
    informer.on("add", (o) => seen.add(o.metadata?.name ?? ""));
    await informer.start();
    await custom.createNamespacedCustomObject({ ...CWNP, body: policy("informed-1") });
    await waitFor(() => seen.has("informed-1"), 5000, "informer add");
    t.server.compact();
    await custom.createNamespacedCustomObject({ ...CWNP, body: policy("informed-2") });
    await waitFor(() => seen.has("informed-2"), 5000, "informer add after compaction");
    t.server.dropWatches();
    t.server.compact();
    await custom.createNamespacedCustomObject({ ...CWNP, body: policy("informed-3") });
    await waitFor(() => seen.has("informed-3"), 8000, "informer add after a dropped watch");
    await informer.stop();
  });

  test("label and field selectors filter lists; a watched object leaving the selection is DELETED for the watcher", async () => {
    await custom.createNamespacedCustomObject({ ...CWNP, body: policy("sel-a", 443, { tier: "a" }) });
    await custom.createNamespacedCustomObject({ ...CWNP, body: policy("sel-b", 443, { tier: "b" }) });
    const byLabel = (await custom.listNamespacedCustomObject({ ...CWNP, labelSelector: "tier in (a),tier!=b" })) as { items: Obj[] };
    expect(byLabel.items.map((i) => i.metadata?.name)).toEqual(["sel-a"]);
    const byName = (await custom.listNamespacedCustomObject({ ...CWNP, fieldSelector: "metadata.name=sel-b" })) as { items: Obj[] };
    expect(byName.items.map((i) => i.metadata?.name)).toEqual(["sel-b"]);
    const w = await record(t, CWNP_PATH, { labelSelector: "tier=a" });
    await waitFor(() => w.events.length >= 1, 5000, "initial event");
    await custom.patchNamespacedCustomObject({ ...CWNP, name: "sel-a", body: { metadata: { labels: { tier: "b" } } } }, merge);
    await custom.patchNamespacedCustomObject({ ...CWNP, name: "sel-b", body: { metadata: { labels: { tier: "a" } } } }, merge);
    await waitFor(() => w.events.length >= 3, 5000, "selection changes");
    w.abort();
    expect(w.events.map((e) => `${e.type} ${e.name}`)).toEqual(["ADDED sel-a", "DELETED sel-a", "ADDED sel-b"]);
  });

  test("sendInitialEvents streams the current objects, then a BOOKMARK marking the end of the initial events", async () => {
    const w = await record(t, CWNP_PATH, { sendInitialEvents: true, allowWatchBookmarks: true, resourceVersionMatch: "NotOlderThan" });
    await waitFor(() => w.events.some((e) => e.type === "BOOKMARK"), 5000, "initial-events-end bookmark");
    w.abort();
    const bookmark = w.events.findIndex((e) => e.type === "BOOKMARK");
    expect(bookmark).toBe(w.events.length - 1);
    expect(w.events.slice(0, bookmark).every((e) => e.type === "ADDED")).toBe(true);
    expect(w.events[bookmark]?.object.metadata?.annotations).toEqual({ "k8s.io/initial-events-end": "true" });
  });

  test("a watch with timeoutSeconds ends cleanly after that time", async () => {
    const start = performance.now();
    const w = await record(t, CWNP_PATH, { timeoutSeconds: 1, resourceVersion: t.server.rest.store.resourceVersion });
    expect(await w.done).toBeNull();
    expect(performance.now() - start).toBeGreaterThanOrEqual(950);
  });

  test("bookmarks carry the current resourceVersion to watches that allow them", async () => {
    const w = await record(t, CWNP_PATH, { allowWatchBookmarks: true, resourceVersion: t.server.rest.store.resourceVersion });
    const without = await record(t, CWNP_PATH, { resourceVersion: t.server.rest.store.resourceVersion });
    await waitFor(() => t.server.openWatches >= 2, 5000, "open watches");
    t.server.bookmark();
    await waitFor(() => w.events.length >= 1, 5000, "bookmark");
    w.abort();
    without.abort();
    expect(w.events[0]?.type).toBe("BOOKMARK");
    expect(w.events[0]?.rv).toBe(t.server.rest.store.resourceVersion);
    expect(without.events).toEqual([]);
  });
});

describe("status subresource, generation and concurrency", () => {
  test("a status patch changes neither spec nor generation; the resourceVersion grows", async () => {
    const created = (await custom.createNamespacedCustomObject({ ...CWNP, body: { ...policy("status-target"), status: { state: "Ready" } } })) as Obj;
    // Status in a create is dropped, as for every custom resource with a status subresource.
    expect(created.status).toBeUndefined();
    expect(created.metadata?.generation).toBe(1);
    const patched = (await custom.patchNamespacedCustomObjectStatus(
      { ...CWNP, name: "status-target", body: { status: { state: "Invalid", message: "bad", observedGeneration: 1 }, spec: { description: "ignored" } } },
      merge,
    )) as Obj;
    expect(patched.status).toEqual({ state: "Invalid", message: "bad", observedGeneration: 1 });
    expect(patched.spec).toEqual(created.spec);
    expect(patched.metadata?.generation).toBe(1);
    expect(Number(patched.metadata?.resourceVersion)).toBeGreaterThan(Number(created.metadata?.resourceVersion));
  });

  test("a status replace (PUT /status) writes only the status", async () => {
    const current = (await custom.getNamespacedCustomObject({ ...CWNP, name: "status-target" })) as Obj;
    const replaced = (await custom.replaceNamespacedCustomObjectStatus({
      ...CWNP,
      name: "status-target",
      body: { ...current, spec: { description: "ignored" }, metadata: { ...current.metadata, labels: { ignored: "yes" } }, status: { state: "Ready" } },
    })) as Obj;
    expect(replaced.status).toEqual({ state: "Ready" });
    expect(replaced.spec).toEqual(current.spec);
    expect(replaced.metadata?.labels).toBeUndefined();
  });

  test("a main-resource update keeps the status and bumps the generation only when the spec changes", async () => {
    const current = (await custom.getNamespacedCustomObject({ ...CWNP, name: "status-target" })) as Obj;
    const labelled = (await custom.replaceNamespacedCustomObject({
      ...CWNP,
      name: "status-target",
      body: { ...current, metadata: { ...current.metadata, labels: { a: "b" } }, status: { state: "Ignored" } },
    })) as Obj;
    expect(labelled.status).toEqual({ state: "Ready" });
    expect(labelled.metadata?.generation).toBe(1);
    expect(Number(labelled.metadata?.resourceVersion)).toBeGreaterThan(Number(current.metadata?.resourceVersion));
    const respecced = (await custom.replaceNamespacedCustomObject({
      ...CWNP,
      name: "status-target",
      body: { ...labelled, spec: { ...labelled.spec, description: "new" } },
    })) as Obj;
    expect(respecced.metadata?.generation).toBe(2);
    expect(respecced.status).toEqual({ state: "Ready" });
  });

  test("a write that changes nothing keeps the resourceVersion and sends no watch event", async () => {
    const current = (await custom.getNamespacedCustomObject({ ...CWNP, name: "status-target" })) as Obj;
    const w = await record(t, CWNP_PATH, { resourceVersion: current.metadata?.resourceVersion });
    const same = (await custom.patchNamespacedCustomObjectStatus({ ...CWNP, name: "status-target", body: { status: current.status } }, merge)) as Obj;
    expect(same.metadata?.resourceVersion).toBe(current.metadata?.resourceVersion);
    await custom.patchNamespacedCustomObject({ ...CWNP, name: "status-target", body: { metadata: { labels: { marker: "1" } } } }, merge);
    await waitFor(() => w.events.length >= 1, 5000, "event");
    w.abort();
    expect(w.events.map((e) => e.object.metadata?.labels?.marker)).toEqual(["1"]);
  });

  test("an update with a stale resourceVersion is a 409 Conflict; without one a custom resource update is 422", async () => {
    const current = (await custom.getNamespacedCustomObject({ ...CWNP, name: "status-target" })) as Obj;
    await custom.patchNamespacedCustomObject({ ...CWNP, name: "status-target", body: { spec: { description: "someone else" } } }, merge);
    const stale = await failure(custom.replaceNamespacedCustomObject({ ...CWNP, name: "status-target", body: current }));
    expect(stale.code).toBe(409);
    expect(stale.body).toMatchObject({ kind: "Status", status: "Failure", reason: "Conflict", code: 409 });
    expect(String(stale.body.message)).toContain('clusterwidenetworkpolicies.metal-stack.io "status-target": the object has been modified');
    const { resourceVersion: _drop, ...meta } = current.metadata ?? {};
    const unversioned = await failure(custom.replaceNamespacedCustomObject({ ...CWNP, name: "status-target", body: { ...current, metadata: meta } }));
    expect(unversioned.code).toBe(422);
    expect(String(unversioned.body.message)).toContain("metadata.resourceVersion");
  });

  test("errors are Status objects: NotFound, AlreadyExists, missing namespace, invalid name, strategic patch on a custom resource", async () => {
    const missing = await failure(custom.getNamespacedCustomObject({ ...CWNP, name: "nope" }));
    expect(missing).toMatchObject({ code: 404, body: { reason: "NotFound", message: 'clusterwidenetworkpolicies.metal-stack.io "nope" not found' } });
    const twice = await failure(custom.createNamespacedCustomObject({ ...CWNP, body: policy("status-target") }));
    expect(twice).toMatchObject({ code: 409, body: { reason: "AlreadyExists" } });
    const noNs = await failure(custom.createNamespacedCustomObject({ ...CWNP, namespace: "elsewhere", body: { ...policy("x"), metadata: { name: "x" } } }));
    expect(noNs).toMatchObject({ code: 404, body: { reason: "NotFound", message: 'namespaces "elsewhere" not found', details: { name: "elsewhere", kind: "namespaces" } } });
    const badName = await failure(custom.createNamespacedCustomObject({ ...CWNP, body: policy("Bad_Name") }));
    expect(badName).toMatchObject({ code: 422, body: { reason: "Invalid" } });
    expect(String(badName.body.message)).toContain('metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain');
    const smp = await failure(
      custom.patchNamespacedCustomObject({ ...CWNP, name: "status-target", body: { spec: {} } }, setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch)),
    );
    expect(smp).toMatchObject({ code: 415, body: { reason: "UnsupportedMediaType" } });
  });

  test("unknown fields are pruned and schema defaults applied, as for a structural CRD schema", async () => {
    const body = { ...policy("pruned"), spec: { egress: [{ ports: [{ port: 53 }] }], bogus: true }, extra: 1 };
    const created = (await custom.createNamespacedCustomObject({ ...CWNP, body })) as Obj & { extra?: unknown };
    expect(created.spec).toEqual({ egress: [{ ports: [{ port: 53, protocol: "TCP" }] }] });
    expect(created.extra).toBeUndefined();
    const fw = (await custom.createNamespacedCustomObject({ ...FW, body: { apiVersion: "metal-stack.io/v1", kind: "Firewall", metadata: { name: "firewall" }, spec: {} } })) as Obj;
    expect(fw.spec).toEqual({ interval: "10s" });
  });
});

describe("core kinds", () => {
  const svc = (ports: { name: string; port: number }[]): V1Service => ({
    metadata: { name: "nftables-exporter", namespace: "firewall", labels: { app: "fw" } },
    spec: { clusterIP: "None", ports },
  });

  test("Services: create defaults protocol and type, strategic merge patch merges ports by port, status writes keep the spec", async () => {
    const created = await core.createNamespacedService({ namespace: "firewall", body: svc([{ name: "metrics", port: 9630 }]) });
    expect(created.spec?.type).toBe("ClusterIP");
    expect(created.spec?.ports).toEqual([{ name: "metrics", port: 9630, protocol: "TCP", targetPort: 9630 }]);
    const patched = await core.patchNamespacedService(
      { name: "nftables-exporter", namespace: "firewall", body: { spec: { ports: [{ port: 9100, name: "node" }] } } },
      setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch),
    );
    expect(patched.spec?.ports?.map((p) => p.port)).toEqual([9630, 9100]);
    const status = await core.patchNamespacedServiceStatus(
      { name: "nftables-exporter", namespace: "firewall", body: { status: { loadBalancer: { ingress: [{ ip: "203.0.113.1" }] } }, spec: { ports: [] } } },
      merge,
    );
    expect(status.status?.loadBalancer?.ingress?.[0]?.ip).toBe("203.0.113.1");
    expect(status.spec?.ports).toHaveLength(2);
    const replaced = await core.replaceNamespacedService({ name: "nftables-exporter", namespace: "firewall", body: svc([{ name: "metrics", port: 9630 }]) });
    expect(replaced.spec?.ports?.map((p) => p.port)).toEqual([9630]);
    expect(replaced.spec?.clusterIP).toBe("None");
    expect(replaced.status?.loadBalancer?.ingress?.[0]?.ip).toBe("203.0.113.1");
  });

  test("Endpoints and EndpointSlices are stored and listed by label", async () => {
    await core.createNamespacedEndpoints({
      namespace: "firewall",
      body: { metadata: { name: "nftables-exporter" }, subsets: [{ addresses: [{ ip: "10.0.0.1" }], ports: [{ name: "metrics", port: 9630 }] }] },
    });
    const ep = await core.readNamespacedEndpoints({ name: "nftables-exporter", namespace: "firewall" });
    expect(ep.subsets?.[0]?.ports?.[0]).toEqual({ name: "metrics", port: 9630, protocol: "TCP" });
    const discovery = t.kubeConfig.makeApiClient(DiscoveryV1Api);
    await discovery.createNamespacedEndpointSlice({
      namespace: "firewall",
      body: {
        metadata: { name: "nftables-exporter-abc", labels: { "kubernetes.io/service-name": "nftables-exporter" } },
        addressType: "IPv4",
        endpoints: [{ addresses: ["10.0.0.1"] }],
        ports: [{ name: "metrics", port: 9630 }],
      },
    });
    const slices = await discovery.listNamespacedEndpointSlice({ namespace: "firewall", labelSelector: "kubernetes.io/service-name=nftables-exporter" });
    expect(slices.items.map((s) => s.metadata?.name)).toEqual(["nftables-exporter-abc"]);
  });

  test("Secrets: stringData is stored as base64 data", async () => {
    await core.createNamespacedSecret({ namespace: "firewall", body: { metadata: { name: "droptailer-client" }, stringData: { "ca.crt": "pem" } } });
    const s = await core.readNamespacedSecret({ name: "droptailer-client", namespace: "firewall" });
    expect(s.data).toEqual({ "ca.crt": Buffer.from("pem").toString("base64") });
    expect(s.type).toBe("Opaque");
  });

  test("Events written as events.k8s.io/v1 are read as core/v1 (and back), found by involvedObject field selectors", async () => {
    const fw = (await custom.getNamespacedCustomObject({ ...FW, name: "firewall" })) as Obj;
    const events = t.kubeConfig.makeApiClient(EventsV1Api);
    await events.createNamespacedEvent({
      namespace: "firewall",
      body: {
        metadata: { name: "firewall.1" },
        eventTime: new Date("2026-01-01T00:00:00Z") as never,
        reportingController: "firewall-controller",
        reportingInstance: "fw-1",
        action: "Reconcile",
        reason: "RulesApplied",
        note: "ruleset applied",
        type: "Normal",
        regarding: { apiVersion: "metal-stack.io/v1", kind: "Firewall", name: "firewall", namespace: "firewall", uid: fw.metadata?.uid ?? "" },
      },
    });
    await core.createNamespacedEvent({
      namespace: "firewall",
      body: {
        metadata: { name: "other.1" },
        involvedObject: { kind: "Service", name: "web", namespace: "firewall" },
        reason: "Other",
        message: "not about the firewall",
        type: "Warning",
      },
    });
    const found = await core.listNamespacedEvent({
      namespace: "firewall",
      fieldSelector: `involvedObject.name=firewall,involvedObject.namespace=firewall,involvedObject.kind=Firewall,involvedObject.uid=${fw.metadata?.uid ?? ""}`,
    });
    expect(found.items.map((e) => [e.metadata?.name, e.message, e.reportingComponent, e.involvedObject.kind])).toEqual([
      ["firewall.1", "ruleset applied", "firewall-controller", "Firewall"],
    ]);
    const asNew = await events.listNamespacedEvent({ namespace: "firewall", fieldSelector: "regarding.kind=Service" });
    expect(asNew.items.map((e) => [e.metadata?.name, e.note])).toEqual([["other.1", "not about the firewall"]]);
  });

  test("namespaces: deleting one deletes what is in it", async () => {
    await core.createNamespace({ body: { metadata: { name: "doomed" } } });
    await core.createNamespacedConfigMap({ namespace: "doomed", body: { metadata: { name: "cm" }, data: { a: "b" } } });
    await core.deleteNamespace({ name: "doomed" });
    expect((await failure(core.readNamespace({ name: "doomed" }))).code).toBe(404);
    const left = await core.listConfigMapForAllNamespaces();
    expect(left.items.filter((c) => c.metadata?.namespace === "doomed")).toEqual([]);
  });
});
