import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { KubeConfig } from "@kubernetes/client-node";
import { type ClusterApi, clusterApi, type KubeObject } from "../../lib/kube/api.ts";
import { EventRecorder, type InvolvedObject } from "../../lib/kube/events.ts";
import { join } from "node:path";
import { startTestCluster, type TestCluster } from "./test-cluster.ts";
import { ROOT } from "../cli-binary.ts";
import { FakeClusterApi, loadRbac } from "./fake-api.ts";

const POLICY: InvolvedObject = { apiVersion: "metal-stack.io/v1", kind: "ClusterwideNetworkPolicy", namespace: "firewall", name: "allow-dns", uid: "0b6f-1" };
const EVENTS = "/api/v1/namespaces/firewall/events";
const T0 = Date.parse("2026-11-27T08:00:00Z");

function setup(start = T0) {
  const api = new FakeClusterApi();
  let now = start;
  const failures: string[] = [];
  const recorder = new EventRecorder(api, { component: "firewall-controller", host: "fw-1", clock: () => new Date(now), onFailure: (m) => failures.push(m) });
  const events = () => [...api.objects].filter(([p]) => p.startsWith(`/api/v1/namespaces/`) && p.includes("/events/")).map(([, o]) => o as KubeObject & Record<string, any>);
  return { api, recorder, events, failures, advance: (ms: number) => (now += ms) };
}

