/**
 * The real kubectl (1.32) against the test API server, with the repository's
 * CRDs and examples: apply, get (server-side Tables with CRD printer
 * columns), describe with Events, delete. The tests run in order on one
 * server, each building on the state the previous ones left.
 */
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { kubectl, kubectlMissing, kubectlOk, post, ROOT, startTestServer, tableRows, tempFile, type TestServer } from "./harness.ts";

const skip = kubectlMissing("test/apiserver/kubectl.test.ts");
const CWNP = { group: "metal-stack.io", version: "v1", namespace: "firewall", plural: "clusterwidenetworkpolicies" } as const;
const merge = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

let t: TestServer;

beforeAll(async () => {
  if (!skip) t = await startTestServer();
});

afterAll(async () => {
  await t?.close();
});

/** `kubectl get -o json` of one object. */
async function getJson(args: string[]): Promise<{ metadata: { generation?: number; resourceVersion: string; uid: string }; spec?: unknown; status?: unknown }> {
  return JSON.parse(await kubectlOk(t, ["get", ...args, "-o", "json"]));
}

describe.skipIf(skip)("kubectl against the test API server", () => {
  test("kubectl apply -f crds/ registers the CRDs (Established) and kubectl get crd lists them", async () => {
    const out = await kubectlOk(t, ["apply", "-f", join(ROOT, "crds")]);
    expect(out).toContain("customresourcedefinition.apiextensions.k8s.io/firewalls.metal-stack.io created");
    expect(out).toContain("customresourcedefinition.apiextensions.k8s.io/clusterwidenetworkpolicies.metal-stack.io created");
    const rows = tableRows(await kubectlOk(t, ["get", "crd"]));
    expect(rows[0]).toEqual(["NAME", "CREATED AT"]);
    expect(rows.slice(1).map((r) => r[0])).toEqual(["clusterwidenetworkpolicies.metal-stack.io", "firewalls.metal-stack.io"]);
    await kubectlOk(t, ["wait", "--for", "condition=Established", "--timeout", "5s", "crd/firewalls.metal-stack.io"]);
  });

  test("kubectl create namespace works (its body is protobuf)", async () => {
    for (const ns of ["firewall", "shop", "voip"]) expect(await kubectlOk(t, ["create", "namespace", ns])).toBe(`namespace/${ns} created\n`);
    const rows = tableRows(await kubectlOk(t, ["get", "ns", "firewall"]));
    expect(rows[0]).toEqual(["NAME", "STATUS", "AGE"]);
    expect(rows[1]?.slice(0, 2)).toEqual(["firewall", "Active"]);
  });

  test("kubectl create secret, configmap and service work too (protobuf bodies of other kinds)", async () => {
    await kubectlOk(t, ["create", "secret", "generic", "droptailer-client", "-n", "firewall", "--from-literal=ca.crt=pem"]);
    await kubectlOk(t, ["create", "configmap", "settings", "-n", "firewall", "--from-literal=a=b"]);
    await kubectlOk(t, ["create", "service", "loadbalancer", "lb", "-n", "voip", "--tcp=5060:5060"]);
    const secret = JSON.parse(await kubectlOk(t, ["get", "secret", "-n", "firewall", "droptailer-client", "-o", "json"])) as { data: unknown; type: string };
    expect(secret).toMatchObject({ data: { "ca.crt": Buffer.from("pem").toString("base64") }, type: "Opaque" });
    expect(await kubectlOk(t, ["get", "cm", "-n", "firewall", "settings", "-o", "jsonpath={.data.a}"])).toBe("b");
    expect(await kubectlOk(t, ["get", "svc", "-n", "voip", "lb", "-o", "jsonpath={.spec.type} {.spec.ports[0].port} {.spec.ports[0].targetPort}"])).toBe("LoadBalancer 5060 5060");
    await kubectlOk(t, ["delete", "svc", "-n", "voip", "lb"]);
  });

  test("kubectl apply -f examples/ creates the firewall, the policies and the services", async () => {
    const out = await kubectlOk(t, ["apply", "-f", join(ROOT, "examples")]);
    for (const line of [
      "firewall.metal-stack.io/firewall created",
      "clusterwidenetworkpolicy.metal-stack.io/allow-dns created",
      "clusterwidenetworkpolicy.metal-stack.io/allow-ssh-from-admins created",
      "service/web created",
      "service/sip created",
      "service/postgres created",
    ]) {
      expect(out).toContain(line);
    }
  });

  test("kubectl get cwnp -n firewall lists the policies with the CRD's columns NAME STATE MESSAGE AGE", async () => {
    const rows = tableRows(await kubectlOk(t, ["get", "cwnp", "-n", "firewall"]));
    expect(rows[0]).toEqual(["NAME", "STATE", "MESSAGE", "AGE"]);
    expect(rows.slice(1).map((r) => r[0])).toEqual(["allow-app-backends", "allow-dns", "allow-https", "allow-monitoring", "allow-ssh-from-admins"]);
    // No status yet: State and Message are empty, Age is a duration like "2s".
    expect(rows[1]?.[1]).toMatch(/^\d+s$/);
  });

  test("a status written through the status subresource shows in kubectl get cwnp's State and Message columns", async () => {
    const custom = t.kubeConfig.makeApiClient(CustomObjectsApi);
    await custom.patchNamespacedCustomObjectStatus(
      { ...CWNP, name: "allow-https", body: { status: { state: "Invalid", message: "spec.egress[0].to[0].except[0]: 198.51.100.0/24 is not inside cidr", observedGeneration: 1 } } },
      merge,
    );
    await custom.patchNamespacedCustomObjectStatus({ ...CWNP, name: "allow-dns", body: { status: { state: "Ready", observedGeneration: 1 } } }, merge);
    const rows = tableRows(await kubectlOk(t, ["get", "cwnp", "-n", "firewall"]));
    const byName = new Map(rows.map((r) => [r[0], r]));
    expect(byName.get("allow-dns")?.[1]).toBe("Ready");
    expect(byName.get("allow-https")?.slice(1, 3)).toEqual(["Invalid", "spec.egress[0].to[0].except[0]: 198.51.100.0/24 is not inside cidr"]);
    const wide = await kubectlOk(t, ["get", "cwnp", "-n", "firewall", "allow-dns", "-o", "custom-columns=STATE:.status.state,GEN:.metadata.generation"]);
    expect(tableRows(wide)[1]).toEqual(["Ready", "1"]);
  });

  test("kubectl get firewall evaluates the printer columns, including the Ready condition filter and dates", async () => {
    const custom = t.kubeConfig.makeApiClient(CustomObjectsApi);
    const lastRun = new Date(Date.now() - 5 * 60_000).toISOString();
    await custom.patchNamespacedCustomObjectStatus(
      {
        group: "metal-stack.io",
        version: "v1",
        namespace: "firewall",
        plural: "firewalls",
        name: "firewall",
        body: {
          status: {
            message: "ruleset applied",
            lastRun,
            policies: 3,
            conditions: [
              { type: "RulesApplied", status: "False", reason: "Pending", message: "", lastTransitionTime: lastRun },
              { type: "Ready", status: "True", reason: "Reconciled", message: "ok", lastTransitionTime: lastRun },
            ],
            stats: { devices: { external: { in: 91696, out: 34600, total: 126296 }, internal: { in: 0, out: 0, total: 0 } } },
          },
        },
      },
      merge,
    );
    const rows = tableRows(await kubectlOk(t, ["get", "firewall", "-n", "firewall"]));
    expect(rows[0]).toEqual(["NAME", "INTERVAL", "INTERNALPREFIXES", "READY", "REASON", "POLICIES", "LAST RUN", "AGE"]);
    expect(rows[1]?.slice(0, 7)).toEqual(["firewall", "10s", '["10.0.0.0/8","172.17.0.0/16","192.0.2.0/24","fd00::/8"]', "True", "Reconciled", "3", "5m"]);
    // The wide view adds the message.
    const wide = tableRows(await kubectlOk(t, ["get", "firewall", "-n", "firewall", "-o", "wide"]));
    expect(wide[0]).toEqual(["NAME", "INTERVAL", "INTERNALPREFIXES", "READY", "REASON", "POLICIES", "MESSAGE", "LAST RUN", "AGE"]);
    expect(wide[1]?.[6]).toBe("ruleset applied");
  });

  test("kubectl describe firewall shows spec, status and the Events about it (core/v1 and events.k8s.io/v1)", async () => {
    const fw = await getJson(["firewall", "-n", "firewall", "firewall"]);
    const regarding = { apiVersion: "metal-stack.io/v1", kind: "Firewall", name: "firewall", namespace: "firewall", uid: fw.metadata.uid };
    await post(t, "/api/v1/namespaces/firewall/events", {
      metadata: { name: "firewall.applied" },
      involvedObject: regarding,
      reason: "RulesApplied",
      message: "nftables ruleset applied",
      type: "Normal",
      source: { component: "firewall-controller" },
      count: 1,
      firstTimestamp: new Date().toISOString(),
      lastTimestamp: new Date().toISOString(),
    });
    await post(t, "/apis/events.k8s.io/v1/namespaces/firewall/events", {
      metadata: { name: "firewall.rejected" },
      regarding,
      reason: "InvalidPolicy",
      note: "allow-https rejected",
      type: "Warning",
      action: "Validate",
      eventTime: new Date().toISOString().replace("Z", "000Z"),
      reportingController: "firewall-controller",
      reportingInstance: "fw-1",
    });
    // An event about another object must not show.
    await post(t, "/api/v1/namespaces/firewall/events", {
      metadata: { name: "other" },
      involvedObject: { ...regarding, name: "other", uid: "0" },
      reason: "Elsewhere",
      message: "not this one",
      type: "Normal",
    });
    const out = await kubectlOk(t, ["describe", "firewall", "-n", "firewall", "firewall"]);
    expect(out).toMatch(/^Name:\s+firewall$/m);
    expect(out).toMatch(/^Kind:\s+Firewall$/m);
    expect(out).toMatch(/^Spec:\n/m);
    expect(out).toMatch(/^\s+Interval:\s+10s$/m);
    expect(out).toMatch(/^Status:\n/m);
    expect(out).toMatch(/^\s+Message:\s+ruleset applied$/m);
    expect(out).toMatch(/^\s+Total:\s+126296$/m);
    expect(out).toMatch(/^Events:\n\s+Type\s+Reason\s+Age\s+From\s+Message$/m);
    expect(out).toMatch(/Normal\s+RulesApplied\s+\S+\s+firewall-controller\s+nftables ruleset applied/);
    expect(out).toMatch(/Warning\s+InvalidPolicy\s+\S+\s+firewall-controller\s+allow-https rejected/);
    expect(out).not.toContain("not this one");
  });

  test("kubectl get svc,ep -n firewall and kubectl get endpointslices show the exporter objects", async () => {
    const manifest = `
apiVersion: v1
kind: Service
metadata: {name: nftables-exporter, namespace: firewall}
spec:
  clusterIP: None
  ports: [{name: metrics, port: 9630, targetPort: 9630}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: nftables-exporter, namespace: firewall}
subsets: [{addresses: [{ip: 10.0.0.1}], ports: [{name: metrics, port: 9630}]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: nftables-exporter, namespace: firewall, labels: {kubernetes.io/service-name: nftables-exporter}}
addressType: IPv4
endpoints: [{addresses: [10.0.0.1]}]
ports: [{name: metrics, port: 9630}]
`;
    await kubectlOk(t, ["apply", "-f", tempFile(t, "exporter.yaml", manifest)]);
    const out = await kubectlOk(t, ["get", "svc,ep", "-n", "firewall"]);
    const rows = tableRows(out);
    expect(rows[0]).toEqual(["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]);
    expect(rows[1]?.slice(0, 5)).toEqual(["service/nftables-exporter", "ClusterIP", "None", "<none>", "9630/TCP"]);
    expect(rows[2]).toEqual(["NAME", "ENDPOINTS", "AGE"]);
    expect(rows[3]?.slice(0, 2)).toEqual(["endpoints/nftables-exporter", "10.0.0.1:9630"]);
    const lb = tableRows(await kubectlOk(t, ["get", "svc", "-n", "shop", "web"]));
    expect(lb[1]?.slice(1, 5)).toEqual(["LoadBalancer", "10.96.48.17", "<pending>", "80:30080/TCP,443:30443/TCP"]);
    const slices = tableRows(await kubectlOk(t, ["get", "endpointslices", "-A"]));
    expect(slices[0]).toEqual(["NAMESPACE", "NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]);
    expect(slices[1]?.slice(0, 5)).toEqual(["firewall", "nftables-exporter", "IPv4", "9630", "10.0.0.1"]);
  });

  test("kubectl describe svc shows ports, endpoints and the Service's events", async () => {
    const svc = await getJson(["svc", "-n", "firewall", "nftables-exporter"]);
    await post(t, "/api/v1/namespaces/firewall/events", {
      metadata: { name: "svc.corrected" },
      involvedObject: { apiVersion: "v1", kind: "Service", name: "nftables-exporter", namespace: "firewall", uid: svc.metadata.uid },
      reason: "Corrected",
      message: "service restored",
      type: "Normal",
      source: { component: "firewall-controller" },
    });
    const out = await kubectlOk(t, ["describe", "svc", "-n", "firewall", "nftables-exporter"]);
    expect(out).toMatch(/^Type:\s+ClusterIP$/m);
    expect(out).toMatch(/^Port:\s+metrics\s+9630\/TCP$/m);
    expect(out).toMatch(/^Endpoints:\s+10\.0\.0\.1:9630$/m);
    expect(out).toMatch(/Normal\s+Corrected\s+\S+\s+firewall-controller\s+service restored/);
  });

  test("kubectl get -o yaml and -o json return the stored objects", async () => {
    const yaml = await kubectlOk(t, ["get", "cwnp", "-n", "firewall", "allow-dns", "-o", "yaml"]);
    expect(yaml).toContain("kind: ClusterwideNetworkPolicy");
    expect(yaml).toContain("cidr: 198.51.100.53/32");
    const list = JSON.parse(await kubectlOk(t, ["get", "svc", "-A", "-o", "json"])) as { items: { metadata: { name: string } }[] };
    expect(list.items.map((i) => i.metadata.name).sort()).toEqual(["nftables-exporter", "postgres", "sip", "web"]);
  });

  test("re-applying a changed file patches: generation follows spec changes only, resourceVersion every change", async () => {
    const before = await getJson(["cwnp", "-n", "firewall", "allow-https"]);
    expect(before.metadata.generation).toBe(1);
    const unchanged = await kubectlOk(t, ["apply", "-f", join(ROOT, "examples", "policies.yaml")]);
    expect(unchanged).toContain("clusterwidenetworkpolicy.metal-stack.io/allow-dns unchanged");
    // allow-https omits `protocol`, which the CRD schema defaults: its atomic `ports` list differs from the
    // stored one, so kubectl sends a patch ("configured", as on a real cluster), which changes nothing.
    expect(unchanged).toContain("clusterwidenetworkpolicy.metal-stack.io/allow-https configured");
    expect((await getJson(["cwnp", "-n", "firewall", "allow-https"])).metadata.resourceVersion).toBe(before.metadata.resourceVersion);
    const changed = readFileSync(join(ROOT, "examples", "policies.yaml"), "utf8").replace("- port: 443", "- port: 8443");
    const out = await kubectlOk(t, ["apply", "-f", tempFile(t, "policies.yaml", changed)]);
    expect(out).toContain("clusterwidenetworkpolicy.metal-stack.io/allow-https configured");
    expect(out).toContain("clusterwidenetworkpolicy.metal-stack.io/allow-dns unchanged");
    const after = await getJson(["cwnp", "-n", "firewall", "allow-https"]);
    expect(after.metadata.generation).toBe(2);
    expect(Number(after.metadata.resourceVersion)).toBeGreaterThan(Number(before.metadata.resourceVersion));
    // The status written earlier survives the main-resource patch.
    expect(after.status).toMatchObject({ state: "Invalid" });
    await kubectlOk(t, ["label", "cwnp", "-n", "firewall", "allow-https", "team=net"]);
    const labelled = await getJson(["cwnp", "-n", "firewall", "allow-https"]);
    expect(labelled.metadata.generation).toBe(2);
    expect(Number(labelled.metadata.resourceVersion)).toBeGreaterThan(Number(after.metadata.resourceVersion));
  });

  test("re-applying a changed Service strategic-merges its ports", async () => {
    const changed = readFileSync(join(ROOT, "examples", "services.yaml"), "utf8").replace("port: 443\n      targetPort: 8443", "port: 8443\n      targetPort: 8443");
    const out = await kubectlOk(t, ["apply", "-f", tempFile(t, "services.yaml", changed)]);
    expect(out).toContain("service/web configured");
    const web = (await getJson(["svc", "-n", "shop", "web"])) as { spec?: { ports?: { port: number; nodePort?: number }[] } };
    expect(web.spec?.ports?.map((p) => p.port)).toEqual([80, 8443]);
  });

  test("kubectl delete cwnp removes the policy", async () => {
    expect(await kubectlOk(t, ["delete", "cwnp", "-n", "firewall", "allow-monitoring"])).toBe('clusterwidenetworkpolicy.metal-stack.io "allow-monitoring" deleted\n');
    const rows = tableRows(await kubectlOk(t, ["get", "cwnp", "-n", "firewall"]));
    expect(rows.map((r) => r[0])).not.toContain("allow-monitoring");
    const missing = await kubectl(t, ["get", "cwnp", "-n", "firewall", "allow-monitoring"]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('Error from server (NotFound): clusterwidenetworkpolicies.metal-stack.io "allow-monitoring" not found');
  });

  test("kubectl shows the server's errors: a missing namespace, an invalid name", async () => {
    const noNs = await kubectl(t, ["apply", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm, namespace: nowhere}\n");
    expect(noNs.stderr).toContain('namespaces "nowhere" not found');
    const bad = await kubectl(t, ["create", "namespace", "Bad_Name"]);
    expect(bad.stderr).toContain('The Namespace "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 label must consist of');
  });

  test("kubectl delete crd removes the type and its objects", async () => {
    await kubectlOk(t, ["delete", "crd", "clusterwidenetworkpolicies.metal-stack.io"]);
    const gone = await kubectl(t, ["get", "clusterwidenetworkpolicies.metal-stack.io", "-n", "firewall"]);
    expect(gone.code).not.toBe(0);
    expect(gone.stderr).toContain('the server doesn\'t have a resource type "clusterwidenetworkpolicies"');
    await kubectlOk(t, ["apply", "-f", join(ROOT, "crds")]);
    expect(await kubectlOk(t, ["get", "cwnp", "-n", "firewall"])).toBe("");
  });
});
