import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { expectFirewallError } from "../firewall-error.ts";
import { KubeConfig } from "@kubernetes/client-node";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { type ClusterApi, clusterApi, type KubeObject } from "../../lib/kube/api.ts";
import { CRDS, ensureCrds } from "../../lib/kube/crds.ts";
import { startTestCluster, type TestCluster } from "./test-cluster.ts";
import { ROOT } from "../cli-binary.ts";
import { FakeClusterApi, loadRbac, rbacAllows } from "./fake-api.ts";

const BASE = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const FIREWALLS = "firewalls.metal-stack.io";
const POLICIES = "clusterwidenetworkpolicies.metal-stack.io";
const fast = { pollMs: 5, timeoutMs: 2_000 };

async function installed(): Promise<FakeClusterApi> {
  const api = new FakeClusterApi();
  await ensureCrds(api, fast);
  api.reset();
  return api;
}


describe("ensureCrds", () => {
  test("the embedded CRDs are the manifests in crds/", () => {
    for (const crd of CRDS) {
      const file = parse(readFileSync(join(ROOT, "crds", `${crd.metadata.name}.yaml`), "utf8"));
      expect(crd).toEqual(file);
    }
    expect(CRDS.map((c) => c.metadata.name)).toEqual([FIREWALLS, POLICIES]);
  });

  test("missing CRDs are created and the call returns once they are Established", async () => {
    const api = new FakeClusterApi();
    const r = await ensureCrds(api, fast);
    expect(r).toEqual({ created: [FIREWALLS, POLICIES], updated: [], unchanged: [] });
    expect(api.count("POST")).toBe(2);
    expect(api.get(`${BASE}/${FIREWALLS}`)?.spec).toEqual({ ...(CRDS[0]?.spec as object), conversion: { strategy: "None" } });
  });

  test("an unchanged CRD is not written", async () => {
    const api = await installed();
    const r = await ensureCrds(api, fast);
    expect(r).toEqual({ created: [], updated: [], unchanged: [FIREWALLS, POLICIES] });
    expect(api.writes()).toEqual([]);
    expect(api.count("GET")).toBe(2);
  });

  test("a spec that differs only by the API server's defaults is unchanged", async () => {
    const api = await installed();
    const path = `${BASE}/${POLICIES}`;
    const stored = api.get(path) as KubeObject;
    const spec = structuredClone(CRDS[1]?.spec) as Record<string, unknown>;
    // What a real kube-apiserver would return for our manifest: the names defaults spelled out, key order its own.
    const names = spec.names as Record<string, unknown>;
    spec.names = { singular: names.singular, listKind: names.listKind, ...names };
    api.put(path, { ...stored, spec: { preserveUnknownFields: false, conversion: { strategy: "None" }, ...spec } });
    const r = await ensureCrds(api, fast);
    expect(r.unchanged).toEqual([FIREWALLS, POLICIES]);
    expect(api.writes()).toEqual([]);
  });

  test("a CRD whose spec differs is updated with the current resourceVersion, keeping others' labels and annotations", async () => {
    const api = await installed();
    const path = `${BASE}/${FIREWALLS}`;
    const stored = api.get(path) as KubeObject;
    const old = structuredClone(stored.spec) as { versions: { additionalPrinterColumns: unknown[] }[] };
    old.versions[0]?.additionalPrinterColumns.pop();
    api.put(path, { ...stored, metadata: { ...stored.metadata, labels: { team: "net" }, annotations: { "kubectl.kubernetes.io/last-applied-configuration": "{}" } }, spec: old });
    const before = api.get(path)?.metadata.resourceVersion;
    const r = await ensureCrds(api, fast);
    expect(r).toEqual({ created: [], updated: [FIREWALLS], unchanged: [POLICIES] });
    const put = api.writes();
    expect(put.map((w) => `${w.method} ${w.path}`)).toEqual([`PUT ${path}`]);
    expect((put[0]?.body as KubeObject).metadata.resourceVersion).toBe(before);
    const after = api.get(path) as KubeObject;
    expect(after.spec).toEqual({ ...(CRDS[0]?.spec as object), conversion: { strategy: "None" } });
    expect(after.metadata.labels).toEqual({ team: "net" });
    expect(after.metadata.annotations).toEqual({ "kubectl.kubernetes.io/last-applied-configuration": "{}" });
  });

  test("an update that conflicts with a concurrent write is retried once after reading again", async () => {
    const api = await installed();
    const path = `${BASE}/${FIREWALLS}`;
    const stored = api.get(path) as KubeObject;
    api.put(path, { ...stored, spec: { ...(stored.spec as object), group: "example.com" } });
    let interfered = false;
    api.beforeRequest = (method, p) => {
      if (method === "PUT" && p === path && !interfered) {
        interfered = true;
        api.put(path, api.get(path) as KubeObject); // someone else writes: the resourceVersion moves on
      }
    };
    const r = await ensureCrds(api, fast);
    expect(r.updated).toEqual([FIREWALLS]);
    expect(api.requests.filter((q) => q.method === "PUT").map((q) => q.status)).toEqual([409, 200]);
  });

  test("a second conflict fails with api_failed naming the CRD, the status and the server's message", async () => {
    const api = await installed();
    const path = `${BASE}/${FIREWALLS}`;
    const stored = api.get(path) as KubeObject;
    api.put(path, { ...stored, spec: { ...(stored.spec as object), group: "example.com" } });
    api.fail({ method: "PUT", status: 409, message: "the object has been modified", times: 2 });
    const e = await expectFirewallError(ensureCrds(api, fast));
    expect(e.code).toBe("api_failed");
    expect(e.message).toBe(`cannot update CRD ${FIREWALLS}: HTTP 409: the object has been modified`);
  });

  test("a CRD created concurrently by another firewall is read and compared instead of failing", async () => {
    const api = new FakeClusterApi();
    let raced = false;
    api.beforeRequest = (method, p) => {
      if (method === "POST" && p === BASE && !raced) {
        raced = true;
        api.put(`${BASE}/${FIREWALLS}`, { ...(structuredClone(CRDS[0]) as KubeObject), status: { conditions: [{ type: "Established", status: "True" }] } });
      }
    };
    const r = await ensureCrds(api, fast);
    expect(r).toEqual({ created: [POLICIES], updated: [], unchanged: [FIREWALLS] });
  });

  test("waits while the API server reports the CRDs as not yet Established", async () => {
    const api = new FakeClusterApi();
    api.establishAfterGets = 3;
    const r = await ensureCrds(api, fast);
    expect(r.created).toEqual([FIREWALLS, POLICIES]);
    expect(api.count("GET")).toBeGreaterThanOrEqual(2 + 2 * 3);
  });

  test("a CRD that never becomes Established fails after the timeout, naming it and its conditions", async () => {
    const api = new FakeClusterApi();
    api.establishAfterGets = Infinity;
    const started = Date.now();
    const e = await expectFirewallError(ensureCrds(api, { pollMs: 10, timeoutMs: 200 }));
    expect(Date.now() - started).toBeLessThan(1_500);
    expect(e.code).toBe("api_failed");
    expect(e.message).toContain(`CRD ${FIREWALLS} is not Established after 0.2 s (Established=False Installing: the initial names have been accepted)`);
    expect(e.message).toContain(`CRD ${POLICIES} is not Established`);
  });

  test("an abort stops the wait", async () => {
    const api = new FakeClusterApi();
    api.establishAfterGets = Infinity;
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    const e = await expectFirewallError(ensureCrds(api, { pollMs: 10, timeoutMs: 60_000, signal: ac.signal }));
    expect(e.message).toContain("stopped while waiting");
  });

  test("a refused create names the CRD, the HTTP status and the server's message", async () => {
    const api = new FakeClusterApi();
    api.fail({ method: "POST", status: 403, message: 'customresourcedefinitions.apiextensions.k8s.io is forbidden: User "system:serviceaccount:firewall:firewall-controller" cannot create resource' });
    const e = await expectFirewallError(ensureCrds(api, fast));
    expect(e.message).toBe(
      `cannot create CRD ${FIREWALLS}: HTTP 403: customresourcedefinitions.apiextensions.k8s.io is forbidden: User "system:serviceaccount:firewall:firewall-controller" cannot create resource`,
    );
  });

  test("an unreachable API server fails with api_failed", async () => {
    const api = new FakeClusterApi();
    api.fail({ status: 0 });
    const e = await expectFirewallError(ensureCrds(api, fast));
    expect(e.code).toBe("api_failed");
    expect(e.message).toBe(`cannot read CRD ${FIREWALLS}: API server unreachable: connect ECONNREFUSED 127.0.0.1:6443`);
  });

  test("a CRD being deleted is reported, not updated", async () => {
    const api = await installed();
    const path = `${BASE}/${FIREWALLS}`;
    const stored = api.get(path) as KubeObject;
    api.put(path, { ...stored, metadata: { ...stored.metadata, deletionTimestamp: "2026-01-01T00:00:00Z" } });
    const e = await expectFirewallError(ensureCrds(api, fast));
    expect(e.message).toContain(`CRD ${FIREWALLS} is being deleted`);
    expect(api.writes()).toEqual([]);
  });

  test("deploy/rbac.yaml allows every request, and no update of other CRDs", async () => {
    const rbac = loadRbac(join(ROOT, "deploy", "rbac.yaml"));
    const api = new FakeClusterApi();
    api.rbac = rbac;
    expect((await ensureCrds(api, fast)).created).toHaveLength(2);
    const path = `${BASE}/${FIREWALLS}`;
    const stored = api.get(path) as KubeObject;
    api.put(path, { ...stored, spec: { ...(stored.spec as object), group: "example.com" } });
    expect((await ensureCrds(api, fast)).updated).toEqual([FIREWALLS]);
    expect(api.requests.filter((r) => r.status === 403)).toEqual([]);
    expect(rbacAllows(rbac, "PUT", `${BASE}/certificates.cert-manager.io`)).toBe(false);
    expect(rbacAllows(rbac, "DELETE", path)).toBe(false);
  });
});

