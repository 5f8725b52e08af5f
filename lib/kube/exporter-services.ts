/**
 * The Services that publish the firewall's metrics into the cluster
 * (SPEC §6): `nftables-exporter` (9630) and `node-exporter` (9100) in
 * namespace `firewall`, headless and without a selector, each with an
 * Endpoints object and EndpointSlices pointing at `--service-ip`. The
 * firewall is no pod, so nothing else in the cluster would maintain them:
 * the controller creates them, corrects what others changed and recreates
 * what others deleted.
 *
 * An HA pair of firewalls serves one cluster, each with its own controller,
 * `--firewall-name` and `--service-ip`. So that they do not overwrite each
 * other, each firewall owns only its part: its own EndpointSlice per Service
 * (`<service>-<firewall>`, labelled `firewall.metal-stack.io/name`) and its
 * own address in the shared Endpoints object (found by its
 * `targetRef: {kind: Firewall, namespace: firewall, name}`). Addresses and
 * slices of Firewalls that no longer exist are removed by whichever
 * controller runs next; those of live peers are kept.
 *
 * @example
 * ```ts
 * import { reconcileExporterServices } from "./exporter-services.ts";
 * // const firewall = { name: "fw-a", isLive: (n: string) => firewalls.get("firewall", n) !== undefined };
 * // const { created, updated, deleted, problems } = await reconcileExporterServices(api, "10.3.164.1", firewall);
 * ```
 * @module
 */
import { createHash } from "node:crypto";
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
 * The label naming the Firewall (in {@link EXPORTER_NAMESPACE}) an EndpointSlice belongs to.
 * A Firewall name longer than a label value may be (63) is shortened with a hash
 * (see {@link firewallLabelValue}); the slice's endpoint `targetRef` names it in full.
 *
 * @example
 * ```ts
 * import { FIREWALL_NAME_LABEL } from "./exporter-services.ts";
 * FIREWALL_NAME_LABEL; // "firewall.metal-stack.io/name"
 * ```
 */
export const FIREWALL_NAME_LABEL = "firewall.metal-stack.io/name";

/**
 * The firewall a controller runs on: its name (of its Firewall object in
 * {@link EXPORTER_NAMESPACE}), and whether a Firewall of a given name exists
 * there (a live member of the HA pair).
 *
 * @example
 * ```ts
 * import type { ExporterFirewall } from "./exporter-services.ts";
 * const fw: ExporterFirewall = { name: "fw-a", isLive: (n) => ["fw-a", "fw-b"].includes(n) };
 * ```
 */
export interface ExporterFirewall {
  readonly name: string;
  readonly isLive: (name: string) => boolean;
}

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

const hashOf = (text: string, chars: number): string => createHash("sha256").update(text).digest("hex").slice(0, chars);

/** Cuts `text` to at most `max` characters, ending in a hash of the whole when it had to be cut (ends alphanumeric). */
function shortened(text: string, max: number): string {
  if (text.length <= max) return text;
  const hash = hashOf(text, 10);
  return `${text.slice(0, max - hash.length - 1).replace(/[^a-z0-9]+$/i, "")}-${hash}`;
}

/**
 * The name of a firewall's EndpointSlice of an exporter Service:
 * `<service>-<firewall>`, or, beyond the 253 characters a name may have,
 * cut and ending in a hash of the full name (still a DNS subdomain).
 *
 * @example
 * ```ts
 * import { endpointSliceName } from "./exporter-services.ts";
 * endpointSliceName("node-exporter", "fw-a"); // "node-exporter-fw-a"
 * endpointSliceName("node-exporter", "f".repeat(253)).length; // 253
 * ```
 */
export const endpointSliceName = (service: string, firewallName: string): string => shortened(`${service}-${firewallName}`, 253);

/**
 * The value of {@link FIREWALL_NAME_LABEL} for a firewall: its name, or, beyond
 * the 63 characters of a label value, cut and ending in a hash of the full name.
 *
 * @example
 * ```ts
 * import { firewallLabelValue } from "./exporter-services.ts";
 * firewallLabelValue("fw-a"); // "fw-a"
 * firewallLabelValue("f".repeat(100)).length; // 63
 * ```
 */
