/**
 * The semantics of the REST verbs on stored objects, independent of HTTP:
 * name and namespace checks, uid/creationTimestamp/generation bookkeeping,
 * optimistic concurrency, the status subresource, patches, cascading deletes
 * of namespaces and CRDs, and CRD registration.
 *
 * Rules followed (those of the real apiserver):
 * - every write that changes an object gets a new resourceVersion; a write
 *   that changes nothing is a no-op (same resourceVersion, no watch event);
 * - `metadata.generation` (custom resources, CRDs) starts at 1 and grows when
 *   anything outside `metadata` (and `status`, with a status subresource) changes;
 * - with a status subresource, main-resource writes keep the stored status and
 *   `/status` writes keep everything but the status; creates drop the status;
 * - an update with a stale `metadata.resourceVersion` is a 409 Conflict; custom
 *   resources must name one in an update (PUT), patches need not;
 * - unknown fields of custom resources (those pruning drops) are refused, reported or ignored by
 *   `fieldValidation` (Strict / Warn, the default / Ignore);
 * - custom resources are validated against their CRD's schema and CEL rules
 *   after pruning and defaulting (./validation.ts), `/status` writes on their
 *   status part (ratcheting: unchanged parts are not checked again);
 * - finalizers: DELETE of an object with `metadata.finalizers` only sets
 *   `deletionTimestamp` (and `deletionGracePeriodSeconds: 0`, generation + 1
 *   where kept) and answers 200 with the object; the object goes once a write
 *   leaves its finalizers empty; no finalizer can be added while it is being
 *   deleted (422 Forbidden). Without finalizers deletes are immediate (no grace
 *   periods: pods have no kubelet here). Deleting a namespace or a CRD deletes
 *   what is in it at once, *ignoring* their finalizers (a real namespace
 *   would stay Terminating, a real CRD would wait for its instances).
 *
 * @example
 * ```ts
 * import { Rest } from "./rest.ts";
 * const rest = new Rest();
 * const ns = rest.registry.find("", "v1", "namespaces")!;
 * rest.create(ns, undefined, { metadata: { name: "firewall" } });
 * console.log(rest.get(ns, undefined, "firewall").status); // { phase: "Active" }
 * ```
 * @module
 */
import { randomBytes, randomUUID } from "node:crypto";
import { crdStatus, validateCrd } from "./crd.ts";
import { Defaulter } from "./defaults.ts";
import { jsonPatch, JsonPatchError } from "./json_patch.ts";
import { mergePatch } from "./merge_patch.ts";
import { Registry } from "./registry.ts";
import { parseFieldSelector, parseLabelSelector } from "./selectors.ts";
import { ApiError, type StatusCause } from "./status.ts";
import { Store } from "./store.ts";
import { strategicMergePatch } from "./strategic_merge_patch.ts";
import { pruneAndDefault, unknownFieldPaths } from "./structural.ts";
import { clone, deepEqual, groupVersion, isRecord, type JsonMap, type KubeObject, type ResourceType } from "./types.ts";

/** Patch media types (`Content-Type` of a PATCH). */
export const PATCH_TYPES = {
  json: "application/json-patch+json",
  merge: "application/merge-patch+json",
  strategic: "application/strategic-merge-patch+json",
  apply: "application/apply-patch+yaml",
} as const;

export interface ListOptions {
  readonly labelSelector?: string | null;
  readonly fieldSelector?: string | null;
  readonly resourceVersion?: string | null;
  readonly resourceVersionMatch?: string | null;
}

export interface WriteOptions {
  /** `?dryRun=All`: everything but the write. */
  readonly dryRun?: boolean;
  /** Write the `/status` subresource. */
  readonly subresource?: "status";
  /**
   * `?fieldValidation=`: what a write of a custom resource does with fields its schema does not know
   * (those pruning drops). `Strict`: refused (400 on create/update, 422 on patch); `Warn` (the default, as
   * on a cluster): pruned, each reported through {@link warn}; `Ignore`: pruned silently.
   */
  readonly fieldValidation?: FieldValidation;
  /** Receives the write's warnings (the HTTP layer sends them as `Warning: 299 - "..."` headers). */
  readonly warn?: (message: string) => void;
}

