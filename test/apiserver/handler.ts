/**
 * The Kubernetes HTTP API on top of {@link Rest}: routes a parsed request to
 * discovery, OpenAPI, a REST verb or a watch, negotiates the representation
 * (JSON, `Table`, `PartialObjectMetadata`) and answers errors as `Status`.
 * Knows nothing of fault injection or listening sockets ({@link ./server.ts}).
 *
 * @example
 * ```ts
 * import { createServer } from "node:http";
 * import { ApiHandler } from "./handler.ts";
 * import { Rest } from "./rest.ts";
 * import { WatchHub } from "./watch.ts";
 * const rest = new Rest();
 * const handler = new ApiHandler(rest, new WatchHub(rest), () => "127.0.0.1:6443");
 * createServer((req, res) => void handler.handle(req, res));
 * ```
 * @module
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { parse as parseYaml } from "yaml";
import { AGGREGATED_DISCOVERY_TYPE, aggregatedDiscovery, apiVersions, groupInfo, groupList, resourceList, versionInfo, wantsAggregatedDiscovery } from "./discovery.ts";
import { OpenApi } from "./openapi.ts";
import { decodeKubernetesProtobuf, ProtobufError } from "./protobuf.ts";
import { parseRequest, type RequestInfo, type ResourceRoute } from "./request_info.ts";
import type { FieldValidation, Rest } from "./rest.ts";
import { ApiError } from "./status.ts";
import { partialObjectMetadata, toTable, wantsTable, type IncludeObject } from "./table.ts";
import type { KubeObject, ResourceType } from "./types.ts";
import type { WatchHub } from "./watch.ts";

/** Writes a JSON answer. */
export function sendJson(res: ServerResponse, code: number, body: unknown, contentType = "application/json"): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(code, { "Content-Type": contentType, "Content-Length": Buffer.byteLength(text), "Cache-Control": "no-cache, private" });
  res.end(text);
}

const FIELD_VALIDATION = ["Ignore", "Warn", "Strict"] as const;
const OPTIONS_KIND: Record<string, string> = { create: "CreateOptions", update: "UpdateOptions", patch: "PatchOptions" };

/** `?fieldValidation=` of a write; anything but Ignore, Warn, Strict (or nothing: Warn) is a 422, as on a cluster. */
function fieldValidationOf(q: URLSearchParams, verb: string): { fieldValidation?: FieldValidation } {
  const v = q.get("fieldValidation");
  if (v === null || v === "") return {};
  if ((FIELD_VALIDATION as readonly string[]).includes(v)) return { fieldValidation: v as FieldValidation };
  const kind = OPTIONS_KIND[verb];
  if (kind === undefined) return {};
  throw new ApiError(422, "Invalid", `${kind}.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: ${JSON.stringify(v)}: supported values: "", "Ignore", "Strict", "Warn"`, {
    group: "meta.k8s.io",
    kind,
    name: "",
    causes: [{ reason: "FieldValueNotSupported", field: "fieldValidation", message: `Unsupported value: ${JSON.stringify(v)}: supported values: "", "Ignore", "Strict", "Warn"` }],
  });
}

/** Writes an error as a `Status` (non-API errors become 500 InternalError). */
export function sendError(res: ServerResponse, e: unknown): void {
  const err = e instanceof ApiError ? e : new ApiError(500, "InternalError", `Internal error occurred: ${e instanceof Error ? e.message : String(e)}`);
  sendJson(res, err.code, err.status());
}

