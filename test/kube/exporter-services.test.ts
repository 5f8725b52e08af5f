import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { KubeConfig } from "@kubernetes/client-node";
import { FirewallError } from "../../lib/errors.ts";
import { type ClusterApi, clusterApi, type KubeObject } from "../../lib/kube/api.ts";
import {
  desiredExporterObjects,
  EXPORTER_NAMES,
  EXPORTER_PATHS,
  exporterObjectPath,
  isExporterObject,
  reconcileExporterServices,
} from "../../lib/kube/exporter-services.ts";
import { join } from "node:path";
import { TestApiServer } from "../apiserver/server.ts";
import { ROOT } from "../cli-binary.ts";
import { FakeClusterApi, loadRbac, rbacAllows } from "./fake-api.ts";

const IP = "10.3.164.1";
const SVC = `${EXPORTER_PATHS.services}/nftables-exporter`;
const EP = `${EXPORTER_PATHS.endpoints}/nftables-exporter`;
const SLICE = `${EXPORTER_PATHS.endpointSlices}/nftables-exporter-firewall-controller`;

async function reconciled(ip = IP): Promise<FakeClusterApi> {
  const api = new FakeClusterApi();
  const r = await reconcileExporterServices(api, ip);
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
    const objects = desiredExporterObjects(IP);
    expect(objects.map((o) => `${o.kind} ${o.metadata.namespace}/${o.metadata.name}`)).toEqual([
      "Service firewall/nftables-exporter",
      "Endpoints firewall/nftables-exporter",
      "EndpointSlice firewall/nftables-exporter-firewall-controller",
      "Service firewall/node-exporter",
      "Endpoints firewall/node-exporter",
      "EndpointSlice firewall/node-exporter-firewall-controller",
    ]);
    const [svc, ep, slice] = objects;
    expect(svc).toEqual({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "nftables-exporter", namespace: "firewall", labels: { "app.kubernetes.io/managed-by": "firewall-controller" } },
      spec: { type: "ClusterIP", clusterIP: "None", ports: [{ name: "metrics", port: 9630, protocol: "TCP", targetPort: 9630 }] },
    });
    expect(ep?.subsets).toEqual([{ addresses: [{ ip: IP }], ports: [{ name: "metrics", port: 9630, protocol: "TCP" }] }]);
    expect(ep?.metadata.labels).toEqual({ "app.kubernetes.io/managed-by": "firewall-controller", "endpointslice.kubernetes.io/skip-mirror": "true" });
    expect(slice).toEqual({
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: {
        name: "nftables-exporter-firewall-controller",
        namespace: "firewall",
        labels: {
          "app.kubernetes.io/managed-by": "firewall-controller",
          "kubernetes.io/service-name": "nftables-exporter",
          "endpointslice.kubernetes.io/managed-by": "firewall-controller",
        },
      },
      addressType: "IPv4",
      endpoints: [{ addresses: [IP], conditions: { ready: true } }],
      ports: [{ name: "metrics", port: 9630, protocol: "TCP" }],
    });
    expect(objects[3]?.spec).toMatchObject({ ports: [{ port: 9100 }] });
  });

  test("an IPv6 service IP gives IPv6 EndpointSlices and is written in canonical form", () => {
    const objects = desiredExporterObjects("2001:DB8:0:0::1");
    const slice = objects[2] as KubeObject & { addressType: string; endpoints: { addresses: string[] }[] };
    expect(slice.addressType).toBe("IPv6");
    expect(slice.endpoints[0]?.addresses).toEqual(["2001:db8::1"]);
    expect((objects[1]?.subsets as { addresses: { ip: string }[] }[])[0]?.addresses).toEqual([{ ip: "2001:db8::1" }]);
  });

  test("a service IP that is not an address is refused, naming the flag", () => {
    expect(() => desiredExporterObjects("10.3.164")).toThrow(FirewallError);
    expect(() => desiredExporterObjects("10.3.164")).toThrow('--service-ip: "10.3.164" is not an IPv4 or IPv6 address');
  });

  test("paths and the ownership test agree with the objects", () => {
    const objects = desiredExporterObjects(IP);
    expect(objects.map(exporterObjectPath).slice(0, 3)).toEqual([SVC, EP, SLICE]);
    expect(objects.every((o) => isExporterObject(o))).toBe(true);
    expect(EXPORTER_NAMES).toEqual({
      services: ["nftables-exporter", "node-exporter"],
      endpoints: ["nftables-exporter", "node-exporter"],
      endpointSlices: ["nftables-exporter-firewall-controller", "node-exporter-firewall-controller"],
    });
    expect(isExporterObject({ kind: "Service", metadata: { name: "nftables-exporter", namespace: "default" } })).toBe(false);
    expect(isExporterObject({ kind: "Service", metadata: { name: "droptailer", namespace: "firewall" } })).toBe(false);
    expect(isExporterObject({ kind: "EndpointSlice", metadata: { name: "nftables-exporter-abcde", namespace: "firewall" } })).toBe(false);
    expect(isExporterObject({ kind: "Endpoints", metadata: { name: "nftables-exporter-firewall-controller", namespace: "firewall" } })).toBe(false);
    // List items carry no kind; the watcher knows it from the collection.
    expect(isExporterObject({ metadata: { name: "node-exporter-firewall-controller", namespace: "firewall" } }, "EndpointSlice")).toBe(true);
    expect(isExporterObject({ metadata: { name: "node-exporter", namespace: "firewall" } })).toBe(false);
    expect(isExporterObject({ metadata: { name: "toString", namespace: "firewall" } }, "toString")).toBe(false);
  });
});

