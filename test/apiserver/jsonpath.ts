/**
 * The subset of Kubernetes JSONPath that printer columns use
 * (`additionalPrinterColumns[].jsonPath`): `.field`, `['field']`, `[n]`,
 * `[*]`, `.*`, `[a:b]`, `..field` and filters `[?(@.type=="Ready")]` with
 * `==`, `!=`, `<`, `<=`, `>`, `>=` or bare existence. Missing keys yield no
 * result (the apiserver's column evaluation allows missing keys).
 *
 * @example
 * ```ts
 * import { compileJsonPath } from "./jsonpath.ts";
 * const ready = compileJsonPath('.status.conditions[?(@.type=="Ready")].status');
 * console.log(ready({ status: { conditions: [{ type: "Ready", status: "True" }] } })); // ["True"]
 * ```
 * @module
 */
import { deepEqual, isRecord } from "./types.ts";

type Step =
  | { kind: "field"; name: string }
  | { kind: "recursive"; name: string }
  | { kind: "wildcard" }
  | { kind: "index"; index: number }
  | { kind: "slice"; start?: number; end?: number; step?: number }
  | { kind: "filter"; path: Step[]; op?: string; value?: unknown };

/** Evaluates to every value the path selects, in document order. */
export type JsonPath = (root: unknown) => unknown[];

class Parser {
  pos = 0;
  constructor(readonly text: string) {}

  fail(why: string): never {
    throw new Error(`invalid JSONPath "${this.text}" at ${this.pos}: ${why}`);
  }

  peek(s: string): boolean {
    return this.text.startsWith(s, this.pos);
  }

  steps(stopAt: (p: Parser) => boolean): Step[] {
    const steps: Step[] = [];
    while (this.pos < this.text.length && !stopAt(this)) {
      if (this.peek("..")) {
        this.pos += 2;
        steps.push({ kind: "recursive", name: this.identifier() });
      } else if (this.peek(".")) {
        this.pos++;
        if (this.peek("*")) {
          this.pos++;
          steps.push({ kind: "wildcard" });
        } else if (this.peek("[")) {
          continue; // `.[0]` is tolerated like `[0]`
        } else {
          steps.push({ kind: "field", name: this.identifier() });
        }
      } else if (this.peek("[")) {
        steps.push(this.bracket());
      } else {
        this.fail(`unexpected "${this.text[this.pos]}"`);
      }
    }
    return steps;
  }

  identifier(): string {
    const m = /^[^.[\]\s()=!<>]+/.exec(this.text.slice(this.pos));
    if (!m) this.fail("expected a field name");
    this.pos += m[0].length;
    return m[0];
  }

  quoted(): string {
    const q = this.text[this.pos];
    const end = this.text.indexOf(q ?? "'", this.pos + 1);
    if (end < 0) this.fail("unterminated string");
    const s = this.text.slice(this.pos + 1, end);
    this.pos = end + 1;
    return s;
  }

  bracket(): Step {
    this.pos++; // [
    let step: Step;
    if (this.peek("?(")) {
      this.pos += 2;
      step = this.filter();
      if (!this.peek(")")) this.fail('expected ")"');
      this.pos++;
    } else if (this.peek("'") || this.peek('"')) {
      step = { kind: "field", name: this.quoted() };
    } else if (this.peek("*")) {
      this.pos++;
      step = { kind: "wildcard" };
    } else {
      const m = /^(-?\d*)(?::(-?\d*))?(?::(-?\d*))?/.exec(this.text.slice(this.pos));
      if (!m || m[0] === "") this.fail("expected an index, a slice, a quoted name, * or a filter");
      this.pos += m[0].length;
      const num = (s: string | undefined) => (s === undefined || s === "" ? undefined : Number(s));
      if (m[0].includes(":")) {
        const slice: { kind: "slice"; start?: number; end?: number; step?: number } = { kind: "slice" };
        const [start, end, stride] = [num(m[1]), num(m[2]), num(m[3])];
        if (start !== undefined) slice.start = start;
        if (end !== undefined) slice.end = end;
        if (stride !== undefined) slice.step = stride;
        step = slice;
      } else {
        step = { kind: "index", index: Number(m[1]) };
      }
    }
    if (!this.peek("]")) this.fail('expected "]"');
    this.pos++;
    return step;
  }

