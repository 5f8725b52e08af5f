/**
 * The controller's two CustomResourceDefinitions (SPEC §6), embedded into the
 * binary, and installing or updating them at start: a firewall must not
 * depend on someone having applied `crds/` by hand, and a new release brings
 * its schema along.
 *
 * @example
 * ```ts
 * import { KubeConfig } from "@kubernetes/client-node";
 * import { clusterApi } from "./api.ts";
 * import { ensureCrds } from "./crds.ts";
 * const kc = new KubeConfig();
 * kc.loadFromDefault();
 * const r = await ensureCrds(clusterApi(kc));
 * console.log(r.created, r.updated, r.unchanged);
 * ```
 * @module
 */
import { isDeepStrictEqual } from "node:util";
import * as v from "valibot";
import { parse } from "yaml";
import policiesCrd from "../../crds/clusterwidenetworkpolicies.metal-stack.io.yaml" with { type: "text" };
import firewallsCrd from "../../crds/firewalls.metal-stack.io.yaml" with { type: "text" };
import { FirewallError } from "../errors.ts";
import type { ApiResponse, ClusterApi, KubeObject } from "./api.ts";
import { statusMessage } from "./api.ts";
import { sleep } from "./backoff.ts";

/** Where CRDs live in the API. */
const CRD_COLLECTION = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";

const ManifestSchema = v.looseObject({
  apiVersion: v.literal("apiextensions.k8s.io/v1"),
  kind: v.literal("CustomResourceDefinition"),
  metadata: v.looseObject({ name: v.string() }),
  spec: v.looseObject({}),
});

// What we read back from the API server: only these fields matter, everything else is kept as is.
const ServerCrdSchema = v.looseObject({
  metadata: v.looseObject({
    name: v.string(),
    resourceVersion: v.optional(v.string()),
    deletionTimestamp: v.optional(v.string()),
  }),
  spec: v.optional(v.looseObject({}), {}),
  status: v.optional(
    v.looseObject({
      conditions: v.optional(
        v.array(v.looseObject({ type: v.string(), status: v.string(), reason: v.optional(v.string()), message: v.optional(v.string()) })),
        [],
      ),
    }),
    {},
  ),
});
type ServerCrd = v.InferOutput<typeof ServerCrdSchema>;

function manifest(text: string, file: string): KubeObject {
  const r = v.safeParse(ManifestSchema, parse(text));
  // The manifests are part of the build; a broken one is a bug, and test/crds.test.ts guards it.
  if (!r.success) throw new Error(`crds/${file} is not a CustomResourceDefinition: ${r.issues[0]?.message}`);
  return r.output as KubeObject;
}

/**
 * The embedded CRD manifests, parsed: Firewall first, then ClusterwideNetworkPolicy.
 *
 * @example
 * ```ts
 * import { CRDS } from "./crds.ts";
 * CRDS.map((c) => c.metadata.name); // ["firewalls.metal-stack.io", "clusterwidenetworkpolicies.metal-stack.io"]
 * ```
 */
export const CRDS: readonly KubeObject[] = [
  manifest(firewallsCrd, "firewalls.metal-stack.io.yaml"),
  manifest(policiesCrd, "clusterwidenetworkpolicies.metal-stack.io.yaml"),
];

/**
 * Options of {@link ensureCrds}; the defaults suit production.
 *
 * @example
 * ```ts
 * import type { EnsureCrdsOptions } from "./crds.ts";
 * const o: EnsureCrdsOptions = { timeoutMs: 30_000, signal: AbortSignal.timeout(60_000) };
 * ```
 */
export interface EnsureCrdsOptions {
  /** How long to wait for every CRD to be `Established` (default 10 s). */
  readonly timeoutMs?: number;
  /** How often to look while waiting (default 100 ms). */
  readonly pollMs?: number;
  /** Stops waiting (the call then throws). */
  readonly signal?: AbortSignal;
  /** The CRDs to install (default {@link CRDS}); for tests. */
  readonly crds?: readonly KubeObject[];
}

/**
 * What {@link ensureCrds} did, by CRD name.
 *
 * @example
 * ```ts
 * import type { EnsureCrdsResult } from "./crds.ts";
 * const r: EnsureCrdsResult = { created: [], updated: ["firewalls.metal-stack.io"], unchanged: ["clusterwidenetworkpolicies.metal-stack.io"] };
 * ```
 */
export interface EnsureCrdsResult {
  created: string[];
  updated: string[];
  unchanged: string[];
}

/**
 * Creates missing CRDs, updates those whose `spec` differs from the embedded
 * one, and waits until every one is `Established` (its API is served).
 * Throws a {@link FirewallError} (`api_failed`) naming the CRD, the HTTP
 * status and the server's message when a call fails or the wait times out.
 *
 * @example
 * ```ts
 * import { ensureCrds } from "./crds.ts";
 * // const { created } = await ensureCrds(api, { timeoutMs: 10_000 });
 * ```
 */
export async function ensureCrds(api: ClusterApi, options: EnsureCrdsOptions = {}): Promise<EnsureCrdsResult> {
  const crds = options.crds ?? CRDS;
  const signal = options.signal ?? new AbortController().signal;
  const result: EnsureCrdsResult = { created: [], updated: [], unchanged: [] };
  const known = new Map<string, ServerCrd>();
  for (const crd of crds) {
    const { outcome, current } = await ensureOne(api, crd);
    result[outcome].push(crd.metadata.name);
    known.set(crd.metadata.name, current);
  }
  await waitEstablished(api, known, options.timeoutMs ?? 10_000, options.pollMs ?? 100, signal);
  return result;
}

