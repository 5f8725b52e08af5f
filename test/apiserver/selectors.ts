/**
 * Label selectors (`app=web,tier in (a,b),!legacy`) and field selectors
 * (`metadata.name=x,involvedObject.uid!=y`) as list and watch accept them.
 *
 * Field selectors are evaluated on any dotted path of the object as the client
 * sees it (for events.k8s.io that is `regarding.name`, for core/v1 events
 * `involvedObject.name`); the real apiserver allows only a few fields per type
 * and rejects others, which no client of this server relies on.
 *
 * @example
 * ```ts
 * import { parseLabelSelector, parseFieldSelector } from "./selectors.ts";
 * const labels = parseLabelSelector("app=web,tier in (a,b)");
 * console.log(labels({ metadata: { labels: { app: "web", tier: "a" } } })); // true
 * const fields = parseFieldSelector("metadata.name=web");
 * console.log(fields({ metadata: { name: "web" } })); // true
 * ```
 * @module
 */
import { ApiError } from "./status.ts";
import { isRecord, type KubeObject } from "./types.ts";

/** A compiled selector: true when the object matches. */
export type Selector = (o: KubeObject) => boolean;

const everything: Selector = () => true;

/** Splits at commas that are not inside parentheses (the `in (a,b)` lists). */
function splitTopLevel(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of s) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      parts.push(cur);
      cur = "";
    } else cur += ch;
  }
  parts.push(cur);
  return parts.map((p) => p.trim()).filter((p) => p !== "");
}

const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

function checkKey(k: string, whole: string): string {
  if (!LABEL_KEY.test(k)) throw ApiError.badRequest(`unable to parse requirement: invalid label key "${k}" in selector "${whole}"`);
  return k;
}

/** Parses a label selector; empty means everything. Throws a 400 `ApiError` on bad syntax. */
export function parseLabelSelector(text: string | null | undefined): Selector {
  if (!text || text.trim() === "") return everything;
  const tests: Selector[] = [];
  const labels = (o: KubeObject) => o.metadata.labels ?? {};
  for (const req of splitTopLevel(text)) {
    let m: RegExpMatchArray | null;
    if ((m = req.match(/^(\S+)\s+(in|notin)\s*\((.*)\)$/))) {
      const k = checkKey(m[1] ?? "", text);
      const values = new Set((m[3] ?? "").split(",").map((v) => v.trim()).filter((v) => v !== ""));
      const negate = m[2] === "notin";
      tests.push((o) => {
        const v = labels(o)[k];
        return negate ? v === undefined || !values.has(v) : v !== undefined && values.has(v);
      });
    } else if ((m = req.match(/^([^=!<>\s]+)\s*(==|=|!=)\s*(\S*)$/))) {
      const k = checkKey(m[1] ?? "", text);
      const want = m[3] ?? "";
      const negate = m[2] === "!=";
      tests.push((o) => (negate ? labels(o)[k] !== want : labels(o)[k] === want));
    } else if ((m = req.match(/^([^=!<>\s]+)\s*([<>])\s*(-?\d+)$/))) {
      const k = checkKey(m[1] ?? "", text);
      const bound = Number(m[3]);
      const gt = m[2] === ">";
      tests.push((o) => {
        const v = labels(o)[k];
        if (v === undefined || !/^-?\d+$/.test(v)) return false;
        return gt ? Number(v) > bound : Number(v) < bound;
      });
    } else if ((m = req.match(/^!\s*(\S+)$/))) {
      const k = checkKey(m[1] ?? "", text);
      tests.push((o) => labels(o)[k] === undefined);
    } else if ((m = req.match(/^(\S+)$/))) {
      const k = checkKey(m[1] ?? "", text);
      tests.push((o) => labels(o)[k] !== undefined);
    } else {
      throw ApiError.badRequest(`unable to parse requirement: found '${req}', expected: in, notin, =, ==, !=, gt, lt`);
    }
  }
  return (o) => tests.every((t) => t(o));
}

/** The value at a dotted path, as a field selector compares it (strings as they are, others stringified). */
export function fieldValue(o: unknown, path: string): string {
  let cur: unknown = o;
  for (const seg of path.split(".")) {
    if (!isRecord(cur)) return "";
    cur = cur[seg];
  }
  if (cur === undefined || cur === null) return "";
  return typeof cur === "string" ? cur : typeof cur === "object" ? JSON.stringify(cur) : String(cur);
}

/** Splits `a=b,c!=d` honouring backslash escapes (`\,`, `\=`, `\\`) in values. */
function splitFieldTerms(text: string): { key: string; op: "=" | "!="; value: string }[] {
  const terms: { key: string; op: "=" | "!="; value: string }[] = [];
  const raw: string[] = [];
  let cur = "";
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === "\\" && i + 1 < text.length) {
      cur += ch + text[++i];
    } else if (ch === ",") {
      raw.push(cur);
      cur = "";
    } else cur += ch;
  }
  raw.push(cur);
  for (const r of raw) {
    if (r.trim() === "") continue;
    const m = r.match(/^([^=!]+?)\s*(!=|==|=)(.*)$/);
    if (!m) throw ApiError.badRequest(`invalid selector: '${text}'; can't understand '${r}'`);
    const value = (m[3] ?? "").replace(/\\(.)/g, "$1");
    terms.push({ key: (m[1] ?? "").trim(), op: m[2] === "!=" ? "!=" : "=", value });
  }
  return terms;
}

/** Parses a field selector; empty means everything. Throws a 400 `ApiError` on bad syntax. */
export function parseFieldSelector(text: string | null | undefined): Selector {
  if (!text || text.trim() === "") return everything;
  const terms = splitFieldTerms(text);
  return (o) => terms.every((t) => (fieldValue(o, t.key) === t.value) === (t.op === "="));
}
