/**
 * CustomResourceDefinitions: what a CRD object serves (one {@link ResourceType}
 * per served version), the status the apiserver gives it (clients such as
 * `kubectl wait --for condition=Established` wait for it), and the name checks
 * the real apiserver makes.
 *
 * @example
 * ```ts
 * import { crdTypes } from "./crd.ts";
 * const types = crdTypes({ metadata: { name: "widgets.example.com" }, spec: {
 *   group: "example.com", scope: "Namespaced", names: { plural: "widgets", kind: "Widget" },
 *   versions: [{ name: "v1", served: true, storage: true }] } });
 * console.log(types[0]?.kind, types[0]?.listKind); // Widget WidgetList
 * ```
 * @module
 */
import { ApiError, type StatusCause } from "./status.ts";
import { isRecord, type JsonMap, type KubeObject, type PrinterColumn, type ResourceType } from "./types.ts";
import { compileSchema, SchemaCompileError, type CompiledSchema } from "./validation.ts";

const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []);

interface Names {
  plural: string;
  singular: string;
  kind: string;
  listKind: string;
  shortNames: string[];
  categories: string[];
}

function names(spec: JsonMap): Names {
  const n = isRecord(spec.names) ? spec.names : {};
  const kind = str(n.kind) ?? "";
  return {
    plural: str(n.plural) ?? "",
    singular: str(n.singular) ?? kind.toLowerCase(),
    kind,
    listKind: str(n.listKind) ?? `${kind}List`,
    shortNames: strings(n.shortNames),
    categories: strings(n.categories),
  };
}

/**
 * Checks what the apiserver checks before it accepts a CRD and that this
 * server relies on: the name is `<plural>.<group>`, names and a version exist.
 */
export function validateCrd(crd: KubeObject): void {
  const spec = isRecord(crd.spec) ? crd.spec : {};
  const n = names(spec);
  const group = str(spec.group) ?? "";
  const name = crd.metadata.name ?? "";
  const causes: StatusCause[] = [];
  const invalid = (field: string, value: unknown, why: string) =>
    causes.push({ reason: "FieldValueInvalid", field, message: `Invalid value: ${JSON.stringify(value)}: ${why}` });
  const required = (field: string) => causes.push({ reason: "FieldValueRequired", field, message: "Required value" });
  if (group === "") required("spec.group");
  if (n.plural === "") required("spec.names.plural");
  if (n.kind === "") required("spec.names.kind");
  if (group !== "" && n.plural !== "" && name !== `${n.plural}.${group}`) invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group');
  const scope = str(spec.scope);
  if (scope !== "Namespaced" && scope !== "Cluster") invalid("spec.scope", scope ?? "", 'supported values: "Cluster", "Namespaced"');
  const versions = Array.isArray(spec.versions) ? spec.versions.filter(isRecord) : [];
  if (versions.length === 0) required("spec.versions");
  if (versions.filter((v) => v.storage === true).length !== 1) invalid("spec.versions", "", "must have exactly one version marked as storage version");
  // Like the real apiserver, refuse a CRD whose CEL rules do not compile (the rules are compiled again at registration).
  for (const [i, v] of versions.entries()) {
    const schema = openApiSchema(v);
    if (!schema) continue;
    try {
      compileSchema(schema);
    } catch (e) {
      if (!(e instanceof SchemaCompileError)) throw e;
      for (const r of e.errors) invalid(`spec.versions[${i}].schema.${r.path}`, r.rule, r.message);
    }
  }
  if (causes.length > 0) throw ApiError.invalid("CustomResourceDefinition", "apiextensions.k8s.io", name, causes);
}

function openApiSchema(version: JsonMap): JsonMap | undefined {
  return isRecord(version.schema) && isRecord(version.schema.openAPIV3Schema) ? version.schema.openAPIV3Schema : undefined;
}

