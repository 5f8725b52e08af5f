/**
 * OpenAPI v3 documents (`/openapi/v3` and `/openapi/v3/<api|apis/g>/<v>`),
 * just enough for `kubectl apply`'s validation step.
 *
 * Why: `kubectl apply` (validation `strict`, its default) first asks the
 * OpenAPI v3 document of the object's group-version whether the PATCH
 * operation for that kind takes the `fieldValidation` query parameter. If it
 * does, kubectl leaves validation to the server (it sends
 * `fieldValidation=Strict`); if the v3 document is missing it falls back to
 * `/openapi/v2` (protobuf only) and fails without it ("failed to download
 * openapi"). So each document lists, per resource, the operations with
 * `x-kubernetes-group-version-kind` and a `fieldValidation` parameter.
 *
 * Component schemas: custom resources get their CRD schema (so
 * `kubectl explain` works for them); built-in kinds get none on purpose: when
 * kubectl finds no schema for a built-in kind it computes strategic merge
 * patches from its compiled-in types, which carry the real merge keys. The
 * server does not validate anything against these schemas.
 *
 * @example
 * ```ts
 * import { OpenApi } from "./openapi.ts";
 * import { Registry } from "./registry.ts";
 * const doc = new OpenApi(new Registry()).document("/openapi/v3");
 * console.log(JSON.parse(doc!.body.toString()).paths["api/v1"]); // { serverRelativeURL: "/openapi/v3/api/v1?hash=..." }
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import { KUBERNETES_VERSION } from "./discovery.ts";
import type { Registry } from "./registry.ts";
import type { JsonMap, ResourceType } from "./types.ts";

export interface OpenApiDocument {
  readonly contentType: string;
  readonly body: Buffer;
  readonly etag?: string;
}

/** The dotted definition name the real apiserver uses: `io.metal-stack.v1.Firewall` (group reversed). */
function definitionName(t: ResourceType): string {
  const group = t.group === "" ? "io.k8s.api.core" : t.group.split(".").reverse().join(".");
  return `${group}.${t.version}.${t.kind}`;
}

function param(name: string, where: "query" | "path", type = "string"): JsonMap {
  return { name, in: where, ...(where === "path" ? { required: true } : {}), schema: { type, uniqueItems: true } };
}

const WRITE_PARAMS = [param("dryRun", "query"), param("fieldManager", "query"), param("fieldValidation", "query")];

function operation(t: ResourceType, action: string, id: string, extra: JsonMap[] = []): JsonMap {
  const ref = t.custom ? { $ref: `#/components/schemas/${definitionName(t)}` } : { type: "object" };
  return {
    operationId: id,
    parameters: extra,
    responses: { "200": { description: "OK", content: { "application/json": { schema: ref } } } },
    "x-kubernetes-action": action,
    "x-kubernetes-group-version-kind": { group: t.group, version: t.version, kind: t.kind },
  };
}

function paths(t: ResourceType): Record<string, JsonMap> {
  const base = t.group === "" ? `/api/${t.version}` : `/apis/${t.group}/${t.version}`;
  const scope = t.namespaced ? `${base}/namespaces/{namespace}` : base;
  const nsParam = t.namespaced ? [param("namespace", "path")] : [];
  const collection = `${scope}/${t.plural}`;
  const item = `${collection}/{name}`;
  const id = `${t.kind}${t.group.replace(/\W/g, "")}${t.version}`;
  const out: Record<string, JsonMap> = {
    [collection]: {
      parameters: nsParam,
      get: operation(t, "list", `list${id}`),
      post: operation(t, "post", `create${id}`, WRITE_PARAMS),
      delete: operation(t, "deletecollection", `deleteCollection${id}`),
    },
    [item]: {
      parameters: [param("name", "path"), ...nsParam],
      get: operation(t, "get", `read${id}`),
      put: operation(t, "put", `replace${id}`, WRITE_PARAMS),
      patch: operation(t, "patch", `patch${id}`, [...WRITE_PARAMS, param("force", "query", "boolean")]),
      delete: operation(t, "delete", `delete${id}`, [param("dryRun", "query")]),
    },
  };
  if (t.statusSubresource) {
    out[`${item}/status`] = {
      parameters: [param("name", "path"), ...nsParam],
      get: operation(t, "get", `read${id}Status`),
      put: operation(t, "put", `replace${id}Status`, WRITE_PARAMS),
      patch: operation(t, "patch", `patch${id}Status`, [...WRITE_PARAMS, param("force", "query", "boolean")]),
    };
  }
  return out;
}

function schemas(types: readonly ResourceType[]): JsonMap {
  const out: JsonMap = {};
  for (const t of types) {
    if (!t.custom) continue;
    out[definitionName(t)] = {
      ...(t.schema ?? { type: "object", "x-kubernetes-preserve-unknown-fields": true }),
      "x-kubernetes-group-version-kind": [{ group: t.group, version: t.version, kind: t.kind }],
    };
  }
  return out;
}

export class OpenApi {
  constructor(readonly registry: Registry) {}

  /** `/openapi/v3/api/v1` or `/openapi/v3/apis/<g>/<v>` per group-version. */
  #documentPath(g: string, v: string): string {
    return g === "" ? `api/${v}` : `apis/${g}/${v}`;
  }

  #groupVersionDoc(group: string, version: string): Buffer | undefined {
    const types = this.registry.ofGroupVersion(group, version);
    if (types.length === 0) return undefined;
    const doc = {
      openapi: "3.0.0",
      info: { title: "Kubernetes", version: KUBERNETES_VERSION.gitVersion },
      paths: Object.assign({}, ...types.map(paths)),
      components: { schemas: schemas(types) },
    };
    return Buffer.from(JSON.stringify(doc));
  }

  /** The document at `path`, or undefined (404). OpenAPI v2 is not served (kubectl does not need it once v3 answers). */
  document(path: string): OpenApiDocument | undefined {
    if (path === "/openapi/v3") {
      const index: Record<string, JsonMap> = {};
      for (const { group, versions } of this.registry.groups()) {
        for (const v of versions) {
          const body = this.#groupVersionDoc(group, v);
          if (!body) continue;
          const hash = createHash("sha512").update(body).digest("hex").slice(0, 64).toUpperCase();
          const p = this.#documentPath(group, v);
          index[p] = { serverRelativeURL: `/openapi/v3/${p}?hash=${hash}` };
        }
      }
      return { contentType: "application/json", body: Buffer.from(JSON.stringify({ paths: index })) };
    }
    const m = /^\/openapi\/v3\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))$/.exec(path);
    if (!m) return undefined;
    const [group, version] = m[1] !== undefined ? ["", m[1]] : [m[2] ?? "", m[3] ?? ""];
    const body = this.#groupVersionDoc(group, version);
    if (!body) return undefined;
    return { contentType: "application/json", body, etag: createHash("sha256").update(body).digest("hex").toUpperCase() };
  }
}