export const firewallLabelValue = (firewallName: string): string => shortened(firewallName, 63);

/**
 * The names of our Services and Endpoints objects (the EndpointSlices are
 * one per firewall: {@link endpointSliceName}, recognised by label).
 *
 * @example
 * ```ts
 * import { EXPORTER_NAMES } from "./exporter-services.ts";
 * EXPORTER_NAMES.endpoints; // ["nftables-exporter", "node-exporter"]
 * ```
 */
export const EXPORTER_NAMES: { readonly services: readonly string[]; readonly endpoints: readonly string[] } = {
  services: EXPORTER_SERVICES.map((s) => s.name),
  endpoints: EXPORTER_SERVICES.map((s) => s.name),
};

/**
 * Whether a watched object is one of ours, so a watcher can react to exactly
 * these and ignore every other object in the namespace: Services and
 * Endpoints by name, EndpointSlices (of any firewall of the pair) by their
 * labels `endpointslice.kubernetes.io/managed-by` and `kubernetes.io/service-name`.
 * Items of a list response carry no `kind`: pass it then.
 *
 * @example
 * ```ts
 * import { isExporterObject } from "./exporter-services.ts";
 * isExporterObject({ kind: "Endpoints", metadata: { name: "node-exporter", namespace: "firewall" } }); // true
 * const labels = { "endpointslice.kubernetes.io/managed-by": "firewall-controller", "kubernetes.io/service-name": "node-exporter" };
 * isExporterObject({ metadata: { name: "node-exporter-fw-b", namespace: "firewall", labels } }, "EndpointSlice"); // true
 * ```
 */
export function isExporterObject(o: KubeObject, kind: string | undefined = o.kind): boolean {
  if ((o.metadata.namespace ?? EXPORTER_NAMESPACE) !== EXPORTER_NAMESPACE) return false;
  switch (kind) {
    case "Service":
      return EXPORTER_NAMES.services.includes(o.metadata.name);
    case "Endpoints":
      return EXPORTER_NAMES.endpoints.includes(o.metadata.name);
    case "EndpointSlice":
      return isOurSlice(o);
    default:
      return false;
  }
}

/** Labelled as written by a firewall-controller for one of the exporter Services. */
function isOurSlice(o: KubeObject, service?: string): boolean {
  const labels = o.metadata.labels ?? {};
  const name = labels["kubernetes.io/service-name"];
  return labels["endpointslice.kubernetes.io/managed-by"] === MANAGED_BY && name !== undefined && (service === undefined ? EXPORTER_NAMES.services.includes(name) : name === service);
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

/** How an address of the shared Endpoints, or an endpoint of a slice, names its firewall. */
const firewallRef = (name: string) => ({ kind: "Firewall", namespace: EXPORTER_NAMESPACE, name });

/**
 * The objects of this firewall, in creation order (per Service: Service,
 * Endpoints with only this firewall's address, this firewall's
 * EndpointSlice). The reconcile merges the peers' addresses into the
 * Endpoints. Throws (`bad_flag`) when `serviceIp` is not an IP address; an
 * IPv6 address is written in its canonical form.
 *
 * @example
 * ```ts
 * import { desiredExporterObjects } from "./exporter-services.ts";
 * desiredExporterObjects("10.3.164.1", "fw-a").map((o) => `${o.kind}/${o.metadata.name}`);
 * // ["Service/nftables-exporter", "Endpoints/nftables-exporter", "EndpointSlice/nftables-exporter-fw-a", ...]
 * ```
 */
export function desiredExporterObjects(serviceIp: string, firewallName: string): KubeObject[] {
  const ip = parseAddress(serviceIp);
  if (!ip.ok) throw new FirewallError("bad_flag", `--service-ip: ${ip.message}`);
  const address = ip.value.text;
  const ref = firewallRef(firewallName);
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
      subsets: [{ addresses: [{ ip: address, targetRef: ref }], ports: [{ name: "metrics", port, protocol: "TCP" }] }],
    },
    {
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: metadata(endpointSliceName(name, firewallName), {
        "kubernetes.io/service-name": name,
        "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
        [FIREWALL_NAME_LABEL]: firewallLabelValue(firewallName),
      }),
      addressType: ip.value.family === 4 ? "IPv4" : "IPv6",
      endpoints: [{ addresses: [address], conditions: { ready: true }, targetRef: ref }],
      ports: [{ name: "metrics", port, protocol: "TCP" }],
    },
  ]);
}

