import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { KubeConfig } from "@kubernetes/client-node";
import { FirewallError } from "../../lib/errors.ts";
import { type ClusterApi, clusterApi, type KubeObject } from "../../lib/kube/api.ts";
import {
  desiredExporterObjects,
  endpointSliceName,
  type ExporterFirewall,
  EXPORTER_NAMES,
  EXPORTER_PATHS,
  exporterObjectPath,
  firewallLabelValue,
  isExporterObject,
  reconcileExporterServices,
} from "../../lib/kube/exporter-services.ts";
import { join } from "node:path";
import { startTestCluster, type TestCluster } from "./test-cluster.ts";
import { ROOT } from "../cli-binary.ts";
import { FakeClusterApi, loadRbac, rbacAllows } from "./fake-api.ts";

const IP = "10.3.164.1";
const SVC = `${EXPORTER_PATHS.services}/nftables-exporter`;
const EP = `${EXPORTER_PATHS.endpoints}/nftables-exporter`;
const SLICE = `${EXPORTER_PATHS.endpointSlices}/nftables-exporter-fw-a`;
/** A single firewall, the only one there is. */
const ONE: ExporterFirewall = { name: "fw-a", isLive: (n) => n === "fw-a" };
const ref = (name: string) => ({ kind: "Firewall", namespace: "firewall", name });

async function reconciled(ip = IP): Promise<FakeClusterApi> {
  const api = new FakeClusterApi();
  const r = await reconcileExporterServices(api, ip, ONE);
  expect(r.problems).toEqual([]);
  api.reset();
  return api;
}

const edit = (api: FakeClusterApi, path: string, change: (o: KubeObject & Record<string, any>) => void) => {
  const o = api.get(path) as KubeObject & Record<string, any>;
  change(o);
  api.put(path, o);
};

