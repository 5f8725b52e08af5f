/**
 * An in-memory {@link ClusterApi} for unit tests: objects stored by path,
 * resourceVersions and uids assigned, 404/409/422 answered like the API server
 * (immutable Service clusterIP and EndpointSlice addressType, optimistic
 * concurrency on PUT and DELETE preconditions), a few server-side defaults
 * filled in (so "unchanged" really means our comparison tolerates them),
 * requests counted by method, failures injectable, and (optionally) RBAC
 * enforced from `deploy/rbac.yaml` so tests prove the manifest suffices.
 *
 * @example
 * ```ts
 * import { FakeClusterApi } from "./fake-api.ts";
 * const api = new FakeClusterApi();
 * await api.request("POST", "/api/v1/namespaces/firewall/services", { body: { metadata: { name: "x" }, spec: {} } });
 * api.count("POST"); // 1
 * ```
 * @module
 */
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import type { ApiResponse, ClusterApi, KubeObject, Method, WatchEvent } from "../../lib/kube/api.ts";

export interface Injected {
  readonly method?: Method;
  /** Matches when the request path contains this. */
  readonly path?: string;
  /** HTTP status to answer; 0 = unreachable. */
  readonly status: number;
  readonly message?: string;
  /** How many matching requests fail (default 1). */
  times?: number;
}

export interface Recorded {
  readonly method: Method;
  readonly path: string;
  readonly body?: unknown;
  readonly contentType?: string;
  readonly status: number;
}

export interface RbacRule {
  readonly apiGroups: readonly string[];
  readonly resources: readonly string[];
  readonly verbs: readonly string[];
  readonly resourceNames?: readonly string[];
}

/** The permissions of a ServiceAccount: ClusterRole rules, and Role rules by namespace. */
export interface Rbac {
  readonly cluster: readonly RbacRule[];
  readonly namespaced: Readonly<Record<string, readonly RbacRule[]>>;
}

/** The rules bound to a ServiceAccount in an RBAC manifest (ClusterRoleBindings and RoleBindings). */
export function loadRbac(file: string, serviceAccount = { namespace: "firewall", name: "firewall-controller" }): Rbac {
  type Doc = { kind: string; metadata: { name: string; namespace?: string }; rules?: RbacRule[]; roleRef?: { kind: string; name: string }; subjects?: { kind: string; name: string; namespace?: string }[] };
  const docs = parseAllDocuments(readFileSync(file, "utf8")).map((d) => d.toJS() as Doc);
  const bound = (d: Doc) => d.subjects?.some((s) => s.kind === "ServiceAccount" && s.name === serviceAccount.name && s.namespace === serviceAccount.namespace);
  const role = (kind: string, name: string, namespace?: string) => docs.find((d) => d.kind === kind && d.metadata.name === name && d.metadata.namespace === namespace)?.rules ?? [];
  const cluster = docs.filter((d) => d.kind === "ClusterRoleBinding" && bound(d)).flatMap((d) => role("ClusterRole", d.roleRef?.name ?? ""));
  const namespaced: Record<string, RbacRule[]> = {};
  for (const d of docs.filter((d) => d.kind === "RoleBinding" && bound(d))) {
    const ns = d.metadata.namespace ?? "default";
    const rules = d.roleRef?.kind === "ClusterRole" ? role("ClusterRole", d.roleRef.name) : role("Role", d.roleRef?.name ?? "", ns);
    namespaced[ns] = [...(namespaced[ns] ?? []), ...rules];
  }
  return { cluster, namespaced };
}

/** What RBAC authorises a request as: API group, resource (with subresource), name, namespace, verb. */
export function requestAttributes(method: Method, path: string, query: Record<string, string> = {}) {
  const parts = path.split("/").filter((p) => p !== "");
  const group = parts[0] === "api" ? "" : (parts[1] ?? "");
  let rest = parts.slice(parts[0] === "api" ? 2 : 3);
  let namespace: string | undefined;
  if (rest[0] === "namespaces" && rest.length > 2) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const [resource = "", name, sub] = rest;
  const verbs: Record<Method, string> = { GET: name ? "get" : query.watch === "true" ? "watch" : "list", POST: "create", PUT: "update", PATCH: "patch", DELETE: name ? "delete" : "deletecollection" };
  return { group, resource: sub ? `${resource}/${sub}` : resource, name: method === "POST" ? undefined : name, namespace, verb: verbs[method] };
}

export function rbacAllows(rbac: Rbac, method: Method, path: string, query?: Record<string, string>): boolean {
  const a = requestAttributes(method, path, query);
  const rules = [...rbac.cluster, ...(a.namespace ? (rbac.namespaced[a.namespace] ?? []) : [])];
  const has = (list: readonly string[] | undefined, x: string) => list !== undefined && (list.includes(x) || list.includes("*"));
  return rules.some(
    (r) =>
      has(r.apiGroups, a.group) &&
      has(r.resources, a.resource) &&
      has(r.verbs, a.verb) &&
      (!r.resourceNames || r.resourceNames.length === 0 || (a.name !== undefined && r.resourceNames.includes(a.name))),
  );
}

