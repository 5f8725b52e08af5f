/**
 * The test API server with a real {@link ClusterApi} on it, for integration
 * tests of lib/kube: one setup instead of one per file.
 *
 * @example
 * ```ts
 * import { startTestCluster } from "./test-cluster.ts";
 * const cluster = await startTestCluster({ namespaces: ["firewall"] });
 * await cluster.api.request("GET", "/api/v1/namespaces");
 * await cluster.stop();
 * ```
 * @module
 */
import { KubeConfig } from "@kubernetes/client-node";
import { type ClusterApi, clusterApi } from "../../lib/kube/api.ts";
import { TestApiServer } from "../apiserver/server.ts";

export interface TestCluster {
  readonly server: TestApiServer;
  readonly api: ClusterApi;
  stop(): Promise<void>;
}

/** Starts a server on a random port; `namespaces` are created first (deploy/rbac.yaml creates `firewall`, the controller does not). */
export async function startTestCluster(options: { namespaces?: readonly string[] } = {}): Promise<TestCluster> {
  const server = await new TestApiServer().start();
  const kc = new KubeConfig();
  kc.loadFromString(server.kubeconfig());
  const api = clusterApi(kc);
  for (const name of options.namespaces ?? []) {
    const r = await api.request("POST", "/api/v1/namespaces", { body: { apiVersion: "v1", kind: "Namespace", metadata: { name } } });
    if (r.status !== 201) throw new Error(`creating namespace ${name}: HTTP ${r.status}`);
  }
  return { server, api, stop: () => server.stop() };
}
