/**
 * Discovery and OpenAPI as clients read them: the legacy documents, the
 * aggregated v2 document, and kubectl working through either (with
 * aggregated discovery switched off it must fall back to the legacy ones).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { kubectlMissing, kubectlOk, ROOT, seed, startTestServer, tableRows, type TestServer } from "./harness.ts";

const skipKubectl = kubectlMissing("test/apiserver/discovery.test.ts");
const AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer();
  await seed(t);
});

afterAll(async () => {
  await t.close();
});

async function get(path: string, accept = "application/json"): Promise<{ status: number; type: string | null; body: Record<string, unknown> }> {
  const r = await fetch(`${t.server.url}${path}`, { headers: { Accept: accept } });
  return { status: r.status, type: r.headers.get("content-type"), body: (await r.json()) as Record<string, unknown> };
}

describe("legacy discovery", () => {
  test("/version claims Kubernetes 1.32", async () => {
    expect((await get("/version")).body).toMatchObject({ major: "1", minor: "32", gitVersion: "v1.32.0" });
  });

  test("/api/v1 lists the core resources with kinds, short names, verbs and status subresources", async () => {
    const { body } = await get("/api/v1");
    const resources = body.resources as { name: string; kind: string; namespaced: boolean; shortNames?: string[]; verbs: string[] }[];
    expect(resources.map((r) => r.name)).toEqual([
      "namespaces",
      "namespaces/status",
      "services",
      "services/status",
      "endpoints",
      "secrets",
      "configmaps",
      "pods",
      "pods/status",
      "events",
    ]);
    expect(resources.find((r) => r.name === "services")).toMatchObject({ kind: "Service", namespaced: true, shortNames: ["svc"] });
    expect(resources.find((r) => r.name === "namespaces")?.namespaced).toBe(false);
    expect(resources.find((r) => r.name === "services/status")?.verbs).toEqual(["get", "patch", "update"]);
  });

  test("/apis lists the built-in groups and every registered CRD group; /apis/<g>/<v> its resources", async () => {
    const groups = ((await get("/apis")).body.groups as { name: string; preferredVersion: { groupVersion: string } }[]).map((g) => g.name);
    expect(groups).toEqual(["apiextensions.k8s.io", "discovery.k8s.io", "events.k8s.io", "metal-stack.io"]);
    const { body } = await get("/apis/metal-stack.io/v1");
    expect(body).toMatchObject({ kind: "APIResourceList", groupVersion: "metal-stack.io/v1" });
    expect(body.resources).toContainEqual(
      expect.objectContaining({ name: "clusterwidenetworkpolicies", kind: "ClusterwideNetworkPolicy", namespaced: true, shortNames: ["cwnp"], singularName: "clusterwidenetworkpolicy" }),
    );
    expect(body.resources).toContainEqual(expect.objectContaining({ name: "firewalls/status", verbs: ["get", "patch", "update"] }));
    expect((await get("/apis/metal-stack.io")).body).toMatchObject({ kind: "APIGroup", preferredVersion: { groupVersion: "metal-stack.io/v1", version: "v1" } });
    expect((await get("/apis/nothing.example/v1")).status).toBe(404);
  });
});

describe("aggregated discovery", () => {
  test("/apis answers an apidiscovery.k8s.io/v2 APIGroupDiscoveryList with its media type when asked", async () => {
    const { type, body } = await get("/apis", AGGREGATED);
    expect(type).toBe("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList");
    expect(body).toMatchObject({ kind: "APIGroupDiscoveryList", apiVersion: "apidiscovery.k8s.io/v2" });
    const metal = (body.items as { metadata: { name: string }; versions: { version: string; resources: Record<string, unknown>[] }[] }[]).find(
      (i) => i.metadata.name === "metal-stack.io",
    );
    expect(metal?.versions[0]?.resources).toContainEqual(
      expect.objectContaining({
        resource: "firewalls",
        responseKind: { group: "metal-stack.io", version: "v1", kind: "Firewall" },
        scope: "Namespaced",
        subresources: [expect.objectContaining({ subresource: "status" })],
      }),
    );
  });

  test("/api answers the core group only", async () => {
    const { body } = await get("/api", AGGREGATED);
    expect((body.items as unknown[]).length).toBe(1);
  });
});

describe("OpenAPI v3", () => {
  test("the index names one document per group-version; a document declares fieldValidation on PATCH per kind", async () => {
    const index = (await get("/openapi/v3")).body.paths as Record<string, { serverRelativeURL: string }>;
    expect(Object.keys(index)).toContain("apis/metal-stack.io/v1");
    const doc = (await get(index["apis/metal-stack.io/v1"]?.serverRelativeURL ?? "")).body as {
      paths: Record<string, { patch?: { parameters: { name: string }[]; "x-kubernetes-group-version-kind": unknown } }>;
      components: { schemas: Record<string, unknown> };
    };
    const patch = doc.paths["/apis/metal-stack.io/v1/namespaces/{namespace}/firewalls/{name}"]?.patch;
    expect(patch?.["x-kubernetes-group-version-kind"]).toEqual({ group: "metal-stack.io", version: "v1", kind: "Firewall" });
    expect(patch?.parameters.map((p) => p.name)).toContain("fieldValidation");
    expect(Object.keys(doc.components.schemas)).toEqual(["io.metal-stack.v1.ClusterwideNetworkPolicy", "io.metal-stack.v1.Firewall"]);
  });
});

describe.skipIf(skipKubectl)("kubectl without aggregated discovery", () => {
  test("kubectl falls back to the legacy documents: apply, short names and printer columns still work", async () => {
    const legacy = await startTestServer({ aggregatedDiscovery: false });
    try {
      await kubectlOk(legacy, ["apply", "-f", join(ROOT, "crds")]);
      await kubectlOk(legacy, ["create", "namespace", "firewall"]);
      await kubectlOk(legacy, ["apply", "-f", join(ROOT, "examples", "policies.yaml")]);
      const rows = tableRows(await kubectlOk(legacy, ["get", "cwnp", "-n", "firewall"]));
      expect(rows[0]).toEqual(["NAME", "STATE", "MESSAGE", "AGE"]);
      expect(rows).toHaveLength(6);
      expect(legacy.server.countRequests({ path: "/apis/metal-stack.io/v1" })).toBeGreaterThan(0);
    } finally {
      await legacy.close();
    }
  });
});