export class FakeClusterApi implements ClusterApi {
  /** When set, requests these rules do not allow are answered 403 Forbidden, like the API server's authorizer. */
  rbac: Rbac | undefined;
  readonly objects = new Map<string, KubeObject>();
  readonly requests: Recorded[] = [];
  /** CRDs written are `Established: False` for this many GETs, then True (0: at once; Infinity: never). */
  establishAfterGets = 0;
  /** Called before every request is answered; may change the store (a concurrent writer). */
  beforeRequest: ((method: Method, path: string) => void) | undefined;
  #failures: Injected[] = [];
  #version = 100;
  #uid = 0;
  #ips = 10;
  #pendingEstablish = new Map<string, number>();

  /** Fail matching requests (in order of injection). */
  fail(f: Injected): void {
    this.#failures.push({ ...f, times: f.times ?? 1 });
  }

  /** Requests made, by method (all methods when none given). */
  count(method?: Method): number {
    return this.requests.filter((r) => method === undefined || r.method === method).length;
  }

  /** Requests other than GET. */
  writes(): Recorded[] {
    return this.requests.filter((r) => r.method !== "GET");
  }

  reset(): void {
    this.requests.length = 0;
  }

  get(path: string): KubeObject | undefined {
    const o = this.objects.get(path);
    return o ? structuredClone(o) : undefined;
  }

  /** Stores an object as is (as another actor would), with a new resourceVersion. */
  put(path: string, o: KubeObject): void {
    const copy = structuredClone(o);
    copy.metadata.resourceVersion = this.#nextVersion();
    copy.metadata.uid ??= `uid-${++this.#uid}`;
    this.objects.set(path, copy);
  }

  async request(method: Method, path: string, options: { body?: unknown; contentType?: string; query?: Record<string, string> } = {}): Promise<ApiResponse> {
    await Promise.resolve();
    this.beforeRequest?.(method, path);
    const r = this.#answer(method, path, options.body);
    this.requests.push({ method, path, body: options.body, contentType: options.contentType, status: r.status });
    return structuredClone(r);
  }

  watch(_path: string, _query: Record<string, string>, _onEvent: (e: WatchEvent) => void, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
  }