export type FieldValidation = "Strict" | "Warn" | "Ignore";

/** Told the name of a deleted CRD (the HTTP layer ends the watches of its types, as a real apiserver does). */
export type RemovedCrdListener = (crdName: string) => void;

const NAME_RULES = {
  "dns-subdomain": {
    max: 253,
    re: /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/,
    message:
      "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
  },
  "dns-label": {
    max: 63,
    re: /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/,
    message:
      "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
  },
  "dns-1035-label": {
    max: 63,
    re: /^[a-z]([-a-z0-9]*[a-z0-9])?$/,
    message:
      "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
  },
} as const;

const NAMESPACES = { group: "", plural: "namespaces" };
const CRD_GROUP = "apiextensions.k8s.io";

function isCrdType(t: ResourceType): boolean {
  return t.group === CRD_GROUP && t.plural === "customresourcedefinitions";
}

/** RFC 3339 with second precision, as `metav1.Time` serialises. */
function timestamp(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

function withoutResourceVersion(o: KubeObject): KubeObject {
  const { resourceVersion: _rv, ...metadata } = o.metadata;
  return { ...o, metadata };
}

export class Rest {
  readonly store: Store;
  readonly registry: Registry;
  readonly #defaulter = new Defaulter();
  readonly #clock: () => Date;
  readonly #crdRemoved = new Set<RemovedCrdListener>();
  /**
   * Validate custom resources against their CRD's schema and CEL rules (default true). A test turns it off
   * to store objects that predate the schema (SPEC §3.2: the controller must validate those itself).
   */
  validateCustomResources = true;

  constructor(options: { store?: Store; registry?: Registry; clock?: () => Date } = {}) {
    this.store = options.store ?? new Store();
    this.registry = options.registry ?? new Registry();
    this.#clock = options.clock ?? (() => new Date());
    this.#systemNamespaces();
  }

  /**
   * Forgets everything, as a cluster whose etcd was restored from nothing: every object (CRDs and
   * namespaces included; their types are no longer served), the watch history, and the
   * resourceVersion counter, which starts again from 0. The system namespaces come back, as kube-apiserver
   * creates them at start (so the counter ends a little above 0).
   */
  reset(): void {
    const crds = this.registry.all().filter((t) => t.crdName !== undefined).map((t) => t.crdName ?? "");
    for (const name of new Set(crds)) {
      this.registry.unregister(name);
      for (const l of this.#crdRemoved) l(name);
    }
    this.store.reset();
    this.#systemNamespaces();
  }

  #systemNamespaces(): void {
    const namespaces = this.registry.find("", "v1", "namespaces");
    if (namespaces) {
      for (const name of ["default", "kube-system", "kube-public", "kube-node-lease"]) this.create(namespaces, undefined, { metadata: { name } });
    }
  }

  /** Called after a CRD is deleted (its types are no longer served). */
  onCrdRemoved(listener: RemovedCrdListener): void {
    this.#crdRemoved.add(listener);
  }

  /** The object as a client of `t` sees it: converted, with the requested apiVersion and kind first. */
  view(t: ResourceType, stored: KubeObject): KubeObject {
    const o = t.fromStorage ? t.fromStorage(stored) : stored;
    const { apiVersion: _a, kind: _k, ...rest } = o;
    return { apiVersion: groupVersion(t), kind: t.kind, ...rest };
  }

  get(t: ResourceType, namespace: string | undefined, name: string): KubeObject {
    const o = this.store.get(t.bucket, this.#ns(t, namespace), name);
    if (!o) throw ApiError.notFound(t, name);
    return this.view(t, o);
  }

  /** A list object (`<Kind>List`) with the store's resourceVersion. */
  list(t: ResourceType, namespace: string | undefined, options: ListOptions = {}): KubeObject & { items: KubeObject[] } {
    const rv = options.resourceVersion;
    if (options.resourceVersionMatch === "Exact" && rv && rv !== this.store.resourceVersion) {
      // Only the current state is kept; older snapshots are as gone as compacted ones on a cluster.
      throw ApiError.expired(`too old resource version: ${rv} (${this.store.resourceVersion})`);
    }
    const labels = parseLabelSelector(options.labelSelector);
    const fields = parseFieldSelector(options.fieldSelector);
    const items = this.store
      .list(t.bucket, this.#ns(t, namespace))
      .map((o) => this.view(t, o))
      .filter((o) => labels(o) && fields(o));
    return { apiVersion: groupVersion(t), kind: t.listKind, metadata: { resourceVersion: this.store.resourceVersion }, items };
  }

  create(t: ResourceType, namespace: string | undefined, body: unknown, options: WriteOptions = {}): KubeObject {
    let o = this.#incoming(t, body);
    this.#fieldValidation(t, o, options, undefined);
    const ns = this.#namespaceOf(t, namespace, o);
    if (!o.metadata.name && o.metadata.generateName) {
      // Like the real name generator: 5 characters from a consonant-heavy alphabet.
      const alphabet = "bcdfghjklmnpqrstvwxz2456789";
      o.metadata.name = o.metadata.generateName + [...randomBytes(5)].map((b) => alphabet[b % alphabet.length]).join("");
    }
    const name = this.#validName(t, o.metadata.name);
    if (ns !== undefined) this.#requireNamespace(ns);
    if (this.store.get(t.bucket, ns, name)) throw ApiError.alreadyExists(t, name);
    const { resourceVersion: _rv, deletionTimestamp: _dt, deletionGracePeriodSeconds: _dg, managedFields: _mf, selfLink: _sl, generation: _g, ...meta } = o.metadata;
    o.metadata = { ...meta, name, ...(ns !== undefined ? { namespace: ns } : {}), uid: randomUUID(), creationTimestamp: timestamp(this.#clock()) };
    if (t.generation) o.metadata.generation = 1;
    if (t.custom) {
      if (t.statusSubresource) delete o.status;
      if (t.schema) o = pruneAndDefault(o, t.schema);
      this.#validate(t, o, undefined);
    } else {
      o = this.#defaulter.create(t.kind, o);
    }
    if (isCrdType(t)) {
      validateCrd(o);
      o.status = crdStatus(o, timestamp(this.#clock()));
    }
    if (options.dryRun) return this.view(t, o);
    const stored = this.store.put(t.bucket, o);
    if (isCrdType(t)) this.registry.register(stored);
    return this.view(t, stored);
  }

  /** PUT of the object or of its `/status`. */
  update(t: ResourceType, namespace: string | undefined, name: string, body: unknown, options: WriteOptions = {}): KubeObject {
    return this.#update(t, namespace, name, body, options, false);
  }

  /** PATCH of the object or of its `/status`; `contentType` picks the patch kind. */
  patch(t: ResourceType, namespace: string | undefined, name: string, contentType: string, patch: unknown, options: WriteOptions = {}): KubeObject {
    const current = this.get(t, namespace, name);
    const type = contentType.split(";")[0]?.trim() ?? "";
    let patched: unknown;
    switch (type) {
      case PATCH_TYPES.json:
        try {
          patched = jsonPatch(current, patch);
        } catch (e) {
          if (!(e instanceof JsonPatchError)) throw e;
          throw e.malformed ? ApiError.badRequest(e.message) : new ApiError(422, "Invalid", e.message);
        }
        break;
      case PATCH_TYPES.merge:
        if (!isRecord(patch)) throw ApiError.badRequest("a merge patch must be a JSON object");
        patched = mergePatch(current, patch);
        break;
      case PATCH_TYPES.strategic:
        if (t.custom) {
          // As on a cluster: custom resources have no Go struct to take merge keys from.
          throw new ApiError(
            415,
            "UnsupportedMediaType",
            `the body of the request was in an unknown format - accepted media types include: ${PATCH_TYPES.json}, ${PATCH_TYPES.merge}, ${PATCH_TYPES.apply}`,
          );
        }
        if (!isRecord(patch)) throw ApiError.badRequest("a strategic merge patch must be a JSON object");
        patched = strategicMergePatch(current, patch, `${groupVersion(t)}/${t.kind}`);
        break;
      default:
        throw new ApiError(
          415,
          "UnsupportedMediaType",
          `the body of the request was in an unknown format - accepted media types include: ${PATCH_TYPES.json}, ${PATCH_TYPES.merge}${t.custom ? "" : `, ${PATCH_TYPES.strategic}`} (server-side apply is not implemented by this test server)`,
        );
    }
    if (!isRecord(patched)) throw new ApiError(422, "Invalid", "the patch turned the object into something other than an object");
    return this.#update(t, namespace, name, patched, options, true);
  }

  /** DELETE; answers with the deleted object or a success `Status`, by type. */
  delete(t: ResourceType, namespace: string | undefined, name: string, deleteOptions: unknown, options: WriteOptions = {}): KubeObject | JsonMap {
    const ns = this.#ns(t, namespace);
    const existing = this.store.get(t.bucket, ns, name);
    if (!existing) throw ApiError.notFound(t, name);
    const pre = isRecord(deleteOptions) && isRecord(deleteOptions.preconditions) ? deleteOptions.preconditions : {};
    if (typeof pre.uid === "string" && pre.uid !== existing.metadata.uid) {
      throw ApiError.conflict(t, name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${existing.metadata.uid ?? ""}`);
    }
    if (typeof pre.resourceVersion === "string" && pre.resourceVersion !== existing.metadata.resourceVersion) {
      throw ApiError.conflict(
        t,
        name,
        `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${existing.metadata.resourceVersion ?? ""}`,
      );
    }
    if (existing.metadata.finalizers !== undefined && existing.metadata.finalizers.length > 0) {
      // Graceful: mark it, keep it until its finalizers are gone. A second DELETE changes nothing.
      if (existing.metadata.deletionTimestamp !== undefined) return this.view(t, existing);
      const marked = clone(existing);
      marked.metadata.deletionTimestamp = timestamp(this.#clock());
      marked.metadata.deletionGracePeriodSeconds = 0;
      if (marked.metadata.generation !== undefined && marked.metadata.generation > 0) marked.metadata.generation += 1;
      if (options.dryRun) return this.view(t, marked);
      return this.view(t, this.store.put(t.bucket, marked));
    }
    if (options.dryRun) return this.#deleted(t, existing);
    return this.#deleted(t, this.#remove(t, ns, name, existing));
  }

  /** Removes the object for good, with what it contains (a namespace's objects, a CRD's custom resources). */
  #remove(t: ResourceType, ns: string | undefined, name: string, existing: KubeObject): KubeObject {
    if (t.plural === "namespaces" && t.group === "") {
      const buckets = new Set(this.registry.all().filter((x) => x.namespaced).map((x) => x.bucket));
      for (const b of buckets) for (const o of this.store.list(b, name)) this.store.remove(b, name, o.metadata.name ?? "");
    }
    if (isCrdType(t)) {
      const bucket = this.registry.all().find((x) => x.crdName === name)?.bucket;
      if (bucket) for (const o of this.store.list(bucket)) this.store.remove(bucket, o.metadata.namespace, o.metadata.name ?? "");
      this.registry.unregister(name);
    }
    const last = this.store.remove(t.bucket, ns, name) ?? existing;
    if (isCrdType(t)) for (const l of this.#crdRemoved) l(name);
    return last;
  }

  /** DELETE on a collection: deletes what the selectors match; answers with the list of deleted objects. */
  deleteCollection(t: ResourceType, namespace: string | undefined, listOptions: ListOptions, options: WriteOptions = {}): KubeObject {
    const matched = this.list(t, namespace, listOptions).items;
    for (const o of matched) this.delete(t, o.metadata.namespace, o.metadata.name ?? "", undefined, options);
    return { apiVersion: groupVersion(t), kind: t.listKind, metadata: { resourceVersion: this.store.resourceVersion }, items: matched };
  }

  #deleted(t: ResourceType, last: KubeObject): KubeObject | JsonMap {
    if (t.returnDeletedObject) return this.view(t, last);
    return {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Success",
      details: { name: last.metadata.name, group: t.group, kind: t.plural, uid: last.metadata.uid },
    };
  }

  #update(t: ResourceType, namespace: string | undefined, name: string, body: unknown, options: WriteOptions, fromPatch: boolean): KubeObject {
    let o = this.#incoming(t, body);
    this.#fieldValidation(t, o, options, fromPatch ? body : undefined);
    const ns = this.#namespaceOf(t, namespace, o);
    if (o.metadata.name !== undefined && o.metadata.name !== name) {
      throw ApiError.badRequest(`the name of the object (${o.metadata.name}) does not match the name on the URL (${name})`);
    }
    o.metadata.name = name;
    const existing = this.store.get(t.bucket, ns, name);
    if (!existing) {
      if (options.subresource || !t.allowCreateOnUpdate || fromPatch) throw ApiError.notFound(t, name);
      // Already checked (and warned about) above.
      return this.create(t, namespace, o, { ...options, fieldValidation: "Ignore" });
    }
    const rv = o.metadata.resourceVersion;
    if (rv !== undefined && rv !== "" && rv !== existing.metadata.resourceVersion) throw ApiError.conflict(t, name);
    if ((rv === undefined || rv === "") && t.custom && !fromPatch) {
      throw ApiError.invalid(t.kind, t.group, name, [
        { reason: "FieldValueInvalid", field: "metadata.resourceVersion", message: "Invalid value: 0x0: must be specified for an update" },
      ]);
    }
    if (o.metadata.uid !== undefined && o.metadata.uid !== "" && o.metadata.uid !== existing.metadata.uid) {
      throw ApiError.conflict(t, name, `Precondition failed: UID in precondition: ${o.metadata.uid}, UID in object meta: ${existing.metadata.uid ?? ""}`);
    }
    let next: KubeObject;
    if (options.subresource === "status") {
      // Only the status moves; metadata (labels, annotations, ...) and spec stay as stored.
      next = clone(existing);
      if (o.status === undefined) delete next.status;
      else next.status = o.status;
      if (t.custom) {
        // As on a cluster, the status is pruned, defaulted and validated too (the unchanged spec is not checked again).
        if (t.schema) next = pruneAndDefault(next, t.schema);
        this.#validate(t, next, existing);
      }
    } else {
      const { managedFields: _mf, selfLink: _sl, ...meta } = o.metadata;
      next = {
        ...o,
        metadata: {
          ...meta,
          ...(ns !== undefined ? { namespace: ns } : {}),
          uid: existing.metadata.uid,
          creationTimestamp: existing.metadata.creationTimestamp,
          resourceVersion: existing.metadata.resourceVersion,
        },
      };
      // deletionTimestamp and its grace period are the server's: kept as stored, never taken from the client.
      delete next.metadata.deletionTimestamp;
      delete next.metadata.deletionGracePeriodSeconds;
      if (existing.metadata.deletionTimestamp !== undefined) next.metadata.deletionTimestamp = existing.metadata.deletionTimestamp;
      if (existing.metadata.deletionGracePeriodSeconds !== undefined) next.metadata.deletionGracePeriodSeconds = existing.metadata.deletionGracePeriodSeconds;
      if (existing.metadata.deletionTimestamp !== undefined) this.#noNewFinalizers(t, name, existing, next);
      delete next.metadata.generation;
      if (existing.metadata.generation !== undefined) next.metadata.generation = existing.metadata.generation;
      if (t.statusSubresource) {
        if (existing.status === undefined) delete next.status;
        else next.status = existing.status;
      }
      if (t.custom) {
        if (t.schema) next = pruneAndDefault(next, t.schema);
        this.#validate(t, next, existing);
      } else {
        next = this.#defaulter.update(t.kind, next, existing);
      }
      if (isCrdType(t)) validateCrd(next);
      if (t.generation && this.#specChanged(t, existing, next)) next.metadata.generation = (existing.metadata.generation ?? 0) + 1;
    }
    if (isCrdType(t)) next.status = crdStatus(next, timestamp(this.#clock()));
    // The stored form keeps its own apiVersion/kind (one bucket may serve several versions).
    next.apiVersion = existing.apiVersion;
    next.kind = existing.kind;
    if (deepEqual(withoutResourceVersion(existing), withoutResourceVersion(next))) return this.view(t, existing);
    if (options.dryRun) return this.view(t, next);
    if (next.metadata.deletionTimestamp !== undefined && (next.metadata.finalizers === undefined || next.metadata.finalizers.length === 0)) {
      // The last finalizer of an object being deleted is gone: the object goes. As on a cluster this is one
      // storage delete: a single DELETED event, whose object (like the answer) is the last stored state.
      return this.view(t, this.#remove(t, ns, name, existing));
    }
    const stored = this.store.put(t.bucket, next);
    if (isCrdType(t)) this.registry.register(stored);
    return this.view(t, stored);
  }

  /**
   * Strict field validation of a custom resource as decoded (before pruning): the fields its schema would
   * drop are refused with `Strict`, reported as warnings with `Warn` (the default), ignored with `Ignore`.
   * Worded as apiextensions-apiserver does: a create or update is a 400 BadRequest
   * `<Kind> in version "<v>" cannot be handled as a <Kind>: strict decoding error: unknown field "spec.x", ...`;
   * a patch (`patched`: the patched object) a 422 Invalid with an empty kind and name on the field `patch`.
   */
  #fieldValidation(t: ResourceType, o: KubeObject, options: WriteOptions, patched: unknown): void {
    if (!t.custom || !t.schema) return;
    const directive = options.fieldValidation ?? "Warn";
    if (directive === "Ignore") return;
    const unknown = unknownFieldPaths(o, t.schema);
    if (unknown.length === 0) return;
    const errors = unknown.map((p) => `unknown field "${p}"`);
    if (directive === "Warn") {
      for (const e of errors) options.warn?.(e);
      return;
    }
    const strict = `strict decoding error: ${errors.join(", ")}`;
    if (patched !== undefined) {
      throw ApiError.invalid("", "", "", [{ reason: "FieldValueInvalid", field: "patch", message: `Invalid value: ${JSON.stringify(sortedJson(patched))}: ${strict}` }]);
    }
    const version = typeof o.apiVersion === "string" ? o.apiVersion.slice(o.apiVersion.lastIndexOf("/") + 1) : t.version;
    throw ApiError.badRequest(`${t.kind} in version ${JSON.stringify(version)} cannot be handled as a ${t.kind}: ${strict}`);
  }

  /** Custom resources against their schema (`old`: the stored object, on updates); 422 with the causes. */
  #validate(t: ResourceType, o: KubeObject, old: KubeObject | undefined): void {
    if (!t.validator || !this.validateCustomResources) return;
    const causes = t.validator.validate(o, old);
    if (causes.length > 0) throw ApiError.invalid(t.kind, t.group, o.metadata.name ?? "", causes);
  }

  /** ValidateNoNewFinalizers: once deleting, finalizers can only be removed. */
  #noNewFinalizers(t: ResourceType, name: string, existing: KubeObject, next: KubeObject): void {
    const before = new Set(existing.metadata.finalizers ?? []);
    const extra = [...new Set(next.metadata.finalizers ?? [])].filter((f) => !before.has(f)).sort();
    if (extra.length === 0) return;
    throw ApiError.invalid(t.kind, t.group, name, [
      {
        reason: "FieldValueForbidden",
        field: "metadata.finalizers",
        message: `Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{${extra.map((f) => JSON.stringify(f)).join(", ")}}`,
      },
    ]);
  }

  /** Anything but metadata (and status, with a status subresource) changed: that bumps the generation. */
  #specChanged(t: ResourceType, a: KubeObject, b: KubeObject): boolean {
    const strip = (o: KubeObject) => {
      const { metadata: _m, apiVersion: _a, kind: _k, ...rest } = o;
      if (t.statusSubresource) delete rest.status;
      return rest;
    };
    return !deepEqual(strip(a), strip(b));
  }

  /** Checks apiVersion/kind of a request body and converts it into the stored form. */
  #incoming(t: ResourceType, body: unknown): KubeObject {
    if (!isRecord(body)) throw ApiError.badRequest("the request body must be a JSON object");
    const gv = groupVersion(t);
    if (body.kind !== undefined && body.kind !== t.kind) {
      throw ApiError.badRequest(`the kind of the object (${String(body.kind)}) does not match the kind of the resource (${t.kind})`);
    }
    if (body.apiVersion !== undefined && body.apiVersion !== gv) {
      throw ApiError.badRequest(`the API version in the data (${String(body.apiVersion)}) does not match the expected API version (${gv})`);
    }
    const metadata = isRecord(body.metadata) ? clone(body.metadata) : {};
    // Empty maps and lists vanish, as they do through Go's omitempty on a real server.
    for (const k of ["labels", "annotations", "finalizers", "ownerReferences"]) {
      const v = metadata[k];
      if (v === null || (Array.isArray(v) && v.length === 0) || (isRecord(v) && Object.keys(v).length === 0)) delete metadata[k];
    }
    const o: KubeObject = { ...clone(body), apiVersion: gv, kind: t.kind, metadata };
    return t.toStorage ? t.toStorage(o) : o;
  }

  /** The namespace a write goes to; the body's must agree with the URL's. */
  #namespaceOf(t: ResourceType, urlNamespace: string | undefined, o: KubeObject): string | undefined {
    if (!t.namespaced) {
      delete o.metadata.namespace;
      return undefined;
    }
    const bodyNs = o.metadata.namespace;
    if (urlNamespace !== undefined && bodyNs !== undefined && bodyNs !== "" && bodyNs !== urlNamespace) {
      throw ApiError.badRequest("the namespace of the provided object does not match the namespace sent on the request");
    }
    const ns = urlNamespace ?? (bodyNs || undefined);
    if (ns === undefined) throw ApiError.badRequest("a namespaced object needs metadata.namespace");
    o.metadata.namespace = ns;
    return ns;
  }

  #ns(t: ResourceType, namespace: string | undefined): string | undefined {
    return t.namespaced ? namespace : undefined;
  }

  #requireNamespace(ns: string): void {
    if (!this.store.get("core/namespaces", undefined, ns)) throw ApiError.notFound(NAMESPACES, ns);
  }

  #validName(t: ResourceType, name: string | undefined): string {
    if (name === undefined || name === "") {
      throw ApiError.invalid(t.kind, t.group, "", [{ reason: "FieldValueRequired", field: "metadata.name", message: "Required value: name or generateName is required" }]);
    }
    const rule = NAME_RULES[t.nameRule];
    const causes: StatusCause[] = [];
    if (name.length > rule.max) causes.push({ reason: "FieldValueInvalid", field: "metadata.name", message: `Invalid value: "${name}": must be no more than ${rule.max} characters` });
    if (!rule.re.test(name)) causes.push({ reason: "FieldValueInvalid", field: "metadata.name", message: `Invalid value: "${name}": ${rule.message}` });
    if (causes.length > 0) throw ApiError.invalid(t.kind, t.group, name, causes);
    return name;
  }
}

/** JSON text with object keys sorted, as Go's encoding/json writes a map (the patched object in a strict patch error). */
function sortedJson(v: unknown): string {
  const sort = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(sort);
    if (isRecord(x)) return Object.fromEntries(Object.keys(x).sort().map((k) => [k, sort(x[k])]));
    return x;
  };
  return JSON.stringify(sort(v));
}