/** Compiles a version's schema for validation; a schema that does not compile (refused by validateCrd on writes) validates nothing. */
function validatorOf(schema: JsonMap | undefined): CompiledSchema | undefined {
  if (!schema) return undefined;
  try {
    return compileSchema(schema);
  } catch (e) {
    if (e instanceof SchemaCompileError) return undefined;
    throw e;
  }
}

function printerColumns(version: JsonMap): PrinterColumn[] | undefined {
  if (!Array.isArray(version.additionalPrinterColumns)) return undefined;
  return version.additionalPrinterColumns.filter(isRecord).map((c) => {
    const col: { -readonly [K in keyof PrinterColumn]: PrinterColumn[K] } = {
      name: str(c.name) ?? "",
      type: str(c.type) ?? "string",
      jsonPath: str(c.jsonPath) ?? "",
    };
    if (str(c.format) !== undefined) col.format = str(c.format);
    if (str(c.description) !== undefined) col.description = str(c.description);
    if (typeof c.priority === "number") col.priority = c.priority;
    return col;
  });
}

/** The resource types a (valid) CRD serves: one per `served` version. */
export function crdTypes(crd: KubeObject): ResourceType[] {
  const spec = isRecord(crd.spec) ? crd.spec : {};
  const n = names(spec);
  const group = str(spec.group) ?? "";
  const versions = Array.isArray(spec.versions) ? spec.versions.filter(isRecord) : [];
  return versions
    .filter((v) => v.served !== false)
    .map((v) => {
      const subresources = isRecord(v.subresources) ? v.subresources : {};
      const schema = openApiSchema(v);
      const columns = printerColumns(v);
      const validator = validatorOf(schema);
      return {
        group,
        version: str(v.name) ?? "",
        plural: n.plural,
        singular: n.singular,
        kind: n.kind,
        listKind: n.listKind,
        namespaced: spec.scope !== "Cluster",
        shortNames: n.shortNames,
        categories: n.categories,
        statusSubresource: isRecord(subresources.status),
        custom: true,
        // All versions share storage: the served versions of one CRD are views of the same objects.
        bucket: `${group}/${n.plural}`,
        ...(columns ? { printerColumns: columns } : {}),
        ...(schema ? { schema } : {}),
        ...(validator ? { validator } : {}),
        crdName: crd.metadata.name ?? "",
        nameRule: "dns-subdomain" as const,
        allowCreateOnUpdate: false,
        returnDeletedObject: true,
        generation: true,
      };
    });
}

/** The status the apiserver maintains: names accepted, established, stored versions. */
export function crdStatus(crd: KubeObject, now: string): JsonMap {
  const spec = isRecord(crd.spec) ? crd.spec : {};
  const n = names(spec);
  const old = isRecord(crd.status) ? crd.status : {};
  const oldConditions = Array.isArray(old.conditions) ? old.conditions.filter(isRecord) : [];
  const since = (type: string) => str(oldConditions.find((c) => c.type === type)?.lastTransitionTime) ?? now;
  const storage = (Array.isArray(spec.versions) ? spec.versions.filter(isRecord) : []).find((v) => v.storage === true);
  const stored = new Set([...strings(old.storedVersions), ...(storage && str(storage.name) ? [str(storage.name) ?? ""] : [])]);
  return {
    acceptedNames: {
      plural: n.plural,
      singular: n.singular,
      kind: n.kind,
      listKind: n.listKind,
      ...(n.shortNames.length > 0 ? { shortNames: n.shortNames } : {}),
      ...(n.categories.length > 0 ? { categories: n.categories } : {}),
    },
    conditions: [
      { type: "NamesAccepted", status: "True", lastTransitionTime: since("NamesAccepted"), reason: "NoConflicts", message: "no conflicts found" },
      { type: "Established", status: "True", lastTransitionTime: since("Established"), reason: "InitialNamesAccepted", message: "the initial names have been accepted" },
    ],
    storedVersions: [...stored],
  };
}