describe("desiredExporterObjects", () => {
  test("two headless selectorless Services, each with Endpoints and an EndpointSlice at the service IP", () => {
    const objects = desiredExporterObjects(IP, "fw-a");
    expect(objects.map((o) => `${o.kind} ${o.metadata.namespace}/${o.metadata.name}`)).toEqual([
      "Service firewall/nftables-exporter",
      "Endpoints firewall/nftables-exporter",
      "EndpointSlice firewall/nftables-exporter-fw-a",
      "Service firewall/node-exporter",
      "Endpoints firewall/node-exporter",
      "EndpointSlice firewall/node-exporter-fw-a",
    ]);
    const [svc, ep, slice] = objects;
    expect(svc).toEqual({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "nftables-exporter", namespace: "firewall", labels: { "app.kubernetes.io/managed-by": "firewall-controller" } },
      spec: { type: "ClusterIP", clusterIP: "None", ports: [{ name: "metrics", port: 9630, protocol: "TCP", targetPort: 9630 }] },
    });
    expect(ep?.subsets).toEqual([{ addresses: [{ ip: IP, targetRef: ref("fw-a") }], ports: [{ name: "metrics", port: 9630, protocol: "TCP" }] }]);
    expect(ep?.metadata.labels).toEqual({ "app.kubernetes.io/managed-by": "firewall-controller", "endpointslice.kubernetes.io/skip-mirror": "true" });
    expect(slice).toEqual({
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: {
        name: "nftables-exporter-fw-a",
        namespace: "firewall",
        labels: {
          "app.kubernetes.io/managed-by": "firewall-controller",
          "kubernetes.io/service-name": "nftables-exporter",
          "endpointslice.kubernetes.io/managed-by": "firewall-controller",
          "firewall.metal-stack.io/name": "fw-a",
        },
      },
      addressType: "IPv4",
      endpoints: [{ addresses: [IP], conditions: { ready: true }, targetRef: ref("fw-a") }],
      ports: [{ name: "metrics", port: 9630, protocol: "TCP" }],
    });
    expect(objects[3]?.spec).toMatchObject({ ports: [{ port: 9100 }] });
  });

  test("an IPv6 service IP gives IPv6 EndpointSlices and is written in canonical form", () => {
    const objects = desiredExporterObjects("2001:DB8:0:0::1", "fw-a");
    const slice = objects[2] as KubeObject & { addressType: string; endpoints: { addresses: string[] }[] };
    expect(slice.addressType).toBe("IPv6");
    expect(slice.endpoints[0]?.addresses).toEqual(["2001:db8::1"]);
    expect((objects[1]?.subsets as { addresses: unknown[] }[])[0]?.addresses).toEqual([{ ip: "2001:db8::1", targetRef: ref("fw-a") }]);
  });

  test("a service IP that is not an address is refused, naming the flag", () => {
    expect(() => desiredExporterObjects("10.3.164", "fw-a")).toThrow(FirewallError);
    expect(() => desiredExporterObjects("10.3.164", "fw-a")).toThrow('--service-ip: "10.3.164" is not an IPv4 or IPv6 address');
  });

  test("paths and the ownership test agree with the objects", () => {
    const objects = desiredExporterObjects(IP, "fw-a");
    expect(objects.map(exporterObjectPath).slice(0, 3)).toEqual([SVC, EP, SLICE]);
    expect(objects.every((o) => isExporterObject(o))).toBe(true);
    expect(EXPORTER_NAMES).toEqual({ services: ["nftables-exporter", "node-exporter"], endpoints: ["nftables-exporter", "node-exporter"] });
    expect(isExporterObject({ kind: "Service", metadata: { name: "nftables-exporter", namespace: "default" } })).toBe(false);
    expect(isExporterObject({ kind: "Service", metadata: { name: "droptailer", namespace: "firewall" } })).toBe(false);
    // EndpointSlices are ours by label, whichever firewall of the pair wrote them; the mirroring controller's are not.
    expect(isExporterObject({ kind: "EndpointSlice", metadata: { name: "nftables-exporter-abcde", namespace: "firewall", labels: { "kubernetes.io/service-name": "nftables-exporter", "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io" } } })).toBe(false);
    expect(isExporterObject({ kind: "EndpointSlice", metadata: { name: "nftables-exporter-fw-a", namespace: "firewall" } })).toBe(false);
    expect(isExporterObject({ kind: "Endpoints", metadata: { name: "nftables-exporter-fw-a", namespace: "firewall" } })).toBe(false);
    const sliceLabels = { "kubernetes.io/service-name": "node-exporter", "endpointslice.kubernetes.io/managed-by": "firewall-controller" };
    expect(isExporterObject({ kind: "EndpointSlice", metadata: { name: "node-exporter-fw-b", namespace: "firewall", labels: sliceLabels } })).toBe(true);
    expect(isExporterObject({ kind: "EndpointSlice", metadata: { name: "x", namespace: "firewall", labels: { ...sliceLabels, "kubernetes.io/service-name": "kube-dns" } } })).toBe(false);
    // List items carry no kind; the watcher knows it from the collection.
    expect(isExporterObject({ metadata: { name: "node-exporter-fw-a", namespace: "firewall", labels: sliceLabels } }, "EndpointSlice")).toBe(true);
    expect(isExporterObject({ metadata: { name: "node-exporter", namespace: "firewall" } })).toBe(false);
    expect(isExporterObject({ metadata: { name: "toString", namespace: "firewall" } }, "toString")).toBe(false);
  });
});

