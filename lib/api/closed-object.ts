/**
 * Objects whose unknown keys are problems (SPEC §3.2: "a typo must never widen
 * a rule"). Used for a policy's rules, blocks and ports and for the Firewall
 * spec; everywhere else unknown keys are ignored (SPEC §3).
 *
 * valibot's `strictObject` reports only the first unknown key, and like
 * `objectWithRest` it never looks at `__proto__`, `prototype` or `constructor`;
 * here every own key is checked and every problem reported at once.
 *
 * @example
 * ```ts
 * import * as v from "valibot";
 * import { closedObject } from "./closed-object.ts";
 * const Port = closedObject({ port: v.optional(v.number()) }, "ports take port");
 * const r = v.safeParse(Port, { prot: 22 }, { abortEarly: false });
 * // r.issues: [{ message: "unknown key (ports take port)", path: [{ key: "prot", ... }] }]
 * ```
 * @module
 */
import * as v from "valibot";
import { show } from "./problem.ts";

export const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);

/** A path item naming `key` of `input`; valibot wants full items, issuePath reads only `key`. */
export const pathItem = (input: unknown, key: string | number): v.IssuePathItem =>
  ({ type: "object", origin: "value", input, key, value: undefined }) as unknown as v.IssuePathItem;

type AddIssue = (info: { message: string; path?: [v.IssuePathItem, ...v.IssuePathItem[]] }) => void;

/**
 * Adds one problem per own key of `input` not in `allowed` (in the input's
 * key order, linear in its keys); returns whether there was any.
 */
export function reportUnknownKeys(input: Record<string, unknown>, allowed: ReadonlySet<string>, takes: string, addIssue: AddIssue): boolean {
  let any = false;
  for (const key of Object.keys(input)) {
    if (allowed.has(key)) continue;
    any = true;
    addIssue({ message: `unknown key (${takes})`, path: [pathItem(input, key)] });
  }
  return any;
}

/**
 * A `looseObject` of `entries` that also rejects every other key, each with
 * the message `unknown key (<takes>)` at its own path. `takes` says what the
 * object accepts, e.g. `ingress rules take from, ports`.
 */
export function closedObject<const E extends v.ObjectEntries>(entries: E, takes: string, notAnObject?: v.ErrorMessage<v.LooseObjectIssue>) {
  const inner = v.looseObject(entries, notAnObject ?? ((i) => `${show(i.input)} is not an object`));
  const allowed = new Set(Object.keys(entries));
  return v.pipe(
    v.unknown(),
    v.rawTransform<unknown, v.InferOutput<typeof inner>>(({ dataset, config, addIssue, NEVER }) => {
      const r = v.safeParse(inner, dataset.value, { abortEarly: config.abortEarly, abortPipeEarly: config.abortPipeEarly, lang: config.lang });
      // Entry problems first, with their own paths (the enclosing schemas prefix theirs).
      if (!r.success) for (const issue of r.issues) addIssue({ message: issue.message, ...(issue.path ? { path: issue.path } : {}) });
      const unknown = isRecord(dataset.value) && reportUnknownKeys(dataset.value, allowed, takes, addIssue);
      return r.success && !unknown ? r.output : NEVER;
    }),
  );
}