/** Reads the whole request body. */
export function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function parseBody(body: Buffer, contentType: string | undefined): unknown {
  if (/protobuf/.test(contentType ?? "")) {
    try {
      return decodeKubernetesProtobuf(body);
    } catch (e) {
      if (!(e instanceof ProtobufError)) throw e;
      throw new ApiError(415, "UnsupportedMediaType", e.message);
    }
  }
  if (/cbor/.test(contentType ?? "")) {
    throw new ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml");
  }
  const text = body.toString("utf8");
  if (text.trim() === "") return undefined;
  try {
    return /yaml/.test(contentType ?? "") ? parseYaml(text) : JSON.parse(text);
  } catch (e) {
    throw ApiError.badRequest(`the request body could not be decoded: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** Clients may ask for protobuf first; they always accept JSON too, which is all this server speaks. */
function acceptsJson(accept: string | undefined): boolean {
  return !accept || accept.split(",").some((m) => /json|\*\/\*|yaml/.test(m));
}

function wantsPartialMetadata(accept: string | undefined): boolean {
  return !!accept && accept.split(",").some((m) => /as=PartialObjectMetadata(List)?\b/.test(m) && /g=meta\.k8s\.io/.test(m));
}

/** How long a list waits for a resourceVersion the server has not reached (the watch cache's blockTimeout). */
export const FRESHNESS_WAIT_MS = 3000;

export class ApiHandler {
  readonly #openapi: OpenApi;

  constructor(
    readonly rest: Rest,
    readonly watches: WatchHub,
    /** `host:port` clients reach the server at (for `/api`'s serverAddressByClientCIDRs). */
    readonly serverAddress: () => string,
    readonly options: { readonly aggregatedDiscovery: boolean } = { aggregatedDiscovery: true },
  ) {
    this.#openapi = new OpenApi(rest.registry);
  }

  /** Resolves once the store has reached `rv`; rejects with the watch cache's 504 after {@link FRESHNESS_WAIT_MS}. */
  async #whenFresh(rv: number): Promise<void> {
    const deadline = Date.now() + FRESHNESS_WAIT_MS;
    while (Number(this.rest.store.resourceVersion) < rv) {
      if (Date.now() >= deadline) throw ApiError.tooLargeResourceVersion(rv, Number(this.rest.store.resourceVersion));
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Answers one request (the body already read). */
  handle(req: IncomingMessage, res: ServerResponse, info: RequestInfo, url: URL, body: Buffer): void {
    try {
      this.#route(req, res, info, url, body);
    } catch (e) {
      sendError(res, e);
    }
  }

  #route(req: IncomingMessage, res: ServerResponse, info: RequestInfo, url: URL, body: Buffer): void {
    const accept = req.headers.accept;
    const aggregated = this.options.aggregatedDiscovery && wantsAggregatedDiscovery(accept);
    const r = info.route;
    const registry = this.rest.registry;
    if (r.kind !== "resource" && req.method !== "GET" && req.method !== "HEAD") throw ApiError.methodNotAllowed(req.method ?? "");
    switch (r.kind) {
      case "version":
        return sendJson(res, 200, versionInfo());
      case "health":
        res.writeHead(200, { "Content-Type": "text/plain" });
        res.end("ok");
        return;
      case "api":
        if (aggregated) return sendJson(res, 200, aggregatedDiscovery(registry, true), AGGREGATED_DISCOVERY_TYPE);
        return sendJson(res, 200, apiVersions(this.serverAddress()));
      case "apis":
        if (aggregated) return sendJson(res, 200, aggregatedDiscovery(registry, false), AGGREGATED_DISCOVERY_TYPE);
        return sendJson(res, 200, groupList(registry));
      case "group": {
        const g = groupInfo(registry, r.group);
        if (!g) throw ApiError.noRoute();
        return sendJson(res, 200, g);
      }
      case "groupVersion":
        if (registry.ofGroupVersion(r.group, r.version).length === 0) throw ApiError.noRoute();
        return sendJson(res, 200, resourceList(registry, r.group, r.version));
      case "openapi": {
        const doc = this.#openapi.document(r.path);
        if (!doc) throw ApiError.noRoute();
        res.writeHead(200, { "Content-Type": doc.contentType, "Content-Length": doc.body.length, ...(doc.etag ? { ETag: `"${doc.etag}"` } : {}) });
        res.end(doc.body);
        return;
      }
      case "resource":
        return this.#resource(req, res, info.verb, r, url, body);
      default:
        throw ApiError.noRoute();
    }
  }

  #resource(req: IncomingMessage, res: ServerResponse, verb: string, r: ResourceRoute, url: URL, body: Buffer): void {
    const t = this.rest.registry.find(r.group, r.version, r.plural);
    if (!t) throw ApiError.noRoute();
    if (r.namespace !== undefined && !t.namespaced) throw ApiError.noRoute();
    if (t.namespaced && r.namespace === undefined && verb !== "list" && verb !== "watch") {
      // Namespaced objects are only listed and watched across namespaces; the rest needs one.
      if (verb === "get") throw ApiError.noRoute();
      throw ApiError.methodNotAllowed(req.method ?? "");
    }
    if (r.subresource !== undefined && !(r.subresource === "status" && t.statusSubresource)) throw ApiError.noRoute();
    const accept = req.headers.accept;
    if (!acceptsJson(accept)) {
      throw new ApiError(406, "NotAcceptable", `only the following media types are accepted: application/json, application/yaml`);
    }
    const q = url.searchParams;
    const ns = r.namespace;
    const warnings: string[] = [];
    const write = {
      dryRun: q.get("dryRun") === "All",
      ...(r.subresource === "status" ? { subresource: "status" as const } : {}),
      ...fieldValidationOf(q, verb),
      warn: (m: string) => warnings.push(m),
    };
    // Warnings of a write (unknown fields with fieldValidation=Warn), as `Warning: 299 - "..."` headers (kubectl prints them).
    const warned = () => {
      if (warnings.length > 0) res.setHeader("Warning", warnings.map((w) => `299 - ${JSON.stringify(w)}`));
    };
    const contentType = req.headers["content-type"];
    switch (verb) {
      case "get":
        return this.#answer(res, req, q, t, this.rest.get(t, ns, r.name ?? ""));
      case "list": {
        const answer = () => {
          const list = this.rest.list(t, ns, {
            labelSelector: q.get("labelSelector"),
            fieldSelector: q.get("fieldSelector"),
            resourceVersion: q.get("resourceVersion"),
            resourceVersionMatch: q.get("resourceVersionMatch"),
          });
          if (wantsTable(accept)) {
            const includeObject = (q.get("includeObject") ?? "Metadata") as IncludeObject;
            return sendJson(res, 200, toTable(t, list.items, { includeObject, resourceVersion: list.metadata.resourceVersion ?? "" }));
          }
          if (wantsPartialMetadata(accept)) {
            return sendJson(res, 200, { kind: "PartialObjectMetadataList", apiVersion: "meta.k8s.io/v1", metadata: list.metadata, items: list.items.map(partialObjectMetadata) });
          }
          return sendJson(res, 200, list);
        };
        const wanted = Number(q.get("resourceVersion") ?? "");
        if (q.get("resourceVersionMatch") !== "Exact" && Number.isInteger(wanted) && wanted > Number(this.rest.store.resourceVersion)) {
          // "Not older than" a version the server has not reached (it was restarted empty): the watch cache waits
          // up to 3 s for it, then answers 504 "Too large resource version" (retry after 1 s).
          void this.#whenFresh(wanted).then(answer, (e: unknown) => sendError(res, e));
          return;
        }
        return answer();
      }
      case "watch": {
        const named = r.name !== undefined ? `metadata.name=${r.name}` : undefined;
        const fieldSelector = [named, q.get("fieldSelector")].filter((s) => s).join(",");
        const table = wantsTable(accept);
        const includeObject = (q.get("includeObject") ?? "Metadata") as IncludeObject;
        const timeout = q.get("timeoutSeconds");
        return this.watches.serve(
          {
            type: t,
            ...(ns !== undefined ? { namespace: ns } : {}),
            labelSelector: q.get("labelSelector"),
            fieldSelector,
            resourceVersion: q.get("resourceVersion"),
            allowWatchBookmarks: q.get("allowWatchBookmarks") === "true",
            sendInitialEvents: q.get("sendInitialEvents") === "true",
            ...(timeout !== null ? { timeoutSeconds: Number(timeout) } : {}),
            ...(table ? { render: (o: KubeObject) => toTable(t, [o], { includeObject }) } : {}),
          },
          res,
        );
      }
      case "create":
        if (r.name !== undefined) throw ApiError.methodNotAllowed("POST");
        return this.#answer(res, req, q, t, this.rest.create(t, ns, parseBody(body, contentType), write), 201, warned);
      case "update":
        return this.#answer(res, req, q, t, this.rest.update(t, ns, r.name ?? "", parseBody(body, contentType), write), 200, warned);
      case "patch":
        return this.#answer(res, req, q, t, this.rest.patch(t, ns, r.name ?? "", contentType ?? "", parseBody(body, contentType), write), 200, warned);
      case "delete": {
        const deleted = this.rest.delete(t, ns, r.name ?? "", parseBody(body, contentType), write);
        return sendJson(res, 200, deleted);
      }
      case "deletecollection":
        return sendJson(
          res,
          200,
          this.rest.deleteCollection(t, ns, { labelSelector: q.get("labelSelector"), fieldSelector: q.get("fieldSelector") }, write),
        );
      default:
        throw ApiError.methodNotAllowed(req.method ?? "");
    }
  }

  /** One object, as JSON, Table or PartialObjectMetadata, as the client asked. */
  #answer(res: ServerResponse, req: IncomingMessage, q: URLSearchParams, t: ResourceType, o: KubeObject, code = 200, before?: () => void): void {
    before?.();
    const accept = req.headers.accept;
    if (wantsTable(accept)) {
      const includeObject = (q.get("includeObject") ?? "Metadata") as IncludeObject;
      return sendJson(res, code, toTable(t, [o], { includeObject }));
    }
    if (wantsPartialMetadata(accept)) return sendJson(res, code, partialObjectMetadata(o));
    sendJson(res, code, o);
  }
}
