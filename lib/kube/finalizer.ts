/**
 * The controller's finalizer on its Firewall object (SPEC §4.7). Deletion must
 * be explicit: only a Firewall the API server marks as being deleted
 * (`deletionTimestamp`) removes the table and the shaping, and the finalizer
 * keeps the object there until that is done. An object that is merely gone
 * from a list (an empty or restored API server, a missing CRD) proves nothing.
 *
 * Writes are JSON patches guarded by a `test` of the resourceVersion, so a
 * concurrent edit of `metadata.finalizers` by someone else is never lost: the
 * patch fails with 409/422 and the next reconcile tries again on fresh data.
 *
 * @example
 * ```ts
 * import { FINALIZER, hasFinalizer } from "./finalizer.ts";
 * hasFinalizer({ metadata: { name: "firewall", finalizers: [FINALIZER] } }); // true
 * ```
 * @module
 */
import type { ApiResponse, ClusterApi, KubeObject } from "./api.ts";

export const FINALIZER = "metal-stack.io/firewall-controller";

const finalizersOf = (o: KubeObject): string[] => (Array.isArray(o.metadata.finalizers) ? (o.metadata.finalizers as unknown[]).filter((f): f is string => typeof f === "string") : []);

export const hasFinalizer = (o: KubeObject): boolean => finalizersOf(o).includes(FINALIZER);

/** The object is being deleted: the API server set its deletionTimestamp. */
export const isBeingDeleted = (o: KubeObject): boolean => typeof o.metadata.deletionTimestamp === "string" && o.metadata.deletionTimestamp !== "";

function patchFinalizers(api: ClusterApi, path: string, o: KubeObject, finalizers: string[]): Promise<ApiResponse> {
  const ops: unknown[] = [];
  if (o.metadata.resourceVersion) ops.push({ op: "test", path: "/metadata/resourceVersion", value: o.metadata.resourceVersion });
  ops.push(Array.isArray(o.metadata.finalizers) ? { op: "replace", path: "/metadata/finalizers", value: finalizers } : { op: "add", path: "/metadata/finalizers", value: finalizers });
  return api.request("PATCH", path, { body: ops, contentType: "application/json-patch+json" });
}

/** Adds our finalizer (`path` is the object's own URL). */
export const addFinalizer = (api: ClusterApi, path: string, o: KubeObject): Promise<ApiResponse> => patchFinalizers(api, path, o, [...finalizersOf(o), FINALIZER]);

/** Removes our finalizer, keeping everyone else's. */
export const removeFinalizer = (api: ClusterApi, path: string, o: KubeObject): Promise<ApiResponse> =>
  patchFinalizers(api, path, o, finalizersOf(o).filter((f) => f !== FINALIZER));