describe("reconcileExporterServices", () => {
  test("missing objects are all created", async () => {
    const api = new FakeClusterApi();
    const r = await reconcileExporterServices(api, IP, ONE);
    expect(r.created).toEqual([
      "Service firewall/nftables-exporter",
      "Endpoints firewall/nftables-exporter",
      "EndpointSlice firewall/nftables-exporter-fw-a",
      "Service firewall/node-exporter",
      "Endpoints firewall/node-exporter",
      "EndpointSlice firewall/node-exporter-fw-a",
    ]);
    expect(r.updated).toEqual([]);
    expect(r.problems).toEqual([]);
    expect(api.count("POST")).toBe(6);
    expect(api.get(SVC)?.spec).toMatchObject({ clusterIP: "None", type: "ClusterIP" });
  });

  test("a second reconcile changes nothing, although the server filled in defaults", async () => {
    const api = await reconciled();
    const r = await reconcileExporterServices(api, IP, ONE);
    expect(r).toEqual({ created: [], updated: [], deleted: [], problems: [] });
    expect(api.writes()).toEqual([]);
    // Six objects, and one list of EndpointSlices per Service (for those of Firewalls gone).
    expect(api.count("GET")).toBe(8);
  });

  test("a deleted Endpoints object is recreated", async () => {
    const api = await reconciled();
    api.objects.delete(EP);
    const r = await reconcileExporterServices(api, IP, ONE);
    expect(r).toEqual({ created: ["Endpoints firewall/nftables-exporter"], updated: [], deleted: [], problems: [] });
    expect(api.get(EP)?.subsets).toEqual(desiredExporterObjects(IP, "fw-a")[1]?.subsets);
  });

  test("a changed port is corrected, keeping other tools' labels, annotations and fields", async () => {
    const api = await reconciled();
    edit(api, SVC, (o) => {
      o.spec.ports = [{ name: "web", port: 8080, protocol: "TCP", targetPort: 8080 }];
      o.spec.publishNotReadyAddresses = true;
      o.metadata.labels = { ...o.metadata.labels, team: "monitoring" };
      o.metadata.annotations = { "prometheus.io/scrape": "true" };
    });
    const before = api.get(SVC)?.metadata.resourceVersion;
    const r = await reconcileExporterServices(api, IP, ONE);
    expect(r).toEqual({ created: [], updated: ["Service firewall/nftables-exporter"], deleted: [], problems: [] });
    const put = api.writes()[0];
    expect(put?.method).toBe("PUT");
    expect((put?.body as KubeObject).metadata.resourceVersion).toBe(before);
    const svc = api.get(SVC) as KubeObject & Record<string, any>;
    expect(svc.spec.ports).toEqual([{ name: "metrics", port: 9630, protocol: "TCP", targetPort: 9630 }]);
    expect(svc.spec.publishNotReadyAddresses).toBe(true);
    expect(svc.metadata.labels).toEqual({ "app.kubernetes.io/managed-by": "firewall-controller", team: "monitoring" });
    expect(svc.metadata.annotations).toEqual({ "prometheus.io/scrape": "true" });
  });

  test("a selector added by an operator is removed", async () => {
    const api = await reconciled();
    edit(api, SVC, (o) => {
      o.spec.selector = { app: "nftables-exporter" };
    });
    const r = await reconcileExporterServices(api, IP, ONE);
    expect(r.updated).toEqual(["Service firewall/nftables-exporter"]);
    expect(api.get(SVC)?.spec).not.toHaveProperty("selector");
  });

  test("a removed managed-by label is put back", async () => {
    const api = await reconciled();
    edit(api, SLICE, (o) => {
      o.metadata.labels = { "kubernetes.io/service-name": "nftables-exporter" };
    });
    const r = await reconcileExporterServices(api, IP, ONE);
    expect(r.updated).toEqual(["EndpointSlice firewall/nftables-exporter-fw-a"]);
    expect(api.get(SLICE)?.metadata.labels).toMatchObject({ "endpointslice.kubernetes.io/managed-by": "firewall-controller" });
  });

  test("a Service replaced by one with a cluster IP is deleted and recreated headless", async () => {
    const api = await reconciled();
    const oldUid = api.get(SVC)?.metadata.uid;
    api.objects.delete(SVC);
    api.put(SVC, { apiVersion: "v1", kind: "Service", metadata: { name: "nftables-exporter", namespace: "firewall" }, spec: { type: "ClusterIP", clusterIP: "10.96.0.77", ports: [{ port: 9630 }] } });
    const r = await reconcileExporterServices(api, IP, ONE);
    expect(r).toEqual({ created: [], updated: ["Service firewall/nftables-exporter"], deleted: [], problems: [] });
    expect(api.writes().map((w) => `${w.method} ${w.path}`)).toEqual([`DELETE ${SVC}`, `POST ${EXPORTER_PATHS.services}`]);
    const svc = api.get(SVC) as KubeObject & Record<string, any>;
    expect(svc.spec.clusterIP).toBe("None");
    expect(svc.metadata.uid).not.toBe(oldUid);
    expect((await reconcileExporterServices(api, IP, ONE)).updated).toEqual([]);
  });

  test("a changed service IP of the same family updates Endpoints and EndpointSlices in place", async () => {
    const api = await reconciled();
    const r = await reconcileExporterServices(api, "10.3.164.2", ONE);
    expect(r.updated).toEqual([
      "Endpoints firewall/nftables-exporter",
      "EndpointSlice firewall/nftables-exporter-fw-a",
      "Endpoints firewall/node-exporter",
      "EndpointSlice firewall/node-exporter-fw-a",
    ]);
    expect(api.writes().every((w) => w.method === "PUT")).toBe(true);
    expect(api.get(SLICE)?.endpoints).toEqual([{ addresses: ["10.3.164.2"], conditions: { ready: true }, targetRef: ref("fw-a") }]);
  });

  test("a service IP of the other family replaces the EndpointSlices (addressType is immutable)", async () => {
    const api = await reconciled();
    const r = await reconcileExporterServices(api, "fd00:66::1", ONE);
    expect(r.problems).toEqual([]);
    expect(api.writes().filter((w) => w.path.startsWith(EXPORTER_PATHS.endpointSlices)).map((w) => `${w.method} ${w.path.slice(EXPORTER_PATHS.endpointSlices.length) || (w.body as KubeObject).metadata.name}`)).toEqual([
      "DELETE /nftables-exporter-fw-a",
      "POST nftables-exporter-fw-a",
      "DELETE /node-exporter-fw-a",
      "POST node-exporter-fw-a",
    ]);
    expect(r.updated).toContain("EndpointSlice firewall/node-exporter-fw-a");
    expect(api.get(SLICE)).toMatchObject({ addressType: "IPv6", endpoints: [{ addresses: ["fd00:66::1"] }] });
  });

  test("an update that conflicts with a concurrent write is retried once after reading again", async () => {
    const api = await reconciled();
    edit(api, EP, (o) => {
      o.subsets = [];
    });
    let interfered = false;
    api.beforeRequest = (method, path) => {
      if (method === "PUT" && path === EP && !interfered) {
        interfered = true;
        api.put(EP, api.get(EP) as KubeObject);
      }
    };
    const r = await reconcileExporterServices(api, IP, ONE);
    expect(r).toEqual({ created: [], updated: ["Endpoints firewall/nftables-exporter"], deleted: [], problems: [] });
    expect(api.requests.filter((q) => q.method === "PUT").map((q) => q.status)).toEqual([409, 200]);
  });

  test("a failing object is reported with status and message, and the others are still reconciled", async () => {
    const api = new FakeClusterApi();
    api.fail({ method: "POST", path: "/services", status: 403, message: 'services is forbidden: User "system:serviceaccount:firewall:firewall-controller" cannot create resource "services"' });
    const r = await reconcileExporterServices(api, IP, ONE);
    expect(r.problems).toEqual([
      'Service firewall/nftables-exporter: cannot create: HTTP 403: services is forbidden: User "system:serviceaccount:firewall:firewall-controller" cannot create resource "services"',
    ]);
    expect(r.created).toHaveLength(5);
    expect((await reconcileExporterServices(api, IP, ONE)).created).toEqual(["Service firewall/nftables-exporter"]);
  });

  test("an unreachable API server makes every object a problem, without throwing", async () => {
    const api = new FakeClusterApi();
    api.fail({ status: 0, times: 100 });
    const r = await reconcileExporterServices(api, IP, ONE);
    expect(r.created).toEqual([]);
    expect(r.problems).toHaveLength(8);
    expect(r.problems[0]).toBe("Service firewall/nftables-exporter: cannot read: API server unreachable: connect ECONNREFUSED 127.0.0.1:6443");
  });

  test("deploy/rbac.yaml allows every request of creating, correcting and recreating, and nothing beyond our objects", async () => {
    const rbac = loadRbac(join(ROOT, "deploy", "rbac.yaml"));
    const api = new FakeClusterApi();
    api.rbac = rbac;
    // Slice names carry the Firewall's name (and a peer's slice of a Firewall gone is deleted): the
    // endpointslices rule for get/update/delete cannot list names.
    for (const verb of ["GET", "PUT", "DELETE"] as const) expect(rbacAllows(rbac, verb, `${EXPORTER_PATHS.endpointSlices}/node-exporter-fw-b`)).toBe(true);
    expect((await reconcileExporterServices(api, IP, ONE)).created).toHaveLength(6);
    edit(api, EP, (o) => {
      o.subsets = [];
    });
    api.objects.delete(SVC);
    api.put(SVC, { apiVersion: "v1", kind: "Service", metadata: { name: "nftables-exporter", namespace: "firewall" }, spec: { type: "ClusterIP", clusterIP: "10.96.0.77" } });
    const r = await reconcileExporterServices(api, "fd00:66::1", ONE);
    expect(r.problems).toEqual([]);
    expect(api.requests.filter((q) => q.status === 403)).toEqual([]);
    // A peer's slice of a Firewall gone is deleted: EndpointSlice names depend on Firewall names, so
    // get/update/delete of EndpointSlices in "firewall" cannot be restricted by name.
    api.put(`${EXPORTER_PATHS.endpointSlices}/node-exporter-fw-gone`, { ...(api.get(`${EXPORTER_PATHS.endpointSlices}/node-exporter-fw-a`) as KubeObject), metadata: { name: "node-exporter-fw-gone", namespace: "firewall", labels: { "kubernetes.io/service-name": "node-exporter", "endpointslice.kubernetes.io/managed-by": "firewall-controller", "firewall.metal-stack.io/name": "fw-gone" } }, endpoints: [] });
    const gone = await reconcileExporterServices(api, "fd00:66::1", ONE);
    expect(gone.problems).toEqual([]);
    expect(gone.deleted).toEqual(["EndpointSlice firewall/node-exporter-fw-gone"]);
    expect(api.requests.filter((q) => q.status === 403)).toEqual([]);
    for (const path of Object.values(EXPORTER_PATHS)) {
      expect(rbacAllows(rbac, "GET", path, { watch: "true" })).toBe(true);
      if (path !== EXPORTER_PATHS.endpointSlices) expect(rbacAllows(rbac, "DELETE", `${path}/kube-dns`)).toBe(false);
      expect(rbacAllows(rbac, "DELETE", `${path.replace("/firewall/", "/kube-system/")}/kube-dns`)).toBe(false);
      expect(rbacAllows(rbac, "PUT", `${path.replace("/firewall/", "/kube-system/")}/nftables-exporter`)).toBe(false);
    }
  });
});

