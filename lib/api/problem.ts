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
import { escapeText, groupDigits } from "../escape.ts";

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

// A key made of these is printed as it is; any other (an unknown key is user text) is quoted by show().
const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_-]{0,62}$/;

/**
 * Renders a valibot issue path (`[{key:"spec"},{key:"egress"},{key:0}]`) as
 * `spec.egress[0]`; a key that is not a plain name is shown quoted and escaped
 * (`spec["a\nb"]`), so a path can never add a line to a report.
 */
export function issuePath(path: readonly { key: unknown }[] | undefined, base = ""): string {
  let out = base;
  for (const item of path ?? []) {
    const key = item.key;
    if (typeof key === "number") out += `[${key}]`;
    else if (typeof key === "string" && PLAIN_KEY.test(key)) out += out === "" ? key : `.${key}`;
    else out += `[${show(typeof key === "string" ? key : String(key))}]`;
  }
  return out;
}

/** Turns valibot issues into problems; the schemas write value-naming messages themselves. */
export function issuesToProblems(issues: readonly v.BaseIssue<unknown>[]): Problem[] {
  return issues.map((i) => ({ path: issuePath(i.path as { key: unknown }[] | undefined) || "(object)", message: i.message }));
}

export const formatProblems = (problems: readonly Problem[]): string =>
  problems.map((p) => `${p.path}: ${p.message}`).join("; ");

/** How much of a value {@link show} renders, in characters of its JSON text. */
export const SHOW_MAX = 120;

/**
 * The first `max` characters of `value`'s JSON text, built without rendering
 * the rest (a 5 MB value costs what 120 characters cost). Cycles are shown as
 * `"[Circular]"`; values JSON has no form for (undefined, bigint, NaN) as
 * `String()` gives them.
 */
function jsonHead(value: unknown, max: number): { text: string; cut: boolean } {
  const out: string[] = [];
  let left = max;
  let cut = false;
  const emit = (s: string) => {
    if (s.length > left) {
      out.push(s.slice(0, left));
      left = 0;
      cut = true;
    } else {
      out.push(s);
      left -= s.length;
    }
  };
  const ancestors = new Set<object>();
  const walk = (x: unknown): void => {
    if (left <= 0) {
      cut = true;
      return;
    }
    if (typeof x === "string") {
      // Cut before quoting: only the kept part is ever escaped.
      emit(JSON.stringify(x.length > left ? x.slice(0, left) : x));
      if (x.length > left) cut = true;
    } else if (typeof x === "number") emit(Number.isFinite(x) ? JSON.stringify(x) : String(x));
    else if (typeof x === "boolean" || x === null) emit(String(x));
    else if (typeof x !== "object") emit(String(x));
    else if (ancestors.has(x)) emit('"[Circular]"');
    else if (x instanceof Date) emit(JSON.stringify(Number.isNaN(x.getTime()) ? "Invalid Date" : x.toISOString()));
    else {
      ancestors.add(x);
      const isArray = Array.isArray(x);
      emit(isArray ? "[" : "{");
      let first = true;
      // for...in stops with the budget; Object.keys would list a 300,000-key object first.
      for (const key in x) {
        if (left <= 0) {
          cut = true;
          break;
        }
        if (!Object.hasOwn(x, key)) continue;
        if (!first) emit(",");
        first = false;
        if (!isArray) emit(`${JSON.stringify(key.length > left ? key.slice(0, left) : key)}:`);
        walk((x as Record<string, unknown>)[key]);
      }
      emit(isArray ? "]" : "}");
      ancestors.delete(x);
    }
  };
  walk(value);
  return { text: out.join(""), cut };
}

/**
 * A user value as it may appear in a message: JSON, passed through
 * {@link escapeText} (JSON escapes C0 controls but not C1 or bidi controls),
 * and cut after `max` characters of it (default {@link SHOW_MAX}) with a note
 * on how much was left out. Cost bounded by `max`, whatever the value's size.
 *
 * @example
 * ```ts
 * import { show } from "./problem.ts";
 * show("a\nb");               // "\"a\\nb\""
 * show("x".repeat(1000), 3);  // "\"xxx\"…(997 more characters)"
 * show({ port: "\u202e80" });  // "{\"port\":\"\\u202e80\"}"
 * ```
 */
export function show(value: unknown, max: number = SHOW_MAX): string {
  if (typeof value === "string") {
    const end = value.length > max ? max : value.length;
    // Do not split a surrogate pair at the cut.
    const keep = end < value.length && end > 0 && /[\ud800-\udbff]/.test(value.charAt(end - 1)) ? end - 1 : end;
    const quoted = escapeText(JSON.stringify(keep === value.length ? value : value.slice(0, keep)), { max: Number.POSITIVE_INFINITY });
    return keep === value.length ? quoted : `${quoted}…(${groupDigits(value.length - keep)} more characters)`;
  }
  const { text, cut } = jsonHead(value, max);
  const safe = escapeText(text, { max: Number.POSITIVE_INFINITY });
  return cut ? `${safe}…(cut at ${max} characters)` : safe;
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
