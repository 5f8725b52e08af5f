/**
 * The Services that publish the firewall's metrics into the cluster
 * (SPEC §6): `nftables-exporter` (9630) and `node-exporter` (9100) in
 * namespace `firewall`, headless and without a selector, each with an
 * Endpoints object and an EndpointSlice pointing at `--service-ip`. The
 * firewall is no pod, so nothing else in the cluster would maintain them:
 * the controller creates them, corrects what others changed and recreates
 * what others deleted.
 *
 * @example
 * ```ts
 * import { reconcileExporterServices } from "./exporter-services.ts";
 * // const { created, updated, problems } = await reconcileExporterServices(api, "10.3.164.1");
 * ```
 * @module
 */
import { isDeepStrictEqual } from "node:util";
import * as v from "valibot";
import { parseAddress } from "../api/address.ts";
import { FirewallError } from "../errors.ts";
import type { ApiResponse, ClusterApi, KubeObject } from "./api.ts";
import { statusMessage } from "./api.ts";

/**
 * The namespace of the exporter Services.
 *
 * @example
 * ```ts
 * import { EXPORTER_NAMESPACE } from "./exporter-services.ts";
 * EXPORTER_NAMESPACE; // "firewall"
 * ```
 */
export const EXPORTER_NAMESPACE = "firewall";

/**
 * The value of `app.kubernetes.io/managed-by` and
 * `endpointslice.kubernetes.io/managed-by` on everything this module writes.
 *
 * @example
 * ```ts
 * import { MANAGED_BY } from "./exporter-services.ts";
 * MANAGED_BY; // "firewall-controller"
 * ```
 */
export const MANAGED_BY = "firewall-controller";

/**
 * The exporter Services, by name, with their port.
 *
 * @example
 * ```ts
 * import { EXPORTER_SERVICES } from "./exporter-services.ts";
 * EXPORTER_SERVICES.map((s) => `${s.name}:${s.port}`); // ["nftables-exporter:9630", "node-exporter:9100"]
 * ```
 */
export const EXPORTER_SERVICES: readonly { readonly name: string; readonly port: number }[] = [
  { name: "nftables-exporter", port: 9630 },
  { name: "node-exporter", port: 9100 },
];

/**
 * Collection paths of the three kinds, for watching them (all in {@link EXPORTER_NAMESPACE}).
 *
 * @example
 * ```ts
 * import { EXPORTER_PATHS } from "./exporter-services.ts";
 * EXPORTER_PATHS.endpointSlices; // "/apis/discovery.k8s.io/v1/namespaces/firewall/endpointslices"
 * ```
 */
export const EXPORTER_PATHS = {
  services: `/api/v1/namespaces/${EXPORTER_NAMESPACE}/services`,
  endpoints: `/api/v1/namespaces/${EXPORTER_NAMESPACE}/endpoints`,
  endpointSlices: `/apis/discovery.k8s.io/v1/namespaces/${EXPORTER_NAMESPACE}/endpointslices`,
} as const;

/**
 * The name of the EndpointSlice of an exporter Service.
 *
 * @example
 * ```ts
 * import { endpointSliceName } from "./exporter-services.ts";
 * endpointSliceName("node-exporter"); // "node-exporter-firewall-controller"
 * ```
 */
export const endpointSliceName = (service: string): string => `${service}-${MANAGED_BY}`;

/**
 * The names of our objects in each collection of {@link EXPORTER_PATHS}.
 *
 * @example
 * ```ts
 * import { EXPORTER_NAMES } from "./exporter-services.ts";
 * EXPORTER_NAMES.endpointSlices; // ["nftables-exporter-firewall-controller", "node-exporter-firewall-controller"]
 * ```
 */
export const EXPORTER_NAMES: { readonly [K in keyof typeof EXPORTER_PATHS]: readonly string[] } = {
  services: EXPORTER_SERVICES.map((s) => s.name),
  endpoints: EXPORTER_SERVICES.map((s) => s.name),
  endpointSlices: EXPORTER_SERVICES.map((s) => endpointSliceName(s.name)),
};

const COLLECTION_OF_KIND = { Service: "services", Endpoints: "endpoints", EndpointSlice: "endpointSlices" } as const;

/**
 * Whether a watched object is one of ours (by kind and name), so a watcher
 * can react to exactly these and ignore every other object in the namespace.
 * Items of a list response carry no `kind`: pass it then.
 *
 * @example
 * ```ts
 * import { isExporterObject } from "./exporter-services.ts";
 * isExporterObject({ kind: "Endpoints", metadata: { name: "node-exporter", namespace: "firewall" } }); // true
 * isExporterObject({ metadata: { name: "node-exporter-firewall-controller", namespace: "firewall" } }, "EndpointSlice"); // true
 * ```
 */
export function isExporterObject(o: KubeObject, kind: string | undefined = o.kind): boolean {
  if ((o.metadata.namespace ?? EXPORTER_NAMESPACE) !== EXPORTER_NAMESPACE) return false;
  const collection = Object.hasOwn(COLLECTION_OF_KIND, kind ?? "") ? COLLECTION_OF_KIND[kind as keyof typeof COLLECTION_OF_KIND] : undefined;
  return collection !== undefined && EXPORTER_NAMES[collection].includes(o.metadata.name);
}