describe("an HA pair of firewalls", () => {
  const A_IP = "10.0.0.1";
  const B_IP = "10.0.0.2";
  const SLICES = EXPORTER_PATHS.endpointSlices;
  const pair = () => {
    const live = new Set(["fw-a", "fw-b"]);
    const isLive = (n: string) => live.has(n);
    return { live, a: { name: "fw-a", isLive }, b: { name: "fw-b", isLive } };
  };
  const addresses = (api: FakeClusterApi, path = EP) => (api.get(path)?.subsets as { addresses: unknown[] }[])[0]?.addresses;
  const slices = (api: FakeClusterApi) => [...api.objects.keys()].filter((p) => p.startsWith(`${SLICES}/`)).map((p) => p.slice(SLICES.length + 1)).sort();
  const writes = (api: FakeClusterApi) => ({ POST: api.count("POST"), PUT: api.count("PUT"), DELETE: api.count("DELETE") });

  test("two firewalls reconciling alternately converge: both addresses in Endpoints, a slice each, then no writes", async () => {
    const api = new FakeClusterApi();
    const { a, b } = pair();
    expect((await reconcileExporterServices(api, A_IP, a)).problems).toEqual([]);
    const rb = await reconcileExporterServices(api, B_IP, b);
    expect(rb).toEqual({
      created: ["EndpointSlice firewall/nftables-exporter-fw-b", "EndpointSlice firewall/node-exporter-fw-b"],
      updated: ["Endpoints firewall/nftables-exporter", "Endpoints firewall/node-exporter"],
      deleted: [],
      problems: [],
    });
    for (const path of [EP, `${EXPORTER_PATHS.endpoints}/node-exporter`]) {
      expect(addresses(api, path)).toEqual([
        { ip: A_IP, targetRef: ref("fw-a") },
        { ip: B_IP, targetRef: ref("fw-b") },
      ]);
    }
    expect(slices(api)).toEqual(["nftables-exporter-fw-a", "nftables-exporter-fw-b", "node-exporter-fw-a", "node-exporter-fw-b"]);
    expect(api.get(`${SLICES}/node-exporter-fw-b`)).toMatchObject({
      metadata: { labels: { "kubernetes.io/service-name": "node-exporter", "endpointslice.kubernetes.io/managed-by": "firewall-controller", "firewall.metal-stack.io/name": "fw-b" } },
      endpoints: [{ addresses: [B_IP], targetRef: ref("fw-b") }],
    });

    api.reset();
    for (let round = 0; round < 3; round++) {
      for (const [ip, fw] of [[A_IP, a], [B_IP, b]] as const) {
        expect(await reconcileExporterServices(api, ip, fw)).toEqual({ created: [], updated: [], deleted: [], problems: [] });
      }
    }
    expect(writes(api)).toEqual({ POST: 0, PUT: 0, DELETE: 0 });
  });

  test("the order does not matter: b first, then a, converges to the same objects", async () => {
    const api = new FakeClusterApi();
    const { a, b } = pair();
    await reconcileExporterServices(api, B_IP, b);
    await reconcileExporterServices(api, A_IP, a);
    expect(addresses(api)).toEqual([
      { ip: A_IP, targetRef: ref("fw-a") },
      { ip: B_IP, targetRef: ref("fw-b") },
    ]);
    api.reset();
    await reconcileExporterServices(api, B_IP, b);
    await reconcileExporterServices(api, A_IP, a);
    expect(api.writes()).toEqual([]);
  });

  test("a firewall that changes its address corrects only its own, keeping the peer's", async () => {
    const api = new FakeClusterApi();
    const { a, b } = pair();
    await reconcileExporterServices(api, A_IP, a);
    await reconcileExporterServices(api, B_IP, b);
    const r = await reconcileExporterServices(api, "10.0.0.9", a);
    expect(r.updated).toEqual(["Endpoints firewall/nftables-exporter", "EndpointSlice firewall/nftables-exporter-fw-a", "Endpoints firewall/node-exporter", "EndpointSlice firewall/node-exporter-fw-a"]);
    expect(addresses(api)).toEqual([
      { ip: B_IP, targetRef: ref("fw-b") },
      { ip: "10.0.0.9", targetRef: ref("fw-a") },
    ]);
    expect(api.get(`${SLICES}/nftables-exporter-fw-b`)?.endpoints).toEqual([{ addresses: [B_IP], conditions: { ready: true }, targetRef: ref("fw-b") }]);
    api.reset();
    expect((await reconcileExporterServices(api, B_IP, b)).updated).toEqual([]);
    expect(api.writes()).toEqual([]);
  });

  test("a firewall no longer live loses its address and its slices at the peer's next run", async () => {
    const api = new FakeClusterApi();
    const { live, a, b } = pair();
    await reconcileExporterServices(api, A_IP, a);
    await reconcileExporterServices(api, B_IP, b);
    live.delete("fw-b");
    api.reset();
    const r = await reconcileExporterServices(api, A_IP, a);
    expect(r).toEqual({
      created: [],
      updated: ["Endpoints firewall/nftables-exporter", "Endpoints firewall/node-exporter"],
      deleted: ["EndpointSlice firewall/nftables-exporter-fw-b", "EndpointSlice firewall/node-exporter-fw-b"],
      problems: [],
    });
    expect(addresses(api)).toEqual([{ ip: A_IP, targetRef: ref("fw-a") }]);
    expect(slices(api)).toEqual(["nftables-exporter-fw-a", "node-exporter-fw-a"]);
    api.reset();
    expect(await reconcileExporterServices(api, A_IP, a)).toEqual({ created: [], updated: [], deleted: [], problems: [] });
    expect(api.writes()).toEqual([]);
  });

  test("a live peer's slice is never deleted, nor a slice of another Service or manager", async () => {
    const api = new FakeClusterApi();
    const { a, b } = pair();
    await reconcileExporterServices(api, B_IP, b);
    const foreign = (name: string, labels: Record<string, string>) =>
      api.put(`${SLICES}/${name}`, { apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice", metadata: { name, namespace: "firewall", labels }, addressType: "IPv4", endpoints: [], ports: [] });
    foreign("nftables-exporter-mirrored", { "kubernetes.io/service-name": "nftables-exporter", "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io" });
    foreign("droptailer-fw-gone", { "kubernetes.io/service-name": "droptailer", "endpointslice.kubernetes.io/managed-by": "firewall-controller", "firewall.metal-stack.io/name": "fw-gone" });
    const r = await reconcileExporterServices(api, A_IP, a);
    expect(r.deleted).toEqual([]);
    expect(api.count("DELETE")).toBe(0);
    expect(slices(api)).toEqual(["droptailer-fw-gone", "nftables-exporter-fw-a", "nftables-exporter-fw-b", "nftables-exporter-mirrored", "node-exporter-fw-a", "node-exporter-fw-b"]);
  });

  test("a slice left over from a single-firewall version (no firewall named) is deleted", async () => {
    const api = new FakeClusterApi();
    const legacy = `${SLICES}/nftables-exporter-firewall-controller`;
    api.put(legacy, {
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: { name: "nftables-exporter-firewall-controller", namespace: "firewall", labels: { "kubernetes.io/service-name": "nftables-exporter", "endpointslice.kubernetes.io/managed-by": "firewall-controller" } },
      addressType: "IPv4",
      endpoints: [{ addresses: [B_IP], conditions: { ready: true } }],
      ports: [{ name: "metrics", port: 9630, protocol: "TCP" }],
    });
    const r = await reconcileExporterServices(api, A_IP, ONE);
    expect(r.deleted).toEqual(["EndpointSlice firewall/nftables-exporter-firewall-controller"]);
    expect(api.get(legacy)).toBeUndefined();
  });

  test("addresses without a targetRef (single-firewall leftovers, hand edits) and of Firewalls gone are dropped", async () => {
    const api = new FakeClusterApi();
    const { a, b } = pair();
    await reconcileExporterServices(api, A_IP, a);
    await reconcileExporterServices(api, B_IP, b);
    edit(api, EP, (o) => {
      o.subsets = [
        { addresses: [{ ip: "10.0.0.7" }, { ip: B_IP, targetRef: ref("fw-b") }, { ip: "10.0.0.8", targetRef: ref("fw-old") }, { ip: "10.0.0.6", targetRef: { kind: "Pod", namespace: "firewall", name: "fw-b" } }], ports: [{ name: "metrics", port: 9630, protocol: "TCP" }] },
        { addresses: [{ ip: A_IP, targetRef: ref("fw-a") }], ports: [{ name: "metrics", port: 9630, protocol: "TCP" }] },
      ];
    });
    api.reset();
    const r = await reconcileExporterServices(api, A_IP, a);
    expect(r.updated).toEqual(["Endpoints firewall/nftables-exporter"]);
    expect(api.get(EP)?.subsets).toEqual([
      {
        addresses: [
          { ip: A_IP, targetRef: ref("fw-a") },
          { ip: B_IP, targetRef: ref("fw-b") },
        ],
        ports: [{ name: "metrics", port: 9630, protocol: "TCP" }],
      },
    ]);
    api.reset();
    expect((await reconcileExporterServices(api, B_IP, b)).updated).toEqual([]);
    expect(api.writes()).toEqual([]);
  });

  test("the single-firewall case: an Endpoints object with only an untargeted address is taken over", async () => {
    const api = await reconciled();
    edit(api, EP, (o) => {
      o.subsets = [{ addresses: [{ ip: IP }], ports: [{ name: "metrics", port: 9630, protocol: "TCP" }] }];
    });
    const r = await reconcileExporterServices(api, IP, ONE);
    expect(r).toEqual({ created: [], updated: ["Endpoints firewall/nftables-exporter"], deleted: [], problems: [] });
    expect(addresses(api)).toEqual([{ ip: IP, targetRef: ref("fw-a") }]);
  });

  test("slice names and firewall labels stay valid for long Firewall names, and stable", () => {
    const long = `fw-${"a".repeat(120)}.${"b".repeat(120)}`;
    const name = endpointSliceName("nftables-exporter", long);
    expect(name.length).toBeLessThanOrEqual(253);
    expect(name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/);
    expect(endpointSliceName("nftables-exporter", long)).toBe(name);
    expect(endpointSliceName("nftables-exporter", `${long}c`)).not.toBe(name);
    expect(endpointSliceName("node-exporter", "fw-b")).toBe("node-exporter-fw-b");
    const cutAtDot = endpointSliceName("node-exporter", `${"a".repeat(228)}.${"b".repeat(30)}`);
    expect(cutAtDot).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/);
    const label = firewallLabelValue(long);
    expect(label.length).toBeLessThanOrEqual(63);
    expect(label).toMatch(/^[a-z0-9]([-._a-z0-9]*[a-z0-9])?$/);
    expect(firewallLabelValue("fw-a")).toBe("fw-a");
  });

  test("a peer with a long name keeps its slice (found by targetRef, the label is shortened)", async () => {
    const api = new FakeClusterApi();
    const long = `fw-${"b".repeat(80)}`;
    const live = new Set(["fw-a", long]);
    const isLive = (n: string) => live.has(n);
    await reconcileExporterServices(api, B_IP, { name: long, isLive });
    expect((await reconcileExporterServices(api, A_IP, { name: "fw-a", isLive })).deleted).toEqual([]);
    expect(slices(api)).toContain(`node-exporter-${long}`);
    live.delete(long);
    expect((await reconcileExporterServices(api, A_IP, { name: "fw-a", isLive })).deleted).toEqual([`EndpointSlice firewall/nftables-exporter-${long}`, `EndpointSlice firewall/node-exporter-${long}`]);
  });
});

describe("reconcileExporterServices against the test API server", () => {
  let cluster: TestCluster;
  let api: ClusterApi;
  beforeAll(async () => {
    cluster = await startTestCluster({ namespaces: ["firewall"] });
    api = cluster.api;
  });
  afterAll(() => cluster.stop());

  test("creates, keeps, restores and replaces the exporter objects", async () => {
    expect((await reconcileExporterServices(api, IP, ONE)).created).toHaveLength(6);
    const svc = (await api.request("GET", SVC)).body as KubeObject & Record<string, any>;
    expect(svc.spec).toMatchObject({ clusterIP: "None", type: "ClusterIP", ports: [{ name: "metrics", port: 9630, protocol: "TCP" }] });
    expect(svc.spec.selector).toBeUndefined();

    // The server filled in its defaults: still nothing to write.
    cluster.server.resetRequests();
    expect(await reconcileExporterServices(api, IP, ONE)).toEqual({ created: [], updated: [], deleted: [], problems: [] });
    expect(cluster.server.requests.filter((r) => r.method !== "GET")).toEqual([]);

    expect((await api.request("DELETE", EP)).status).toBe(200);
    expect(await reconcileExporterServices(api, IP, ONE)).toEqual({ created: ["Endpoints firewall/nftables-exporter"], updated: [], deleted: [], problems: [] });

    expect((await api.request("DELETE", SVC)).status).toBe(200);
    const plain = { apiVersion: "v1", kind: "Service", metadata: { name: "nftables-exporter", namespace: "firewall" }, spec: { ports: [{ port: 9630 }], selector: { app: "x" } } };
    expect((await api.request("POST", EXPORTER_PATHS.services, { body: plain })).status).toBe(201);
    const r = await reconcileExporterServices(api, "fd00:66::1", ONE);
    expect(r.problems).toEqual([]);
    expect(r.updated).toContain("Service firewall/nftables-exporter");
    expect(r.updated).toContain("EndpointSlice firewall/nftables-exporter-fw-a");
    const replaced = (await api.request("GET", SVC)).body as KubeObject & Record<string, any>;
    expect(replaced.spec.clusterIP).toBe("None");
    expect(replaced.spec.selector).toBeUndefined();
    expect((await api.request("GET", SLICE)).body).toMatchObject({ addressType: "IPv6", endpoints: [{ addresses: ["fd00:66::1"] }] });
    expect(await reconcileExporterServices(api, "fd00:66::1", ONE)).toEqual({ created: [], updated: [], deleted: [], problems: [] });
  });

  test("an HA pair converges, writes nothing more, and a Firewall gone loses its address and slices", async () => {
    const live = new Set(["fw-a", "fw-b"]);
    const isLive = (n: string) => live.has(n);
    const a = { name: "fw-a", isLive };
    const b = { name: "fw-b", isLive };
    expect((await reconcileExporterServices(api, "10.0.0.1", a)).problems).toEqual([]);
    expect((await reconcileExporterServices(api, "10.0.0.2", b)).problems).toEqual([]);
    const ep = (await api.request("GET", EP)).body as KubeObject & Record<string, any>;
    expect(ep.subsets[0].addresses).toEqual([
      { ip: "10.0.0.1", targetRef: ref("fw-a") },
      { ip: "10.0.0.2", targetRef: ref("fw-b") },
    ]);
    const listed = await api.request("GET", EXPORTER_PATHS.endpointSlices, { query: { labelSelector: "kubernetes.io/service-name=node-exporter" } });
    expect((listed.body as { items: KubeObject[] }).items.map((o) => o.metadata.name).sort()).toEqual(["node-exporter-fw-a", "node-exporter-fw-b"]);

    cluster.server.resetRequests();
    for (let round = 0; round < 2; round++) {
      expect(await reconcileExporterServices(api, "10.0.0.1", a)).toEqual({ created: [], updated: [], deleted: [], problems: [] });
      expect(await reconcileExporterServices(api, "10.0.0.2", b)).toEqual({ created: [], updated: [], deleted: [], problems: [] });
    }
    expect(cluster.server.requests.filter((r) => r.method !== "GET")).toEqual([]);

    live.delete("fw-b");
    const r = await reconcileExporterServices(api, "10.0.0.1", a);
    expect(r.deleted).toEqual(["EndpointSlice firewall/nftables-exporter-fw-b", "EndpointSlice firewall/node-exporter-fw-b"]);
    expect(((await api.request("GET", EP)).body as KubeObject & Record<string, any>).subsets[0].addresses).toEqual([{ ip: "10.0.0.1", targetRef: ref("fw-a") }]);
    expect((await api.request("GET", `${EXPORTER_PATHS.endpointSlices}/node-exporter-fw-b`)).status).toBe(404);
  });
});
