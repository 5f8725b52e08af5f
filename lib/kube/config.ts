/**
 * Where the API server is and how to authenticate (SPEC §5 `--kubeconfig`):
 * the given file, else `$KUBECONFIG`, else `~/.kube/config`, else the
 * in-cluster service account.
 *
 * @example
 * ```ts
 * import { loadKubeConfig } from "./config.ts";
 * const kc = loadKubeConfig("/etc/firewall-controller/kubeconfig");
 * console.log(kc.getCurrentCluster()?.server);
 * ```
 * @module
 */
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { FirewallError } from "../errors.ts";

export function loadKubeConfig(path: string | undefined, env: Record<string, string | undefined> = process.env): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (path) kc.loadFromFile(path);
    else if (env.KUBECONFIG) kc.loadFromDefault();
    else if (existsSync(join(homedir(), ".kube", "config"))) kc.loadFromDefault();
    // The client's own default would fall back to http://localhost:8080 silently; a firewall must not guess.
    else if (env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster();
    else throw new Error("none given: pass --kubeconfig, set $KUBECONFIG, or run in a cluster");
  } catch (e) {
    throw new FirewallError("api_failed", `cannot load the kubeconfig${path ? ` ${path}` : ""}: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!kc.getCurrentCluster()) {
    throw new FirewallError("api_failed", `no cluster to talk to: ${path ? `${path} has no current context` : "pass --kubeconfig, set $KUBECONFIG, or run in a cluster"}`);
  }
  return kc;
}
