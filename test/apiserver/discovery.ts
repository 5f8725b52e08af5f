/**
 * API discovery: `/version`, the legacy documents (`/api`, `/api/v1`,
 * `/apis`, `/apis/<group>`, `/apis/<group>/<version>`) and the aggregated
 * discovery documents (`apidiscovery.k8s.io/v2 APIGroupDiscoveryList`) that
 * kubectl 1.32 asks `/api` and `/apis` for first; with them it needs no
 * per-group-version round trips.
 *
 * @example
 * ```ts
 * import { Registry } from "./registry.ts";
 * import { resourceList } from "./discovery.ts";
 * const list = resourceList(new Registry(), "", "v1");
 * console.log(list.groupVersion); // v1
 * ```
 * @module
 */
import type { Registry } from "./registry.ts";
import { groupVersion, type JsonMap, type ResourceType } from "./types.ts";

/** The Kubernetes version this server claims (kubectl's version-skew dispatcher picks its binary by it). */
export const KUBERNETES_VERSION = { major: "1", minor: "32", gitVersion: "v1.32.0" } as const;

const VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
const STATUS_VERBS = ["get", "patch", "update"];

/** Media type of the aggregated discovery document. */
export const AGGREGATED_DISCOVERY_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/** True when the Accept header lists aggregated discovery v2 (clients list it first and fall back to plain JSON). */
export function wantsAggregatedDiscovery(accept: string | undefined): boolean {
  if (!accept) return false;
  return accept.split(",").some((m) => /as=APIGroupDiscoveryList/.test(m) && /g=apidiscovery\.k8s\.io/.test(m) && /(^|;)\s*v=v2\s*(;|$)/.test(m));
}

/** `GET /version`. */
export function versionInfo(): JsonMap {
  return {
    ...KUBERNETES_VERSION,
    gitCommit: "0000000000000000000000000000000000000000",
    gitTreeState: "clean",
    buildDate: "2025-01-01T00:00:00Z",
    goVersion: "go1.23.4",
    compiler: "gc",
    platform: "linux/amd64",
  };
}

/** `GET /api`: the core group's versions. */
export function apiVersions(serverAddress: string): JsonMap {
  return { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress }] };
}

function apiResources(t: ResourceType): JsonMap[] {
  const main: JsonMap = { name: t.plural, singularName: t.singular, namespaced: t.namespaced, kind: t.kind, verbs: VERBS };
  if (t.shortNames.length > 0) main.shortNames = [...t.shortNames];
  if (t.categories.length > 0) main.categories = [...t.categories];
  const out = [main];
  if (t.statusSubresource) out.push({ name: `${t.plural}/status`, singularName: "", namespaced: t.namespaced, kind: t.kind, verbs: STATUS_VERBS });
  return out;
}

/** `GET /api/v1` or `GET /apis/<group>/<version>`: an APIResourceList. */
export function resourceList(registry: Registry, group: string, version: string): JsonMap {
  return {
    kind: "APIResourceList",
    apiVersion: "v1",
    groupVersion: groupVersion({ group, version }),
    resources: registry.ofGroupVersion(group, version).flatMap(apiResources),
  };
}

function apiGroup(group: string, versions: readonly string[]): JsonMap {
  const gvs = versions.map((v) => ({ groupVersion: `${group}/${v}`, version: v }));
  return { name: group, versions: gvs, preferredVersion: gvs[0] };
}

/** `GET /apis`: every named group. */
export function groupList(registry: Registry): JsonMap {
  return {
    kind: "APIGroupList",
    apiVersion: "v1",
    groups: registry
      .groups()
      .filter((g) => g.group !== "")
      .map((g) => apiGroup(g.group, g.versions)),
  };
}

/** `GET /apis/<group>`, or undefined when the group is not served. */
export function groupInfo(registry: Registry, group: string): JsonMap | undefined {
  const g = registry.groups().find((x) => x.group === group && group !== "");
  return g ? { kind: "APIGroup", apiVersion: "v1", ...apiGroup(g.group, g.versions) } : undefined;
}

function discoveryResource(t: ResourceType): JsonMap {
  const kind = { group: t.group, version: t.version, kind: t.kind };
  const r: JsonMap = {
    resource: t.plural,
    responseKind: kind,
    scope: t.namespaced ? "Namespaced" : "Cluster",
    singularResource: t.singular,
    verbs: VERBS,
  };
  if (t.shortNames.length > 0) r.shortNames = [...t.shortNames];
  if (t.categories.length > 0) r.categories = [...t.categories];
  if (t.statusSubresource) r.subresources = [{ subresource: "status", responseKind: kind, verbs: STATUS_VERBS }];
  return r;
}

/**
 * The aggregated discovery document: for `/api` (`legacy`) the core group only,
 * for `/apis` every named group.
 */
export function aggregatedDiscovery(registry: Registry, legacy: boolean): JsonMap {
  const groups = registry.groups().filter((g) => (g.group === "") === legacy);
  return {
    kind: "APIGroupDiscoveryList",
    apiVersion: "apidiscovery.k8s.io/v2",
    metadata: {},
    items: groups.map((g) => ({
      metadata: g.group === "" ? {} : { name: g.group },
      versions: g.versions.map((v) => ({
        version: v,
        resources: registry.ofGroupVersion(g.group, v).map(discoveryResource),
        freshness: "Current",
      })),
    })),
  };
}