describe("ensureCrds against the test API server", () => {
  let cluster: TestCluster;
  let api: ClusterApi;
  beforeAll(async () => {
    cluster = await startTestCluster();
    api = cluster.api;
  });
  afterAll(() => cluster.stop());

  test("installs both CRDs so their APIs are served, updates a changed one, and leaves unchanged ones alone", async () => {
    expect(await ensureCrds(api, fast)).toEqual({ created: [FIREWALLS, POLICIES], updated: [], unchanged: [] });
    expect((await api.request("GET", "/apis/metal-stack.io/v1/namespaces/firewall/firewalls")).status).toBe(200);
    expect((await api.request("GET", "/apis/metal-stack.io/v1/namespaces/firewall/clusterwidenetworkpolicies")).status).toBe(200);

    cluster.server.resetRequests();
    expect(await ensureCrds(api, fast)).toEqual({ created: [], updated: [], unchanged: [FIREWALLS, POLICIES] });
    expect(cluster.server.requests.map((r) => r.verb)).toEqual(["get", "get"]);

    const path = `${BASE}/${POLICIES}`;
    const current = (await api.request("GET", path)).body as KubeObject & { spec: { versions: { additionalPrinterColumns: unknown[] }[] } };
    current.spec.versions[0]?.additionalPrinterColumns.pop();
    expect((await api.request("PUT", path, { body: current })).status).toBe(200);
    expect(await ensureCrds(api, fast)).toEqual({ created: [], updated: [POLICIES], unchanged: [FIREWALLS] });
    expect(await ensureCrds(api, fast)).toEqual({ created: [], updated: [], unchanged: [FIREWALLS, POLICIES] });
  });
});