async function ensureOne(api: ClusterApi, desired: KubeObject): Promise<{ outcome: keyof EnsureCrdsResult; current: ServerCrd }> {
  const name = desired.metadata.name;
  const path = `${CRD_COLLECTION}/${name}`;
  // Two attempts: a 409 means someone else (another firewall of this cluster) wrote in between; read again and decide again.
  for (let attempt = 0; ; attempt++) {
    const got = await api.request("GET", path);
    if (got.status === 404) {
      const created = await api.request("POST", CRD_COLLECTION, { body: desired });
      if (created.status === 409 && attempt === 0) continue;
      if (!ok(created)) throw failure(name, "create", created);
      return { outcome: "created", current: readCrd(name, created) };
    }
    if (!ok(got)) throw failure(name, "read", got);
    const current = readCrd(name, got);
    if (current.metadata.deletionTimestamp !== undefined) {
      throw new FirewallError("api_failed", `CRD ${name} is being deleted; it is installed again at the next start`);
    }
    if (sameSpec(desired.spec, current.spec)) return { outcome: "unchanged", current };
    const existing = got.body as KubeObject;
    // Keep the server's metadata (labels, annotations of other tools), replace the spec: the schema is ours.
    const body = {
      ...desired,
      metadata: {
        ...existing.metadata,
        labels: { ...existing.metadata.labels, ...desired.metadata.labels },
        annotations: { ...existing.metadata.annotations, ...desired.metadata.annotations },
        resourceVersion: current.metadata.resourceVersion,
      },
    };
    const updated = await api.request("PUT", path, { body });
    if (updated.status === 409 && attempt === 0) continue;
    if (!ok(updated)) throw failure(name, "update", updated);
    return { outcome: "updated", current: readCrd(name, updated) };
  }
}

async function waitEstablished(api: ClusterApi, known: Map<string, ServerCrd>, timeoutMs: number, pollMs: number, signal: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const pending = new Map([...known].filter(([, crd]) => !established(crd)));
  while (pending.size > 0) {
    if (signal.aborted) throw new FirewallError("api_failed", `stopped while waiting for CRD ${[...pending.keys()].join(", ")} to be Established`);
    if (Date.now() >= deadline) {
      const why = [...pending].map(([name, crd]) => `CRD ${name} is not Established after ${timeoutMs / 1000} s${conditionSummary(crd)}`);
      throw new FirewallError("api_failed", why.join("; "));
    }
    await sleep(pollMs, signal);
    for (const name of [...pending.keys()]) {
      const got = await api.request("GET", `${CRD_COLLECTION}/${name}`);
      if (!ok(got)) throw failure(name, "read", got);
      const crd = readCrd(name, got);
      if (established(crd)) pending.delete(name);
      else pending.set(name, crd);
    }
  }
}

const ok = (r: ApiResponse) => r.status >= 200 && r.status < 300;

function readCrd(name: string, r: ApiResponse): ServerCrd {
  const parsed = v.safeParse(ServerCrdSchema, r.body);
  if (!parsed.success) throw new FirewallError("api_failed", `CRD ${name}: the API server answered HTTP ${r.status} with something that is not a CustomResourceDefinition`);
  return parsed.output;
}

const established = (crd: ServerCrd) => crd.status.conditions.some((c) => c.type === "Established" && c.status === "True");

// Why a CRD is not served yet, from the conditions the API server sets (NamesAccepted=False names the clash).
function conditionSummary(crd: ServerCrd): string {
  const bad = crd.status.conditions.filter((c) => c.status !== "True");
  if (bad.length === 0) return "";
  return ` (${bad.map((c) => `${c.type}=${c.status}${c.reason ? ` ${c.reason}` : ""}${c.message ? `: ${c.message}` : ""}`).join("; ")})`;
}

function failure(name: string, what: "read" | "create" | "update", r: ApiResponse): FirewallError {
  return new FirewallError("api_failed", `cannot ${what} CRD ${name}: ${r.status === 0 ? "" : `HTTP ${r.status}: `}${statusMessage(r)}`);
}

/**
 * The specs are equal once the API server's defaults are filled in on both
 * sides: a real server adds them to what we send, a test server may not; an
 * exact comparison would otherwise rewrite the CRD on every start.
 */
function sameSpec(desired: unknown, current: unknown): boolean {
  return isDeepStrictEqual(withDefaults(desired), withDefaults(current));
}

function withDefaults(spec: unknown): unknown {
  const s = structuredClone((spec ?? {}) as Record<string, unknown>);
  // SetDefaults_CustomResourceDefinitionSpec (apiextensions v1).
  s.conversion ??= { strategy: "None" };
  const names = s.names as Record<string, unknown> | undefined;
  if (names && typeof names.kind === "string") {
    names.singular ??= names.kind.toLowerCase();
    names.listKind ??= `${names.kind}List`;
  }
  // false is the default and the server omits it.
  if (s.preserveUnknownFields === false) delete s.preserveUnknownFields;
  return s;
}
