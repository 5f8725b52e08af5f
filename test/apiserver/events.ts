/**
 * core/v1 `Event` and events.k8s.io/v1 `Event` are two views of the same
 * objects in the real apiserver: an event written through one is read through
 * the other (`kubectl describe` reads core/v1, recorders may write
 * events.k8s.io/v1). The store keeps the core/v1 form; these convert.
 *
 * @example
 * ```ts
 * import { eventFromCore, eventToCore } from "./events.ts";
 * const e = eventFromCore({ apiVersion: "v1", kind: "Event", metadata: { name: "x" }, message: "m", involvedObject: { kind: "Firewall" } });
 * console.log(e.note, eventToCore(e).message); // m m
 * ```
 * @module
 */
import type { JsonMap, KubeObject } from "./types.ts";

/** core/v1 field ⇄ events.k8s.io/v1 field. */
const RENAMES: readonly (readonly [core: string, events: string])[] = [
  ["involvedObject", "regarding"],
  ["message", "note"],
  ["reportingComponent", "reportingController"],
  ["source", "deprecatedSource"],
  ["firstTimestamp", "deprecatedFirstTimestamp"],
  ["lastTimestamp", "deprecatedLastTimestamp"],
  ["count", "deprecatedCount"],
];

const SHARED = ["eventTime", "series", "reportingInstance", "action", "reason", "related", "type"];

function copy(from: JsonMap, pairs: readonly (readonly [string, string])[]): JsonMap {
  const out: JsonMap = {};
  for (const [src, dst] of pairs) if (from[src] !== undefined) out[dst] = from[src];
  return out;
}

/** The events.k8s.io/v1 view of a stored core/v1 event. */
export function eventFromCore(core: KubeObject): KubeObject {
  return {
    apiVersion: "events.k8s.io/v1",
    kind: "Event",
    metadata: core.metadata,
    ...copy(core, [...SHARED.map((f) => [f, f] as const), ...RENAMES]),
  };
}

/** The core/v1 form (stored) of an events.k8s.io/v1 event. */
export function eventToCore(ev: KubeObject): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Event",
    metadata: ev.metadata,
    ...copy(ev, [...SHARED.map((f) => [f, f] as const), ...RENAMES.map(([c, e]) => [e, c] as const)]),
  };
}