describe("reconcileExporterServices", () => {
  test("missing objects are all created", async () => {
    const api = new FakeClusterApi();
    const r = await reconcileExporterServices(api, IP);
    expect(r.created).toEqual([
      "Service firewall/nftables-exporter",
      "Endpoints firewall/nftables-exporter",
      "EndpointSlice firewall/nftables-exporter-firewall-controller",
      "Service firewall/node-exporter",
      "Endpoints firewall/node-exporter",
      "EndpointSlice firewall/node-exporter-firewall-controller",
    ]);
    expect(r.updated).toEqual([]);
    expect(r.problems).toEqual([]);
    expect(api.count("POST")).toBe(6);
    expect(api.get(SVC)?.spec).toMatchObject({ clusterIP: "None", type: "ClusterIP" });
  });

  test("a second reconcile changes nothing, although the server filled in defaults", async () => {
    const api = await reconciled();
    const r = await reconcileExporterServices(api, IP);
    expect(r).toEqual({ created: [], updated: [], problems: [] });
    expect(api.writes()).toEqual([]);
    expect(api.count("GET")).toBe(6);
  });

  test("a deleted Endpoints object is recreated", async () => {
    const api = await reconciled();
    api.objects.delete(EP);
    const r = await reconcileExporterServices(api, IP);
    expect(r).toEqual({ created: ["Endpoints firewall/nftables-exporter"], updated: [], problems: [] });
    expect(api.get(EP)?.subsets).toEqual(desiredExporterObjects(IP)[1]?.subsets);
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
    const r = await reconcileExporterServices(api, IP);
    expect(r).toEqual({ created: [], updated: ["Service firewall/nftables-exporter"], problems: [] });
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
    const r = await reconcileExporterServices(api, IP);
    expect(r.updated).toEqual(["Service firewall/nftables-exporter"]);
    expect(api.get(SVC)?.spec).not.toHaveProperty("selector");
  });

  test("a removed managed-by label is put back", async () => {
    const api = await reconciled();
    edit(api, SLICE, (o) => {
      o.metadata.labels = { "kubernetes.io/service-name": "nftables-exporter" };
    });
    const r = await reconcileExporterServices(api, IP);
    expect(r.updated).toEqual(["EndpointSlice firewall/nftables-exporter-firewall-controller"]);
    expect(api.get(SLICE)?.metadata.labels).toMatchObject({ "endpointslice.kubernetes.io/managed-by": "firewall-controller" });
  });

  test("a Service replaced by one with a cluster IP is deleted and recreated headless", async () => {
    const api = await reconciled();
    const oldUid = api.get(SVC)?.metadata.uid;
    api.objects.delete(SVC);
    api.put(SVC, { apiVersion: "v1", kind: "Service", metadata: { name: "nftables-exporter", namespace: "firewall" }, spec: { type: "ClusterIP", clusterIP: "10.96.0.77", ports: [{ port: 9630 }] } });
    const r = await reconcileExporterServices(api, IP);
    expect(r).toEqual({ created: [], updated: ["Service firewall/nftables-exporter"], problems: [] });
    expect(api.writes().map((w) => `${w.method} ${w.path}`)).toEqual([`DELETE ${SVC}`, `POST ${EXPORTER_PATHS.services}`]);
    const svc = api.get(SVC) as KubeObject & Record<string, any>;
    expect(svc.spec.clusterIP).toBe("None");
    expect(svc.metadata.uid).not.toBe(oldUid);
    expect((await reconcileExporterServices(api, IP)).updated).toEqual([]);
  });

  test("a changed service IP of the same family updates Endpoints and EndpointSlices in place", async () => {
    const api = await reconciled();
    const r = await reconcileExporterServices(api, "10.3.164.2");
    expect(r.updated).toEqual([
      "Endpoints firewall/nftables-exporter",
      "EndpointSlice firewall/nftables-exporter-firewall-controller",
      "Endpoints firewall/node-exporter",
      "EndpointSlice firewall/node-exporter-firewall-controller",
    ]);
    expect(api.writes().every((w) => w.method === "PUT")).toBe(true);
    expect(api.get(SLICE)?.endpoints).toEqual([{ addresses: ["10.3.164.2"], conditions: { ready: true } }]);
  });

  test("a service IP of the other family replaces the EndpointSlices (addressType is immutable)", async () => {
    const api = await reconciled();
    const r = await reconcileExporterServices(api, "fd00:66::1");
    expect(r.problems).toEqual([]);
    expect(api.writes().filter((w) => w.path.startsWith(EXPORTER_PATHS.endpointSlices)).map((w) => `${w.method} ${w.path.slice(EXPORTER_PATHS.endpointSlices.length) || (w.body as KubeObject).metadata.name}`)).toEqual([
      "DELETE /nftables-exporter-firewall-controller",
      "POST nftables-exporter-firewall-controller",
      "DELETE /node-exporter-firewall-controller",
      "POST node-exporter-firewall-controller",
    ]);
    expect(r.updated).toContain("EndpointSlice firewall/node-exporter-firewall-controller");
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
    const r = await reconcileExporterServices(api, IP);
    expect(r).toEqual({ created: [], updated: ["Endpoints firewall/nftables-exporter"], problems: [] });
    expect(api.requests.filter((q) => q.method === "PUT").map((q) => q.status)).toEqual([409, 200]);
  });

  test("a failing object is reported with status and message, and the others are still reconciled", async () => {
    const api = new FakeClusterApi();
    api.fail({ method: "POST", path: "/services", status: 403, message: 'services is forbidden: User "system:serviceaccount:firewall:firewall-controller" cannot create resource "services"' });
    const r = await reconcileExporterServices(api, IP);
    expect(r.problems).toEqual([
      'Service firewall/nftables-exporter: cannot create: HTTP 403: services is forbidden: User "system:serviceaccount:firewall:firewall-controller" cannot create resource "services"',
    ]);
    expect(r.created).toHaveLength(5);
    expect((await reconcileExporterServices(api, IP)).created).toEqual(["Service firewall/nftables-exporter"]);
  });

  test("an unreachable API server makes every object a problem, without throwing", async () => {
    const api = new FakeClusterApi();
    api.fail({ status: 0, times: 100 });
    const r = await reconcileExporterServices(api, IP);
    expect(r.created).toEqual([]);
    expect(r.problems).toHaveLength(6);
    expect(r.problems[0]).toBe("Service firewall/nftables-exporter: cannot read: API server unreachable: connect ECONNREFUSED 127.0.0.1:6443");
  });

  test("deploy/rbac.yaml allows every request of creating, correcting and recreating, and nothing beyond our objects", async () => {
    const rbac = loadRbac(join(ROOT, "deploy", "rbac.yaml"));
    const api = new FakeClusterApi();
    api.rbac = rbac;
    expect((await reconcileExporterServices(api, IP)).created).toHaveLength(6);
    edit(api, EP, (o) => {
      o.subsets = [];
    });
    api.objects.delete(SVC);
    api.put(SVC, { apiVersion: "v1", kind: "Service", metadata: { name: "nftables-exporter", namespace: "firewall" }, spec: { type: "ClusterIP", clusterIP: "10.96.0.77" } });
    const r = await reconcileExporterServices(api, "fd00:66::1");
    expect(r.problems).toEqual([]);
    expect(api.requests.filter((q) => q.status === 403)).toEqual([]);
    for (const path of Object.values(EXPORTER_PATHS)) {
      expect(rbacAllows(rbac, "GET", path, { watch: "true" })).toBe(true);
      expect(rbacAllows(rbac, "DELETE", `${path}/kube-dns`)).toBe(false);
      expect(rbacAllows(rbac, "PUT", `${path.replace("/firewall/", "/kube-system/")}/nftables-exporter`)).toBe(false);
    }
  });
});