  #answer(method: Method, path: string, body: unknown): ApiResponse {
    if (this.rbac && !rbacAllows(this.rbac, method, path)) {
      const a = requestAttributes(method, path);
      return status(403, `${a.resource} is forbidden: User "system:serviceaccount:firewall:firewall-controller" cannot ${a.verb} resource "${a.resource}" in API group "${a.group}"${a.namespace ? ` in the namespace "${a.namespace}"` : " at the cluster scope"}`, "Forbidden");
    }
    const injected = this.#failures.find((f) => (!f.method || f.method === method) && (!f.path || path.includes(f.path)));
    if (injected) {
      injected.times = (injected.times ?? 1) - 1;
      if (injected.times <= 0) this.#failures.splice(this.#failures.indexOf(injected), 1);
      return injected.status === 0
        ? { status: 0, body: { message: "connect ECONNREFUSED 127.0.0.1:6443" } }
        : status(injected.status, injected.message ?? "injected failure");
    }
    const existing = this.objects.get(path);
    switch (method) {
      case "GET": {
        if (existing) return { status: 200, body: this.#establishOnRead(path, existing) };
        const items = [...this.objects].filter(([p]) => p.startsWith(`${path}/`) && !p.slice(path.length + 1).includes("/")).map(([, o]) => o);
        if (items.length > 0 || isCollection(path)) return { status: 200, body: { kind: "List", apiVersion: "v1", metadata: { resourceVersion: String(this.#version) }, items } };
        return status(404, `${kindOf(path)} "${path.split("/").pop()}" not found`, "NotFound");
      }
      case "POST": {
        const o = structuredClone(body) as KubeObject;
        const item = `${path}/${o.metadata.name}`;
        if (this.objects.has(item)) return status(409, `${kindOf(item)} "${o.metadata.name}" already exists`, "AlreadyExists");
        if (o.metadata.resourceVersion) return status(422, "resourceVersion should not be set on objects to be created", "Invalid");
        const stored = this.#defaults(o);
        stored.metadata.uid = `uid-${++this.#uid}`;
        stored.metadata.resourceVersion = this.#nextVersion();
        stored.metadata.creationTimestamp = "2026-01-01T00:00:00Z";
        this.objects.set(item, stored);
        this.#written(item);
        return { status: 201, body: stored };
      }
      case "PUT": {
        if (!existing) return status(404, `${kindOf(path)} "${path.split("/").pop()}" not found`, "NotFound");
        const o = structuredClone(body) as KubeObject;
        if (o.metadata.resourceVersion !== existing.metadata.resourceVersion) {
          return status(409, `Operation cannot be fulfilled on ${kindOf(path)} "${existing.metadata.name}": the object has been modified; please apply your changes to the latest version and try again`, "Conflict");
        }
        const immutable = this.#immutable(existing, o);
        if (immutable) return status(422, immutable, "Invalid");
        const stored = this.#defaults(o);
        stored.metadata.uid = existing.metadata.uid;
        stored.metadata.resourceVersion = this.#nextVersion();
        if (isCrd(path)) stored.status = existing.status;
        this.objects.set(path, stored);
        this.#written(path);
        return { status: 200, body: stored };
      }
      case "PATCH": {
        if (!existing) return status(404, `${kindOf(path)} "${path.split("/").pop()}" not found`, "NotFound");
        const stored = mergePatch(existing, body) as KubeObject;
        stored.metadata.resourceVersion = this.#nextVersion();
        this.objects.set(path, stored);
        return { status: 200, body: stored };
      }
      case "DELETE": {
        if (!existing) return status(404, `${kindOf(path)} "${path.split("/").pop()}" not found`, "NotFound");
        const pre = (body as { preconditions?: { resourceVersion?: string } } | undefined)?.preconditions?.resourceVersion;
        if (pre !== undefined && pre !== existing.metadata.resourceVersion) return status(409, "Precondition failed: resourceVersion", "Conflict");
        this.objects.delete(path);
        return { status: 200, body: { kind: "Status", apiVersion: "v1", status: "Success" } };
      }
    }
  }

  #nextVersion(): string {
    return String(++this.#version);
  }

  #written(path: string): void {
    if (isCrd(path)) this.#pendingEstablish.set(path, this.establishAfterGets);
    this.#establishOnRead(path, this.objects.get(path) as KubeObject, true);
  }

  #establishOnRead(path: string, o: KubeObject, justWritten = false): KubeObject {
    if (!isCrd(path)) return o;
    const left = this.#pendingEstablish.get(path);
    if (left === undefined) return o;
    if (left > 0 || left === Infinity) {
      if (!justWritten) this.#pendingEstablish.set(path, left - 1);
      o.status = { conditions: [{ type: "NamesAccepted", status: "True", reason: "NoConflicts", message: "no conflicts found" }, { type: "Established", status: "False", reason: "Installing", message: "the initial names have been accepted" }] };
      return o;
    }
    this.#pendingEstablish.delete(path);
    o.status = { conditions: [{ type: "NamesAccepted", status: "True", reason: "NoConflicts", message: "no conflicts found" }, { type: "Established", status: "True", reason: "InitialNamesAccepted", message: "the initial names have been accepted" }] };
    return o;
  }

  /** Defaults a real API server fills in: with them, our comparisons must still call objects unchanged. */
  #defaults(o: KubeObject): KubeObject {
    const spec = o.spec as Record<string, unknown> | undefined;
    if (o.kind === "Service" && spec) {
      if (spec.clusterIP === undefined) spec.clusterIP = `10.96.0.${++this.#ips}`;
      spec.clusterIPs ??= [spec.clusterIP];
      spec.sessionAffinity ??= "None";
      spec.ipFamilies ??= ["IPv4"];
      spec.ipFamilyPolicy ??= "SingleStack";
      spec.internalTrafficPolicy ??= "Cluster";
      spec.type ??= "ClusterIP";
      for (const p of (spec.ports ?? []) as Record<string, unknown>[]) {
        p.protocol ??= "TCP";
        p.targetPort ??= p.port;
      }
    }
    if (o.kind === "CustomResourceDefinition" && spec) spec.conversion ??= { strategy: "None" };
    return o;
  }

  #immutable(before: KubeObject, after: KubeObject): string | undefined {
    if (before.kind === "Service") {
      const a = (before.spec as { clusterIP?: string }).clusterIP;
      const b = (after.spec as { clusterIP?: string } | undefined)?.clusterIP;
      if (b !== undefined && a !== b) return `Service "${before.metadata.name}" is invalid: spec.clusterIP: Invalid value: "${b}": field is immutable`;
    }
    if (before.kind === "EndpointSlice" && before.addressType !== after.addressType) {
      return `EndpointSlice.discovery.k8s.io "${before.metadata.name}" is invalid: addressType: Invalid value: "${String(after.addressType)}": field is immutable`;
    }
    return undefined;
  }
}

function status(code: number, message: string, reason = "InternalError"): ApiResponse {
  return { status: code, body: { kind: "Status", apiVersion: "v1", status: "Failure", message, reason, code } };
}

const isCrd = (path: string) => path.startsWith("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/");

const COLLECTIONS = ["services", "endpoints", "endpointslices", "events", "customresourcedefinitions"];
const isCollection = (path: string) => COLLECTIONS.includes(path.split("/").pop() ?? "");

function kindOf(path: string): string {
  const parts = path.split("/");
  const resource = parts[parts.length - 2] ?? "";
  const group = path.startsWith("/apis/") ? `.${parts[2]}` : "";
  return `${resource}${group}`;
}

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!patch || typeof patch !== "object" || Array.isArray(patch)) return structuredClone(patch);
  const out: Record<string, unknown> = target && typeof target === "object" && !Array.isArray(target) ? structuredClone(target as Record<string, unknown>) : {};
  for (const [k, val] of Object.entries(patch)) {
    if (val === null) delete out[k];
    else out[k] = mergePatch(out[k], val);
  }
  return out;
}