  filter(): Step {
    while (this.peek(" ")) this.pos++;
    if (!this.peek("@")) this.fail('a filter starts with "@"');
    this.pos++;
    const path = this.steps((p) => /^\s*(==|!=|<=|>=|<|>|\))/.test(p.text.slice(p.pos)));
    while (this.peek(" ")) this.pos++;
    const op = /^(==|!=|<=|>=|<|>)/.exec(this.text.slice(this.pos))?.[0];
    if (op === undefined) return { kind: "filter", path };
    this.pos += op.length;
    while (this.peek(" ")) this.pos++;
    let value: unknown;
    if (this.peek("'") || this.peek('"')) value = this.quoted();
    else {
      const m = /^[^)\s]+/.exec(this.text.slice(this.pos));
      if (!m) this.fail("expected a value");
      this.pos += m[0].length;
      value = m[0] === "true" ? true : m[0] === "false" ? false : m[0] === "null" ? null : Number(m[0]);
    }
    while (this.peek(" ")) this.pos++;
    return { kind: "filter", path, op, value };
  }
}

function descendants(v: unknown): unknown[] {
  const out: unknown[] = [v];
  if (Array.isArray(v)) for (const x of v) out.push(...descendants(x));
  else if (isRecord(v)) for (const x of Object.values(v)) out.push(...descendants(x));
  return out;
}

function compare(a: unknown, op: string, b: unknown): boolean {
  switch (op) {
    case "==":
      return deepEqual(a, b) || (typeof a === "number" && String(a) === String(b));
    case "!=":
      return !compare(a, "==", b);
  }
  if (typeof a !== "number" || typeof b !== "number") return false;
  return op === "<" ? a < b : op === "<=" ? a <= b : op === ">" ? a > b : a >= b;
}

function apply(steps: readonly Step[], nodes: unknown[]): unknown[] {
  let cur = nodes;
  for (const step of steps) {
    const next: unknown[] = [];
    for (const n of cur) {
      switch (step.kind) {
        case "field":
          if (isRecord(n) && Object.hasOwn(n, step.name)) next.push(n[step.name]);
          break;
        case "recursive":
          for (const d of descendants(n)) if (isRecord(d) && Object.hasOwn(d, step.name)) next.push(d[step.name]);
          break;
        case "wildcard":
          if (Array.isArray(n)) next.push(...n);
          else if (isRecord(n)) next.push(...Object.values(n));
          break;
        case "index":
          if (Array.isArray(n)) {
            const i = step.index < 0 ? n.length + step.index : step.index;
            if (i >= 0 && i < n.length) next.push(n[i]);
          }
          break;
        case "slice":
          if (Array.isArray(n)) {
            const norm = (i: number) => (i < 0 ? Math.max(0, n.length + i) : Math.min(i, n.length));
            const start = norm(step.start ?? 0);
            const end = norm(step.end ?? n.length);
            const stride = step.step ?? 1;
            for (let i = start; i < end; i += Math.max(1, stride)) next.push(n[i]);
          }
          break;
        case "filter":
          if (Array.isArray(n)) {
            for (const el of n) {
              const found = apply(step.path, [el]);
              if (step.op === undefined ? found.length > 0 : found.some((f) => compare(f, step.op ?? "==", step.value))) next.push(el);
            }
          }
          break;
      }
    }
    cur = next;
  }
  return cur;
}

/** Compiles a path such as `.status.state` or `{.spec.ports[*].port}`; throws on syntax errors. */
export function compileJsonPath(text: string): JsonPath {
  let t = text.trim();
  if (t.startsWith("{") && t.endsWith("}")) t = t.slice(1, -1).trim();
  if (t.startsWith("$")) t = t.slice(1);
  const parser = new Parser(t);
  const steps = parser.steps(() => false);
  return (root) => apply(steps, [root]);
}
