/**
 * Shapes shared by the test API server's parts: Kubernetes objects as plain
 * JSON, and the description of a served resource type (built in or from a CRD).
 *
 * Objects stay plain JSON on purpose: the server must hand back exactly what
 * clients wrote (unknown fields included), like the real apiserver does for
 * the fields it keeps, so nothing here is a typed model of a Kubernetes kind.
 *
 * @example
 * ```ts
 * import { isRecord, type KubeObject } from "./types.ts";
 * const o: KubeObject = { apiVersion: "v1", kind: "Namespace", metadata: { name: "firewall" } };
 * console.log(isRecord(o.metadata)); // true
 * ```
 * @module
 */
import type { CompiledSchema } from "./validation.ts";

/** A JSON object (a map). */
export type JsonMap = Record<string, unknown>;

/** Standard object metadata; only the fields the server maintains are named. */
export interface ObjectMeta extends JsonMap {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  /** Set by the server on a DELETE of an object with finalizers. */
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
}

/** Any Kubernetes object, as JSON. */
export interface KubeObject extends JsonMap {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
}

/** One column of a CRD's `additionalPrinterColumns` (or of a built-in table). */
export interface PrinterColumn {
  readonly name: string;
  readonly type: string;
  readonly format?: string;
  readonly description?: string;
  readonly priority?: number;
  readonly jsonPath: string;
}

/**
 * A resource the server serves at `/api/v1/...` or `/apis/<group>/<version>/...`.
 * Built-in types are constants; CRDs turn into one of these per served version.
 */
export interface ResourceType {
  readonly group: string;
  readonly version: string;
  /** Plural, lower case: the URL segment (`services`, `clusterwidenetworkpolicies`). */
  readonly plural: string;
  readonly singular: string;
  readonly kind: string;
  readonly listKind: string;
  readonly namespaced: boolean;
  readonly shortNames: readonly string[];
  readonly categories: readonly string[];
  /** Has a `/status` subresource: main-resource writes keep the stored status, status writes keep the rest. */
  readonly statusSubresource: boolean;
  /** Served from a CRD: generation counts spec changes, status is dropped on create, printer columns come from the CRD. */
  readonly custom: boolean;
  /** Where objects live in the store; two types share one bucket when they are two views of the same objects (events). */
  readonly bucket: string;
  /** CRD printer columns (custom types only). */
  readonly printerColumns?: readonly PrinterColumn[];
  /** The CRD's `openAPIV3Schema` for this version (custom types only): used for pruning, defaulting and OpenAPI. */
  readonly schema?: JsonMap;
  /** The schema's validator (custom types with a schema): compiled once when the CRD is registered. */
  readonly validator?: CompiledSchema;
  /** Name of the CRD this type came from. */
  readonly crdName?: string;
  /** `metadata.name` must be an RFC 1123 DNS label (namespaces), an RFC 1035 label (services), or a DNS subdomain (the rest). */
  readonly nameRule: "dns-label" | "dns-1035-label" | "dns-subdomain";
  /** PUT on a missing object creates it (endpoints, events), as the real registry allows for those. */
  readonly allowCreateOnUpdate: boolean;
  /** DELETE answers with the deleted object instead of a `Status` (services, pods, custom resources). */
  readonly returnDeletedObject: boolean;
  /** Maintains `metadata.generation` (custom resources and CRDs). */
  readonly generation: boolean;
  /** Converts the stored form into this type's form (events.k8s.io/v1 views core/v1 events). */
  readonly fromStorage?: (o: KubeObject) => KubeObject;
  /** Converts this type's form into the stored form. */
  readonly toStorage?: (o: KubeObject) => KubeObject;
}

/** `group/version`, or `version` for the core group, as in `apiVersion`. */
export function groupVersion(t: { group: string; version: string }): string {
  return t.group === "" ? t.version : `${t.group}/${t.version}`;
}

/** True for a JSON object (not an array, not null). */
export function isRecord(v: unknown): v is JsonMap {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A deep copy; objects handed out by the server never share structure with its store. */
export function clone<T>(v: T): T {
  return structuredClone(v);
}

/** Structural equality of JSON values (key order does not matter, array order does). */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  }
  if (isRecord(a) && isRecord(b)) {
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && deepEqual(a[k], b[k]));
  }
  return false;
}