describe("EventRecorder", () => {
  test("a first event creates a core/v1 Event in the object's namespace", async () => {
    const { api, recorder, events } = setup();
    await recorder.record(POLICY, "Warning", "InvalidPolicy", "spec.egress[0].ports[0].port: 0 is not a port (1..65535)");
    expect(api.writes().map((w) => `${w.method} ${w.path}`)).toEqual([`POST ${EVENTS}`]);
    const [e] = events();
    expect(e?.metadata.name).toMatch(/^allow-dns\.[0-9a-f]+$/);
    expect(e).toMatchObject({
      apiVersion: "v1",
      kind: "Event",
      metadata: { namespace: "firewall" },
      involvedObject: { apiVersion: "metal-stack.io/v1", kind: "ClusterwideNetworkPolicy", namespace: "firewall", name: "allow-dns", uid: "0b6f-1" },
      reason: "InvalidPolicy",
      message: "spec.egress[0].ports[0].port: 0 is not a port (1..65535)",
      type: "Warning",
      source: { component: "firewall-controller", host: "fw-1" },
      firstTimestamp: "2026-11-27T08:00:00Z",
      lastTimestamp: "2026-11-27T08:00:00Z",
      count: 1,
      reportingComponent: "firewall-controller",
      reportingInstance: "fw-1",
    });
    expect(recorder.failures).toBe(0);
  });

  test("a repeated warning patches the count instead of creating a second Event", async () => {
    const { api, recorder, events, advance } = setup();
    await recorder.record(POLICY, "Warning", "InvalidPolicy", "bad port");
    advance(10_000);
    await recorder.record(POLICY, "Warning", "InvalidPolicy", "bad port");
    advance(10_000);
    await recorder.record(POLICY, "Warning", "InvalidPolicy", "bad port");
    expect(api.writes().map((w) => w.method)).toEqual(["POST", "PATCH", "PATCH"]);
    expect(api.writes()[2]).toMatchObject({ contentType: "application/merge-patch+json", body: { count: 3, lastTimestamp: "2026-11-27T08:00:20Z" } });
    const all = events();
    expect(all).toHaveLength(1);
    expect(all[0]).toMatchObject({ count: 3, firstTimestamp: "2026-11-27T08:00:00Z", lastTimestamp: "2026-11-27T08:00:20Z" });
  });

  test("repeats every few seconds keep folding into one Event for longer than 10 minutes", async () => {
    const { api, recorder, events, advance } = setup();
    for (let i = 0; i < 70; i++) {
      await recorder.record(POLICY, "Warning", "InvalidPolicy", "bad port");
      advance(10_000);
    }
    expect(api.count("POST")).toBe(1);
    expect(events()[0]?.count).toBe(70);
  });

  test("a repeat more than 10 minutes after the last one creates a new Event", async () => {
    const { api, recorder, events, advance } = setup();
    await recorder.record(POLICY, "Warning", "InvalidPolicy", "bad port");
    advance(10 * 60 * 1000);
    await recorder.record(POLICY, "Warning", "InvalidPolicy", "bad port");
    expect(api.writes().map((w) => w.method)).toEqual(["POST", "POST"]);
    expect(events().map((e) => e.count)).toEqual([1, 1]);
  });

  test("a different object, type, reason or message is an Event of its own", async () => {
    const { api, recorder, events } = setup();
    await recorder.record(POLICY, "Warning", "InvalidPolicy", "bad port");
    await recorder.record({ ...POLICY, name: "allow-ntp" }, "Warning", "InvalidPolicy", "bad port");
    await recorder.record(POLICY, "Normal", "InvalidPolicy", "bad port");
    await recorder.record(POLICY, "Warning", "Ignored", "bad port");
    await recorder.record(POLICY, "Warning", "InvalidPolicy", "bad cidr");
    await recorder.record({ ...POLICY, namespace: "team-a" }, "Warning", "InvalidPolicy", "bad port");
    expect(api.count("POST")).toBe(6);
    expect(api.count("PATCH")).toBe(0);
    expect(new Set(events().map((e) => e.metadata.name)).size).toBe(6);
    expect(api.writes()[5]?.path).toBe("/api/v1/namespaces/team-a/events");
  });

  test("concurrent repeats create one Event and count every occurrence", async () => {
    const { api, recorder, events } = setup();
    await Promise.all(Array.from({ length: 5 }, () => recorder.record(POLICY, "Warning", "ApplyFailed", "nft rejected the ruleset")));
    expect(api.count("POST")).toBe(1);
    expect(api.count("PATCH")).toBe(4);
    expect(events()[0]?.count).toBe(5);
  });

  test("an Event that expired on the server is created again at the next repeat", async () => {
    const { api, recorder, events, advance } = setup();
    await recorder.record(POLICY, "Warning", "InvalidPolicy", "bad port");
    for (const [p] of [...api.objects].filter(([p]) => p.includes("/events/"))) api.objects.delete(p);
    advance(1_000);
    await recorder.record(POLICY, "Warning", "InvalidPolicy", "bad port");
    expect(api.requests.map((r) => `${r.method} ${r.status}`)).toEqual(["POST 201", "PATCH 404", "POST 201"]);
    expect(events()).toHaveLength(1);
    expect(recorder.failures).toBe(0);
  });

  test("failures are swallowed and counted, and a failed create is tried again next time", async () => {
    const { api, recorder, events, failures } = setup();
    api.fail({ method: "POST", status: 403, message: "events is forbidden" });
    await recorder.record(POLICY, "Warning", "InvalidPolicy", "bad port");
    expect(recorder.failures).toBe(1);
    expect(failures[0]).toMatch(/^cannot create Event firewall\/allow-dns\.[0-9a-f]+: HTTP 403: events is forbidden$/);
    await recorder.record(POLICY, "Warning", "InvalidPolicy", "bad port");
    expect(api.requests.map((r) => `${r.method} ${r.status}`)).toEqual(["POST 403", "POST 201"]);
    expect(events()).toHaveLength(1);
  });

  test("a failed patch is counted and the next patch carries the full count", async () => {
    const { api, recorder, events } = setup();
    await recorder.record(POLICY, "Warning", "InvalidPolicy", "bad port");
    api.fail({ method: "PATCH", status: 0 });
    await recorder.record(POLICY, "Warning", "InvalidPolicy", "bad port");
    await recorder.record(POLICY, "Warning", "InvalidPolicy", "bad port");
    expect(recorder.failures).toBe(1);
    expect(events()[0]?.count).toBe(3);
  });

  test("a fake that throws does not make record throw", async () => {
    const { api, recorder } = setup();
    api.beforeRequest = () => {
      throw new Error("boom");
    };
    await recorder.record(POLICY, "Warning", "InvalidPolicy", "bad port");
    expect(recorder.failures).toBe(1);
  });

  test("long messages are cut within 1024 characters, without splitting a character, saying how much was cut", async () => {
    const { recorder, events } = setup();
    await recorder.record(POLICY, "Warning", "InvalidPolicy", `${"x".repeat(991)}😀${"y".repeat(100)}`);
    const message = events()[0]?.message as string;
    // 992 code units kept would split the emoji: the cut keeps 991 and counts the rest (2 + 100).
    expect(message).toBe(`${"x".repeat(991)}…(102 more characters)`);
    expect(message.length).toBeLessThanOrEqual(1024);
  });

  test("a message of escapes still fits in 1024 characters once escaped", async () => {
    const { recorder, events } = setup();
    await recorder.record(POLICY, "Warning", "InvalidPolicy", "\u0001".repeat(5000));
    const message = events()[0]?.message as string;
    expect(message.length).toBeLessThanOrEqual(1024);
    expect(message).toMatch(/^(\\x01)+…\([\d,]+ more characters\)$/);
  });

  test("a message is escaped: no control characters or bidi overrides reach kubectl", async () => {
    const { recorder, events } = setup();
    await recorder.record(POLICY, "Warning", "InvalidPolicy", "bad\u001b[31m\nrejected x\u202e");
    expect(events()[0]?.message).toBe("bad\\x1b[31m\\nrejected x\\u202e");
  });

  test("Event names stay valid and unique for the longest object names", async () => {
    const { recorder, events } = setup();
    const long = `${"a".repeat(235)}.b${"c".repeat(16)}`;
    await recorder.record({ ...POLICY, name: long }, "Warning", "InvalidPolicy", "one");
    await recorder.record({ ...POLICY, name: long }, "Warning", "InvalidPolicy", "two");
    const names = events().map((e) => e.metadata.name);
    expect(new Set(names).size).toBe(2);
    for (const n of names) {
      expect(n.length).toBeLessThanOrEqual(253);
      expect(n).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/);
    }
  });

  test("deploy/rbac.yaml allows creating and patching Events in any namespace", async () => {
    const { api, recorder } = setup();
    api.rbac = loadRbac(join(ROOT, "deploy", "rbac.yaml"));
    for (const namespace of ["firewall", "team-a"]) {
      await recorder.record({ ...POLICY, namespace }, "Warning", "InvalidPolicy", "bad port");
      await recorder.record({ ...POLICY, namespace }, "Warning", "InvalidPolicy", "bad port");
    }
    expect(api.requests.map((r) => `${r.method} ${r.status}`)).toEqual(["POST 201", "PATCH 200", "POST 201", "PATCH 200"]);
    expect(recorder.failures).toBe(0);
  });
});