describe("reconcileExporterServices against the test API server", () => {
  let server: TestApiServer;
  let api: ClusterApi;
  beforeAll(async () => {
    server = await new TestApiServer().start();
    const kc = new KubeConfig();
    kc.loadFromString(server.kubeconfig());
    api = clusterApi(kc);
    // deploy/rbac.yaml creates the namespace; the controller does not.
    expect((await api.request("POST", "/api/v1/namespaces", { body: { apiVersion: "v1", kind: "Namespace", metadata: { name: "firewall" } } })).status).toBe(201);
  });
  afterAll(() => server.stop());

  test("creates, keeps, restores and replaces the exporter objects", async () => {
    expect((await reconcileExporterServices(api, IP)).created).toHaveLength(6);
    const svc = (await api.request("GET", SVC)).body as KubeObject & Record<string, any>;
    expect(svc.spec).toMatchObject({ clusterIP: "None", type: "ClusterIP", ports: [{ name: "metrics", port: 9630, protocol: "TCP" }] });
    expect(svc.spec.selector).toBeUndefined();

    // The server filled in its defaults: still nothing to write.
    server.resetRequests();
    expect(await reconcileExporterServices(api, IP)).toEqual({ created: [], updated: [], problems: [] });
    expect(server.requests.filter((r) => r.verb !== "get")).toEqual([]);

    expect((await api.request("DELETE", EP)).status).toBe(200);
    expect(await reconcileExporterServices(api, IP)).toEqual({ created: ["Endpoints firewall/nftables-exporter"], updated: [], problems: [] });

    expect((await api.request("DELETE", SVC)).status).toBe(200);
    const plain = { apiVersion: "v1", kind: "Service", metadata: { name: "nftables-exporter", namespace: "firewall" }, spec: { ports: [{ port: 9630 }], selector: { app: "x" } } };
    expect((await api.request("POST", EXPORTER_PATHS.services, { body: plain })).status).toBe(201);
    const r = await reconcileExporterServices(api, "fd00:66::1");
    expect(r.problems).toEqual([]);
    expect(r.updated).toContain("Service firewall/nftables-exporter");
    expect(r.updated).toContain("EndpointSlice firewall/nftables-exporter-firewall-controller");
    const replaced = (await api.request("GET", SVC)).body as KubeObject & Record<string, any>;
    expect(replaced.spec.clusterIP).toBe("None");
    expect(replaced.spec.selector).toBeUndefined();
    expect((await api.request("GET", SLICE)).body).toMatchObject({ addressType: "IPv6", endpoints: [{ addresses: ["fd00:66::1"] }] });
    expect(await reconcileExporterServices(api, "fd00:66::1")).toEqual({ created: [], updated: [], problems: [] });
  });
});

