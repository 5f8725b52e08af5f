/**
 * Failures as `meta/v1 Status` objects, worded like the real apiserver's, since
 * kubectl prints their `message` verbatim and clients branch on `code`/`reason`.
 *
 * @example
 * ```ts
 * import { ApiError } from "./status.ts";
 * const e = ApiError.notFound({ group: "", plural: "namespaces" }, "shop");
 * console.log(e.code, e.status().message); // 404 namespaces "shop" not found
 * ```
 * @module
 */
import type { JsonMap } from "./types.ts";

/** `metav1.StatusReason` values this server produces. */
export type StatusReason =
  | "NotFound"
  | "AlreadyExists"
  | "Conflict"
  | "Invalid"
  | "BadRequest"
  | "Gone"
  | "Expired"
  | "MethodNotAllowed"
  | "UnsupportedMediaType"
  | "NotAcceptable"
  | "Timeout"
  | "InternalError";

/** One field problem of an `Invalid` error (`details.causes[]`). */
export interface StatusCause {
  readonly reason: string;
  readonly message: string;
  readonly field: string;
}

interface Resource {
  readonly group: string;
  readonly plural: string;
}

/** `services` or `clusterwidenetworkpolicies.metal-stack.io`, as the real messages name a resource. */
function qualified(r: Resource): string {
  return r.group === "" ? r.plural : `${r.plural}.${r.group}`;
}

/** An error that the HTTP layer answers with its `Status` object. */
export class ApiError extends Error {
  override readonly name = "ApiError";
  constructor(
    readonly code: number,
    readonly reason: StatusReason,
    message: string,
    readonly details?: JsonMap,
  ) {
    super(message);
  }

  /** The `Status` body. */
  status(): JsonMap {
    const s: JsonMap = { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message: this.message, reason: this.reason };
    if (this.details) s.details = this.details;
    s.code = this.code;
    return s;
  }

  static notFound(r: Resource, name: string): ApiError {
    return new ApiError(404, "NotFound", `${qualified(r)} "${name}" not found`, { name, group: r.group, kind: r.plural });
  }

  static alreadyExists(r: Resource, name: string): ApiError {
    return new ApiError(409, "AlreadyExists", `${qualified(r)} "${name}" already exists`, { name, group: r.group, kind: r.plural });
  }

  /** Optimistic concurrency failure (stale `metadata.resourceVersion` or a failed precondition). */
  static conflict(r: Resource, name: string, why = "the object has been modified; please apply your changes to the latest version and try again"): ApiError {
    return new ApiError(409, "Conflict", `Operation cannot be fulfilled on ${qualified(r)} "${name}": ${why}`, {
      name,
      group: r.group,
      kind: r.plural,
    });
  }

  /** 422 with field causes, message shaped `Kind "name" is invalid: field: Invalid value: ...`. */
  static invalid(kind: string, group: string, name: string, causes: readonly StatusCause[]): ApiError {
    const text = causes.map((c) => `${c.field}: ${c.message}`).join(", ");
    const list = causes.length > 1 ? `[${text}]` : text;
    return new ApiError(422, "Invalid", `${kind}${group ? `.${group}` : ""} "${name}" is invalid: ${list}`, {
      name,
      group,
      kind,
      causes: causes.map((c) => ({ ...c })),
    });
  }

  static badRequest(message: string): ApiError {
    return new ApiError(400, "BadRequest", message);
  }

  /** A watch or exact list from a resourceVersion whose history is gone. */
  static expired(message: string): ApiError {
    return new ApiError(410, "Expired", message);
  }

  /** A read "not older than" a resourceVersion the server has not reached (storage.NewTooLargeResourceVersionError). */
  static tooLargeResourceVersion(wanted: number, current: number): ApiError {
    return new ApiError(504, "Timeout", `Timeout: Too large resource version: ${wanted}, current: ${current}`, {
      causes: [{ reason: "ResourceVersionTooLarge", message: "Too large resource version" }],
      retryAfterSeconds: 1,
    });
  }

  static methodNotAllowed(method: string): ApiError {
    return new ApiError(405, "MethodNotAllowed", `the server does not allow this method on the requested resource (${method})`);
  }

  /** The path names nothing the server serves. */
  static noRoute(): ApiError {
    return new ApiError(404, "NotFound", "the server could not find the requested resource", {});
  }
}