/**
 * The API path of one object this module manages.
 *
 * @example
 * ```ts
 * import { exporterObjectPath } from "./exporter-services.ts";
 * exporterObjectPath({ kind: "Service", metadata: { name: "node-exporter" } }); // "/api/v1/namespaces/firewall/services/node-exporter"
 * ```
 */
export function exporterObjectPath(o: KubeObject): string {
  return `${collectionOf(o)}/${o.metadata.name}`;
}

function collectionOf(o: KubeObject): string {
  switch (o.kind) {
    case "Service":
      return EXPORTER_PATHS.services;
    case "Endpoints":
      return EXPORTER_PATHS.endpoints;
    case "EndpointSlice":
      return EXPORTER_PATHS.endpointSlices;
    default:
      throw new Error(`not an exporter object kind: ${String(o.kind)}`);
  }
}

const managedLabels = { "app.kubernetes.io/managed-by": MANAGED_BY };

/**
 * The objects that should exist, in creation order (per Service: Service,
 * Endpoints, EndpointSlice). Throws (`bad_flag`) when `serviceIp` is not an
 * IP address; an IPv6 address is written in its canonical form.
 *
 * @example
 * ```ts
 * import { desiredExporterObjects } from "./exporter-services.ts";
 * desiredExporterObjects("10.3.164.1").map((o) => `${o.kind}/${o.metadata.name}`);
 * // ["Service/nftables-exporter", "Endpoints/nftables-exporter", "EndpointSlice/nftables-exporter-firewall-controller", ...]
 * ```
 */
export function desiredExporterObjects(serviceIp: string): KubeObject[] {
  const ip = parseAddress(serviceIp);
  if (!ip.ok) throw new FirewallError("bad_flag", `--service-ip: ${ip.message}`);
  const address = ip.value.text;
  const metadata = (name: string, labels: Record<string, string>) => ({ name, namespace: EXPORTER_NAMESPACE, labels: { ...managedLabels, ...labels } });
  return EXPORTER_SERVICES.flatMap(({ name, port }): KubeObject[] => [
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: metadata(name, {}),
      spec: { type: "ClusterIP", clusterIP: "None", ports: [{ name: "metrics", port, protocol: "TCP", targetPort: port }] },
    },
    {
      apiVersion: "v1",
      kind: "Endpoints",
      // We publish an EndpointSlice ourselves; without skip-mirror the cluster's mirroring controller
      // would add a second slice for the same address, and Prometheus would scrape it twice.
      metadata: metadata(name, { "endpointslice.kubernetes.io/skip-mirror": "true" }),
      subsets: [{ addresses: [{ ip: address }], ports: [{ name: "metrics", port, protocol: "TCP" }] }],
    },
    {
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: metadata(endpointSliceName(name), { "kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": MANAGED_BY }),
      addressType: ip.value.family === 4 ? "IPv4" : "IPv6",
      endpoints: [{ addresses: [address], conditions: { ready: true } }],
      ports: [{ name: "metrics", port, protocol: "TCP" }],
    },
  ]);
}

/**
 * What {@link reconcileExporterServices} did, as `Kind namespace/name`; problems do not stop the other objects.
 *
 * @example
 * ```ts
 * import type { ExporterReconcileResult } from "./exporter-services.ts";
 * const r: ExporterReconcileResult = { created: ["Endpoints firewall/node-exporter"], updated: [], problems: [] };
 * ```
 */
export interface ExporterReconcileResult {
  created: string[];
  updated: string[];
  problems: string[];
}

/**
 * Makes the exporter objects in the cluster match {@link desiredExporterObjects}:
 * creates what is missing, corrects the fields we own (keeping everything
 * else), recreates what cannot be corrected in place (a Service that is no
 * longer headless, an EndpointSlice of the other address family; listed as
 * updated), and writes nothing when all is as it should be. Per-object
 * failures go to `problems`; the other objects are still reconciled.
 *
 * @example
 * ```ts
 * import { reconcileExporterServices } from "./exporter-services.ts";
 * // const r = await reconcileExporterServices(api, "10.3.164.1");
 * // r.problems.forEach((p) => log.warn(p));
 * ```
 */