/**
 * What {@link reconcileExporterServices} did, as `Kind namespace/name`; problems do not stop the other objects.
 * `deleted` lists EndpointSlices of Firewalls that no longer exist.
 *
 * @example
 * ```ts
 * import type { ExporterReconcileResult } from "./exporter-services.ts";
 * const r: ExporterReconcileResult = { created: ["Endpoints firewall/node-exporter"], updated: [], deleted: [], problems: [] };
 * ```
 */
export interface ExporterReconcileResult {
  created: string[];
  updated: string[];
  deleted: string[];
  problems: string[];
}

/**
 * Makes the exporter objects in the cluster match {@link desiredExporterObjects}
 * for this firewall: creates what is missing, corrects the fields we own
 * (keeping everything else), recreates what cannot be corrected in place (a
 * Service that is no longer headless, an EndpointSlice of the other address
 * family; listed as updated), and writes nothing when all is as it should be.
 *
 * Of the shared Endpoints object it sets only this firewall's address and
 * keeps those of live peers (by `targetRef`); it drops addresses of
 * Firewalls that are gone and addresses without a `targetRef`. It deletes
 * our EndpointSlices (by label) of Firewalls that are gone, never a live
 * peer's. So two controllers of an HA pair converge: once each has run,
 * further runs of either write nothing. Per-object failures go to
 * `problems`; the other objects are still reconciled.
 *
 * @example
 * ```ts
 * import { reconcileExporterServices } from "./exporter-services.ts";
 * // const r = await reconcileExporterServices(api, "10.3.164.1", { name: "fw-a", isLive: (n) => firewalls.has(n) });
 * // r.problems.forEach((p) => log.warn(p));
 * ```
 */
export async function reconcileExporterServices(api: ClusterApi, serviceIp: string, firewall: ExporterFirewall): Promise<ExporterReconcileResult> {
  const result: ExporterReconcileResult = { created: [], updated: [], deleted: [], problems: [] };
  const problem = (what: string, e: unknown) => result.problems.push(`${what}: ${e instanceof Error ? e.message : String(e)}`);
  for (const desired of desiredExporterObjects(serviceIp, firewall.name)) {
    const what = `${desired.kind} ${EXPORTER_NAMESPACE}/${desired.metadata.name}`;
    try {
      const outcome = await reconcileOne(api, desired, desired.kind === "Endpoints" ? (existing) => withPeerAddresses(desired, existing, firewall) : undefined);
      if (outcome !== "unchanged") result[outcome].push(what);
    } catch (e) {
      problem(what, e);
    }
    if (desired.kind !== "EndpointSlice") continue;
    const service = desired.metadata.labels?.["kubernetes.io/service-name"] ?? "";
    try {
      await deleteStaleSlices(api, service, desired.metadata.name, firewall, result, problem);
    } catch (e) {
      problem(`EndpointSlices of ${EXPORTER_NAMESPACE}/${service}`, e);
    }
  }
  return result;
}

type Address = Record<string, unknown> & { ip?: unknown; targetRef?: { kind?: unknown; namespace?: unknown; name?: unknown } };

/** The Firewall an Endpoints address or EndpointSlice endpoint names by its targetRef. */
function firewallOfRef(a: unknown): string | undefined {
  const ref = field(a, "targetRef") as Address["targetRef"];
  if (!ref || ref.kind !== "Firewall" || (ref.namespace ?? EXPORTER_NAMESPACE) !== EXPORTER_NAMESPACE || typeof ref.name !== "string") return undefined;
  return ref.name;
}

/**
 * The desired Endpoints given the existing one: our address (from `desired`)
 * plus every live peer's (one each, as the peer wrote it), sorted by ip.
 */