describe("EventRecorder against the test API server", () => {
  let cluster: TestCluster;
  let api: ClusterApi;
  beforeAll(async () => {
    cluster = await startTestCluster({ namespaces: ["firewall"] });
    api = cluster.api;
  });
  afterAll(() => cluster.stop());

  test("a repeated warning is one Event whose count and lastTimestamp move", async () => {
    let now = T0;
    const recorder = new EventRecorder(api, { component: "firewall-controller", host: "fw-1", clock: () => new Date(now) });
    await recorder.record(POLICY, "Warning", "InvalidPolicy", "bad port");
    now += 30_000;
    await recorder.record(POLICY, "Warning", "InvalidPolicy", "bad port");
    expect(recorder.failures).toBe(0);
    const list = (await api.request("GET", EVENTS)).body as { items: (KubeObject & Record<string, any>)[] };
    expect(list.items).toHaveLength(1);
    expect(list.items[0]).toMatchObject({
      involvedObject: { kind: "ClusterwideNetworkPolicy", name: "allow-dns", namespace: "firewall" },
      reason: "InvalidPolicy",
      type: "Warning",
      count: 2,
      firstTimestamp: "2026-11-27T08:00:00Z",
      lastTimestamp: "2026-11-27T08:00:30Z",
      source: { component: "firewall-controller", host: "fw-1" },
    });
    expect(cluster.server.requests.filter((r) => r.verb === "patch").map((r) => r.contentType)).toEqual(["application/merge-patch+json"]);
  });
});