export async function reconcileExporterServices(api: ClusterApi, serviceIp: string): Promise<ExporterReconcileResult> {
  const result: ExporterReconcileResult = { created: [], updated: [], problems: [] };
  for (const desired of desiredExporterObjects(serviceIp)) {
    const what = `${desired.kind} ${EXPORTER_NAMESPACE}/${desired.metadata.name}`;
    try {
      const outcome = await reconcileOne(api, desired);
      if (outcome !== "unchanged") result[outcome].push(what);
    } catch (e) {
      result.problems.push(`${what}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return result;
}

const ExistingSchema = v.looseObject({
  metadata: v.looseObject({ name: v.string(), resourceVersion: v.optional(v.string()), labels: v.optional(v.record(v.string(), v.string()), {}) }),
});

async function reconcileOne(api: ClusterApi, desired: KubeObject): Promise<"created" | "updated" | "unchanged"> {
  const path = exporterObjectPath(desired);
  // Two attempts: a 409 means the object changed between our read and our write; read and decide again.
  for (let attempt = 0; ; attempt++) {
    const retry = attempt === 0;
    const got = await api.request("GET", path);
    if (got.status === 404) {
      const created = await api.request("POST", collectionOf(desired), { body: desired });
      if (created.status === 409 && retry) continue;
      check("create", created);
      return "created";
    }
    check("read", got);
    const parsed = v.safeParse(ExistingSchema, got.body);
    if (!parsed.success) throw new Error(`the API server answered GET with something that is not an object: ${parsed.issues[0]?.message}`);
    const existing = got.body as KubeObject;
    if (mustRecreate(desired, existing)) {
      const deleted = await api.request("DELETE", path, { body: { kind: "DeleteOptions", apiVersion: "v1", preconditions: { resourceVersion: parsed.output.metadata.resourceVersion } } });
      if (deleted.status === 409 && retry) continue;
      if (deleted.status !== 404) check("delete", deleted);
      const created = await api.request("POST", collectionOf(desired), { body: desired });
      // 409 here: the old object is still terminating (a finalizer); the next reconcile creates it.
      check("recreate", created);
      return "updated";
    }
    if (owned(desired, parsed.output.metadata.labels, existing)) return "unchanged";
    const updated = await api.request("PUT", path, { body: withOurFields(desired, existing) });
    if (updated.status === 409 && retry) continue;
    check("update", updated);
    return "updated";
  }
}

function check(what: string, r: ApiResponse): void {
  if (r.status >= 200 && r.status < 300) return;
  const status = r.status === 0 ? "API server unreachable" : `HTTP ${r.status}`;
  throw new FirewallError("api_failed", `cannot ${what}: ${status}: ${statusMessage(r)}`);
}

const field = (o: unknown, ...path: string[]): unknown => path.reduce<unknown>((x, k) => (x && typeof x === "object" ? (x as Record<string, unknown>)[k] : undefined), o);

/** A Service's clusterIP is immutable, an EndpointSlice's addressType too: such objects are replaced. */
function mustRecreate(desired: KubeObject, existing: KubeObject): boolean {
  if (desired.kind === "Service") return field(existing, "spec", "clusterIP") !== "None" || field(existing, "spec", "type") !== "ClusterIP";
  if (desired.kind === "EndpointSlice") return field(existing, "addressType") !== desired.addressType;
  return false;
}

// The API server fills in defaults (protocol TCP, targetPort = port); compare with them filled in.
const normPorts = (ports: unknown, withTarget: boolean): unknown =>
  Array.isArray(ports)
    ? ports.map((p: Record<string, unknown>) => ({
        name: p.name ?? "",
        port: p.port,
        protocol: p.protocol ?? "TCP",
        ...(withTarget ? { targetPort: p.targetPort ?? p.port } : {}),
      }))
    : ports;

const normSubsets = (subsets: unknown): unknown =>
  Array.isArray(subsets) ? subsets.map((s: Record<string, unknown>) => ({ addresses: s.addresses ?? [], ports: normPorts(s.ports, false) })) : subsets;

/** The fields we own, normalised; everything else of an object is someone else's business. */
function ownedFields(o: KubeObject): unknown {
  switch (o.kind) {
    case "Service": {
      const selector = field(o, "spec", "selector");
      return {
        type: field(o, "spec", "type"),
        clusterIP: field(o, "spec", "clusterIP"),
        selector: selector && Object.keys(selector).length > 0 ? selector : undefined,
        ports: normPorts(field(o, "spec", "ports"), true),
      };
    }
    case "Endpoints":
      return { subsets: normSubsets(o.subsets) };
    default:
      return { addressType: o.addressType, endpoints: o.endpoints, ports: normPorts(o.ports, false) };
  }
}

function owned(desired: KubeObject, labels: Record<string, string>, existing: KubeObject): boolean {
  const labelsOk = Object.entries(desired.metadata.labels ?? {}).every(([k, val]) => labels[k] === val);
  return labelsOk && isDeepStrictEqual(ownedFields({ ...existing, kind: desired.kind }), ownedFields(desired));
}

/** The existing object with our fields set: other tools' labels, annotations and fields survive. */
function withOurFields(desired: KubeObject, existing: KubeObject): KubeObject {
  const o = structuredClone(existing);
  o.metadata.labels = { ...existing.metadata.labels, ...desired.metadata.labels };
  switch (desired.kind) {
    case "Service": {
      const spec = { ...(o.spec as Record<string, unknown>) };
      delete spec.selector;
      o.spec = { ...spec, type: "ClusterIP", clusterIP: "None", ports: field(desired, "spec", "ports") };
      break;
    }
    case "Endpoints":
      o.subsets = desired.subsets;
      break;
    default:
      o.addressType = desired.addressType;
      o.endpoints = desired.endpoints;
      o.ports = desired.ports;
  }
  return o;
}
