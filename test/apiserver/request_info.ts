/**
 * What a request path names, parsed the way the apiserver's `RequestInfo`
 * does: discovery and OpenAPI documents, or a resource with optional
 * namespace, name and subresource, and which Kubernetes verb the request is.
 *
 * @example
 * ```ts
 * import { parseRequest } from "./request_info.ts";
 * const r = parseRequest("GET", new URL("http://x/apis/metal-stack.io/v1/namespaces/firewall/firewalls?watch=1"));
 * console.log(r.route.kind === "resource" && r.route.plural, r.verb); // firewalls watch
 * ```
 * @module
 */

/** A resource path: `/api/v1/...` or `/apis/<group>/<version>/...`. */
export interface ResourceRoute {
  readonly kind: "resource";
  readonly group: string;
  readonly version: string;
  readonly namespace?: string;
  readonly plural: string;
  readonly name?: string;
  readonly subresource?: string;
}

export type Route =
  | { readonly kind: "version" }
  | { readonly kind: "health" }
  | { readonly kind: "api" }
  | { readonly kind: "apis" }
  | { readonly kind: "group"; readonly group: string }
  | { readonly kind: "groupVersion"; readonly group: string; readonly version: string }
  | { readonly kind: "openapi"; readonly path: string }
  | ResourceRoute
  | { readonly kind: "unknown" };

/** `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`, or the lower-case method for non-resource paths. */
export type Verb = string;

export interface RequestInfo {
  readonly route: Route;
  readonly verb: Verb;
}

/** Subresources of a namespace object, which otherwise would read as a resource inside the namespace. */
const NAMESPACE_SUBRESOURCES = new Set(["status", "finalize"]);

function resourceRoute(group: string, version: string, parts: string[]): { route: Route; watch: boolean } {
  let rest = parts;
  let watch = false;
  if (rest[0] === "watch") {
    // The deprecated `/watch/` path prefix, still served by real apiservers.
    watch = true;
    rest = rest.slice(1);
  }
  let namespace: string | undefined;
  if (rest[0] === "namespaces" && rest.length >= 3 && !NAMESPACE_SUBRESOURCES.has(rest[2] ?? "")) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const [plural, name, subresource, ...more] = rest;
  if (plural === undefined || more.length > 0) return { route: { kind: "unknown" }, watch };
  return {
    route: {
      kind: "resource",
      group,
      version,
      plural,
      ...(namespace !== undefined ? { namespace } : {}),
      ...(name !== undefined ? { name } : {}),
      ...(subresource !== undefined ? { subresource } : {}),
    },
    watch,
  };
}

function route(pathname: string): { route: Route; watch: boolean } {
  const parts = pathname.split("/").filter((p) => p !== "").map(decodeURIComponent);
  const plain = (r: Route) => ({ route: r, watch: false });
  if (pathname === "/version" || pathname === "/version/") return plain({ kind: "version" });
  if (["healthz", "livez", "readyz"].includes(parts[0] ?? "")) return plain({ kind: "health" });
  if (parts[0] === "openapi") return plain({ kind: "openapi", path: `/${parts.join("/")}` });
  if (parts[0] === "api") {
    if (parts.length === 1) return plain({ kind: "api" });
    if (parts[1] !== "v1") return plain({ kind: "unknown" });
    if (parts.length === 2) return plain({ kind: "groupVersion", group: "", version: "v1" });
    return resourceRoute("", "v1", parts.slice(2));
  }
  if (parts[0] === "apis") {
    const [, group, version] = parts;
    if (group === undefined) return plain({ kind: "apis" });
    if (version === undefined) return plain({ kind: "group", group });
    if (parts.length === 3) return plain({ kind: "groupVersion", group, version });
    return resourceRoute(group, version, parts.slice(3));
  }
  return plain({ kind: "unknown" });
}

/** Parses method and URL into the route and the Kubernetes verb. */
export function parseRequest(method: string, url: URL): RequestInfo {
  const { route: r, watch } = route(url.pathname);
  const m = method.toUpperCase();
  if (r.kind !== "resource") return { route: r, verb: m.toLowerCase() };
  const watchParam = url.searchParams.get("watch");
  const wantsWatch = watch || watchParam === "true" || watchParam === "1";
  let verb: Verb;
  switch (m) {
    case "GET":
    case "HEAD":
      verb = r.name === undefined ? (wantsWatch ? "watch" : "list") : wantsWatch ? "watch" : "get";
      break;
    case "POST":
      verb = "create";
      break;
    case "PUT":
      verb = "update";
      break;
    case "PATCH":
      verb = "patch";
      break;
    case "DELETE":
      verb = r.name === undefined ? "deletecollection" : "delete";
      break;
    default:
      verb = m.toLowerCase();
  }
  return { route: r, verb };
}
