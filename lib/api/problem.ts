/**
 * What is wrong with an object, and where: the unit of every validation report
 * (CWNP status message, Event, log line, stderr with `--once`).
 *
 * @example
 * ```ts
 * import { formatProblems } from "./problem.ts";
 * formatProblems([{ path: "spec.egress[0].ports[0].port", message: "0 is not a port (1..65535)" }]);
 * // "spec.egress[0].ports[0].port: 0 is not a port (1..65535)"
 * ```
 * @module
 */
import * as v from "valibot";

export interface Problem {
  /** Field path inside the object, e.g. `spec.egress[0].to[1].except[0]`. */
  readonly path: string;
  /** What is wrong, naming the offending value. */
  readonly message: string;
}

/** The result of validating one object: its typed value (with notes), or every problem. */
export type Validated<T> =
  | { readonly ok: true; readonly value: T; readonly notes: readonly Problem[] }
  | { readonly ok: false; readonly problems: readonly Problem[] };

/** Renders a valibot issue path (`[{key:"spec"},{key:"egress"},{key:0}]`) as `spec.egress[0]`. */
export function issuePath(path: readonly { key: unknown }[] | undefined, base = ""): string {
  let out = base;
  for (const item of path ?? []) {
    const key = item.key;
    if (typeof key === "number") out += `[${key}]`;
    else out += out === "" ? String(key) : `.${String(key)}`;
  }
  return out;
}

/** Turns valibot issues into problems; the schemas write value-naming messages themselves. */
export function issuesToProblems(issues: readonly v.BaseIssue<unknown>[]): Problem[] {
  return issues.map((i) => ({ path: issuePath(i.path as { key: unknown }[] | undefined) || "(object)", message: i.message }));
}

export const formatProblems = (problems: readonly Problem[]): string =>
  problems.map((p) => `${p.path}: ${p.message}`).join("; ");

/** Short JSON rendering of a user value for messages; long values are cut so logs stay readable. */
export function show(value: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(value) ?? String(value);
  } catch {
    s = String(value);
  }
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

/**
 * A valibot action that runs a parse function returning a discriminated
 * result, turning its message into an issue.
 *
 * @example
 * ```ts
 * import * as v from "valibot";
 * import { parseCidr } from "./address.ts";
 * import { parsedBy } from "./problem.ts";
 * const Cidr = v.pipe(v.string(), parsedBy(parseCidr));
 * ```
 */
export function parsedBy<I, O>(parse: (input: I) => { ok: true; value: O } | { ok: false; message: string }) {
  return v.rawTransform<I, O>(({ dataset, addIssue, NEVER }) => {
    const r = parse(dataset.value);
    if (r.ok) return r.value;
    addIssue({ message: r.message });
    return NEVER;
  });
}