function withPeerAddresses(desired: KubeObject, existing: KubeObject, firewall: ExporterFirewall): KubeObject {
  const [ours] = desired.subsets as { addresses: Address[]; ports: unknown }[];
  if (!ours) return desired;
  const seen = new Set([firewall.name]);
  const peers: Address[] = [];
  const subsets = Array.isArray(existing.subsets) ? (existing.subsets as unknown[]) : [];
  for (const subset of subsets) {
    const addresses = field(subset, "addresses");
    for (const a of Array.isArray(addresses) ? (addresses as Address[]) : []) {
      const name = firewallOfRef(a);
      if (name === undefined || seen.has(name) || !firewall.isLive(name)) continue;
      seen.add(name);
      peers.push(a);
    }
  }
  const key = (a: Address) => `${String(a.ip)} ${firewallOfRef(a) ?? ""}`;
  const addresses = [...peers, ...ours.addresses].sort((x, y) => (key(x) < key(y) ? -1 : key(x) > key(y) ? 1 : 0));
  return { ...desired, subsets: [{ ...ours, addresses }] };
}

/**
 * Deletes our EndpointSlices of `service` other than `own` that belong to no
 * live Firewall: of a Firewall that is gone, or without any firewall name
 * (left over from a single-firewall version).
 */
async function deleteStaleSlices(
  api: ClusterApi,
  service: string,
  own: string,
  firewall: ExporterFirewall,
  result: ExporterReconcileResult,
  problem: (what: string, e: unknown) => void,
): Promise<void> {
  const listed = await api.request("GET", EXPORTER_PATHS.endpointSlices, {
    query: { labelSelector: `kubernetes.io/service-name=${service},endpointslice.kubernetes.io/managed-by=${MANAGED_BY}` },
  });
  check("list", listed);
  const items = field(listed.body, "items");
  for (const item of Array.isArray(items) ? (items as KubeObject[]) : []) {
    const name = item?.metadata?.name;
    if (typeof name !== "string" || name === own || !isOurSlice(item, service)) continue;
    // The endpoints' targetRef names the Firewall in full; the label may be shortened.
    const endpoints = Array.isArray(item.endpoints) ? (item.endpoints as unknown[]) : [];
    const owner = endpoints.map(firewallOfRef).find((n) => n !== undefined) ?? item.metadata.labels?.[FIREWALL_NAME_LABEL];
    if (owner !== undefined && owner !== firewall.name && firewall.isLive(owner)) continue;
    const what = `EndpointSlice ${EXPORTER_NAMESPACE}/${name}`;
    try {
      const deleted = await api.request("DELETE", `${EXPORTER_PATHS.endpointSlices}/${name}`, {
        body: { kind: "DeleteOptions", apiVersion: "v1", preconditions: { resourceVersion: item.metadata.resourceVersion } },
      });
      // 404: already gone; 409: changed since listed (perhaps its Firewall is back): decided again next time.
      if (deleted.status === 404 || deleted.status === 409) continue;
      check("delete", deleted);
      result.deleted.push(what);
    } catch (e) {
      problem(what, e);
    }
  }
}

const ExistingSchema = v.looseObject({
  metadata: v.looseObject({ name: v.string(), resourceVersion: v.optional(v.string()), labels: v.optional(v.record(v.string(), v.string()), {}) }),
});

/** `adjust` derives what is wanted from what exists (the shared Endpoints); without it `desired` is wanted as is. */
async function reconcileOne(api: ClusterApi, desired: KubeObject, adjust?: (existing: KubeObject) => KubeObject): Promise<"created" | "updated" | "unchanged"> {
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
    const wanted = adjust ? adjust(existing) : desired;
    if (owned(wanted, parsed.output.metadata.labels, existing)) return "unchanged";
    const updated = await api.request("PUT", path, { body: withOurFields(wanted, existing) });
    if (updated.status === 409 && retry) continue;
    check("update", updated);
    return "updated";
  }
}

function check(what: string, r: ApiResponse): void {
  if (r.status >= 200 && r.status < 300) return;
  throw new FirewallError("api_failed", `cannot ${what}: ${r.status === 0 ? "" : `HTTP ${r.status}: `}${statusMessage(r)}`);
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
