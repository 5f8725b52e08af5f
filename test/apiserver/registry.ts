/**
 * Which resource types the server serves: the built-in ones a firewall
 * controller and kubectl touch, plus those registered from CRDs at runtime.
 *
 * @example
 * ```ts
 * import { Registry } from "./registry.ts";
 * const r = new Registry();
 * console.log(r.find("", "v1", "services")?.kind); // Service
 * ```
 * @module
 */
import { crdTypes } from "./crd.ts";
import { eventFromCore, eventToCore } from "./events.ts";
import type { KubeObject, ResourceType } from "./types.ts";

type Options = Partial<ResourceType> & Pick<ResourceType, "group" | "version" | "plural" | "kind">;

function builtin(o: Options): ResourceType {
  return {
    singular: o.kind.toLowerCase(),
    listKind: `${o.kind}List`,
    namespaced: true,
    shortNames: [],
    categories: [],
    statusSubresource: false,
    custom: false,
    bucket: `${o.group === "" ? "core" : o.group}/${o.plural}`,
    nameRule: "dns-subdomain",
    allowCreateOnUpdate: false,
    returnDeletedObject: false,
    generation: false,
    ...o,
  };
}

/** The built-in types (what `kubectl api-resources` lists for them on a real cluster, minus the rest). */
export const BUILTIN_TYPES: readonly ResourceType[] = [
  builtin({ group: "", version: "v1", plural: "namespaces", kind: "Namespace", namespaced: false, shortNames: ["ns"], statusSubresource: true, nameRule: "dns-label" }),
  builtin({ group: "", version: "v1", plural: "services", kind: "Service", shortNames: ["svc"], categories: ["all"], statusSubresource: true, nameRule: "dns-1035-label", returnDeletedObject: true }),
  builtin({ group: "", version: "v1", plural: "endpoints", kind: "Endpoints", singular: "endpoints", listKind: "EndpointsList", shortNames: ["ep"], allowCreateOnUpdate: true }),
  builtin({ group: "", version: "v1", plural: "secrets", kind: "Secret" }),
  builtin({ group: "", version: "v1", plural: "configmaps", kind: "ConfigMap", shortNames: ["cm"] }),
  builtin({ group: "", version: "v1", plural: "pods", kind: "Pod", shortNames: ["po"], categories: ["all"], statusSubresource: true, returnDeletedObject: true }),
  builtin({ group: "", version: "v1", plural: "events", kind: "Event", shortNames: ["ev"], allowCreateOnUpdate: true }),
  builtin({
    group: "apiextensions.k8s.io",
    version: "v1",
    plural: "customresourcedefinitions",
    kind: "CustomResourceDefinition",
    namespaced: false,
    shortNames: ["crd", "crds"],
    categories: ["api-extensions"],
    statusSubresource: true,
    generation: true,
  }),
  builtin({ group: "discovery.k8s.io", version: "v1", plural: "endpointslices", kind: "EndpointSlice" }),
  builtin({
    group: "events.k8s.io",
    version: "v1",
    plural: "events",
    kind: "Event",
    shortNames: ["ev"],
    allowCreateOnUpdate: true,
    // Same objects as core/v1 events, another shape.
    bucket: "core/events",
    fromStorage: (o: KubeObject) => eventFromCore(o),
    toStorage: (o: KubeObject) => eventToCore(o),
  }),
];

/** Kubernetes version order: GA before beta before alpha, higher numbers first (v2 > v1 > v1beta2 > v1beta1 > v1alpha1). */
export function compareVersions(a: string, b: string): number {
  const rank = (v: string): [number, number, number] => {
    const m = /^v(\d+)(?:(alpha|beta)(\d+))?$/.exec(v);
    if (!m) return [3, 0, 0];
    const level = m[2] === undefined ? 0 : m[2] === "beta" ? 1 : 2;
    return [level, -Number(m[1]), -Number(m[3] ?? 0)];
  };
  const [x, y] = [rank(a), rank(b)];
  for (let i = 0; i < 3; i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A group and its served versions, preferred version first. */
export interface GroupVersions {
  readonly group: string;
  readonly versions: readonly string[];
}

export class Registry {
  readonly #custom = new Map<string, ResourceType[]>();

  /** Every served type: built-ins first, then custom types by CRD name. */
  all(): ResourceType[] {
    return [...BUILTIN_TYPES, ...[...this.#custom.keys()].sort().flatMap((k) => this.#custom.get(k) ?? [])];
  }

  /** The type served at `/apis/<group>/<version>/<plural>` (or `/api/v1/<plural>` for group ""). */
  find(group: string, version: string, plural: string): ResourceType | undefined {
    return this.all().find((t) => t.group === group && t.version === version && t.plural === plural);
  }

  /** Types of one group/version. */
  ofGroupVersion(group: string, version: string): ResourceType[] {
    return this.all().filter((t) => t.group === group && t.version === version);
  }

  /** Groups with their versions, core first, then in order of registration of built-ins and CRD names. */
  groups(): GroupVersions[] {
    const byGroup = new Map<string, Set<string>>();
    for (const t of this.all()) {
      const set = byGroup.get(t.group) ?? new Set<string>();
      set.add(t.version);
      byGroup.set(t.group, set);
    }
    return [...byGroup.entries()].map(([group, versions]) => ({ group, versions: [...versions].sort(compareVersions) }));
  }

  /** Serves the CRD's versions (replacing what an earlier version of the same CRD served). */
  register(crd: KubeObject): void {
    this.#custom.set(crd.metadata.name ?? "", crdTypes(crd));
  }

  /** Stops serving the CRD's types. */
  unregister(crdName: string): void {
    this.#custom.delete(crdName);
  }
}
