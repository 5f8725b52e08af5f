/**
 * The Firewall object (SPEC §3.1): reconcile interval, rate limits and the
 * internal prefixes used for accounting.
 *
 * @example
 * ```ts
 * import { parseFirewall } from "./firewall.ts";
 * const r = parseFirewall({
 *   apiVersion: "metal-stack.io/v1", kind: "Firewall",
 *   metadata: { name: "firewall", namespace: "firewall" },
 *   spec: { interval: "10s", ratelimits: [{ interface: "vrf104009", rate: 10 }] },
 * });
 * if (r.ok) console.log(r.value.intervalMs); // 10000
 * ```
 * @module
 */
import { basename, dirname, isAbsolute, resolve } from "node:path";
import * as v from "valibot";
import { escapeText } from "../escape.ts";
import type { Cidr } from "./address.ts";
import { closedObject } from "./closed-object.ts";
import { parseDuration } from "./duration.ts";
import { MetadataSchema } from "./meta.ts";
import { CidrSchema } from "./policy.ts";
import { issuesToProblems, type Problem, show, type Validated } from "./problem.ts";

export interface RateLimit {
  readonly interface: string;
  /** Megabits per second. */
  readonly rateMbit: number;
}

export interface FirewallSpec {
  readonly name: string;
  readonly namespace: string;
  readonly generation: number | undefined;
  readonly intervalMs: number;
  readonly dryrun: boolean;
  readonly rulesetFile: string | undefined;
  readonly rateLimits: readonly RateLimit[];
  readonly internalPrefixes: readonly Cidr[];
  /** `spec.logacceptedconnections`: also log accepted new connections (SPEC §3.1, §10); default false. */
  readonly logAcceptedConnections: boolean;
}

// Linux IFNAMSIZ is 16 including the terminator; the kernel refuses "/", ":" and whitespace.
const IFNAME = /^[A-Za-z0-9_.@-]{1,15}$/;

export const InterfaceNameSchema = v.pipe(
  v.string((i) => `${show(i.input)} is not an interface name`),
  v.check((s) => IFNAME.test(s) && s !== "." && s !== "..", (i) => `${show(i.input)} is not a Linux interface name (1..15 of A-Z a-z 0-9 _ . @ -)`),
);

const RATE_LIMIT_KEYS = "ratelimits take interface, rate";

const FILE_NAME = /^[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,254}$/;

/** Where ruleset files may live unless the caller says otherwise (SPEC §4.7; `--ruleset-dir`). */
export const DEFAULT_RULESET_DIR = "/etc/nftables/";

/**
 * Why `file` may not be the ruleset file when files must live directly in
 * `dir`, or undefined when it may. The Firewall object is cluster input:
 * whoever may edit it must not be able to make the controller (root) write
 * anywhere else. Normalised means `path.resolve` leaves it as it is: no `..`,
 * no `.`, no `//`, no trailing `/`; the name is plain (no control characters,
 * not hidden).
 */
export function rulesetFileProblem(file: string, dir: string): string | undefined {
  const home = resolve(dir);
  const shown = `${escapeText(home === "/" ? "/" : `${home}/`)}`;
  if (file.length > 4096) return `${show(file)} is longer than a path can be (4096 characters, as the CRD allows)`;
  if (!isAbsolute(file) || file.includes("\0")) return `${show(file)} is not an absolute path (the ruleset file must be a file directly in ${shown})`;
  const resolved = resolve(file);
  if (resolved !== file) return `${show(file)} is not a normalised path (it resolves to ${show(resolved)}; write the path without "..", "." or "//")`;
  if (dirname(resolved) !== home) return `${show(file)} is outside ${shown} (the ruleset file must be a file directly in ${shown}, the controller's --ruleset-dir)`;
  // The name reaches messages and the temp file's name (`.<name>.<random>.tmp`): plain characters only.
  if (!FILE_NAME.test(basename(resolved))) return `${show(file)} is not a plain file name in ${shown} (1..255 of A-Z a-z 0-9 . _ + -, not starting with .)`;
  return undefined;
}

function firewallObjectSchema(rulesetDir: string) {
  return v.looseObject({
    apiVersion: v.literal("metal-stack.io/v1", (i) => `${show(i.input)} is not metal-stack.io/v1`),
    kind: v.literal("Firewall"),
    metadata: MetadataSchema,
    spec: v.optional(
      closedObject(
        {
          interval: v.optional(
            v.pipe(
              v.string((i) => `${show(i.input)} is not a duration string`),
              v.rawTransform(({ dataset, addIssue, NEVER }) => {
                // Go durations are short; a long string is not one, and the regex need not see it.
                const ms = dataset.value.length > 64 ? undefined : parseDuration(dataset.value);
                // Upper bound: timers overflow past 2^31 ms, and a day between reconciles is no firewall anyone wants.
                if (ms === undefined || ms < 1000 || ms > 86_400_000) {
                  addIssue({ message: `${show(dataset.value)} is not a duration between 1s and 24h (e.g. 10s, 1m30s)` });
                  return NEVER;
                }
                return ms;
              }),
            ),
            "10s",
          ),
          dryrun: v.optional(v.boolean((i) => `${show(i.input)} is not a boolean`), false),
          ipv4rulefile: v.optional(
            v.pipe(
              v.string((i) => `${show(i.input)} is not a path`),
              v.rawCheck(({ dataset, addIssue }) => {
                if (!dataset.typed || dataset.value === "") return;
                const problem = rulesetFileProblem(dataset.value, rulesetDir);
                if (problem) addIssue({ message: problem });
              }),
            ),
          ),
          ratelimits: v.optional(
            v.nullable(
              v.array(
                closedObject(
                  {
                    interface: InterfaceNameSchema,
                    rate: v.pipe(
                      v.unknown(),
                      v.check((x) => typeof x === "number" && Number.isInteger(x) && x >= 1 && x <= 100_000, (i) => `${show(i.input)} is not a rate in Mbit/s (an integer 1..100000)`),
                      v.transform((x) => x as number),
                    ),
                  },
                  RATE_LIMIT_KEYS,
                  (i) => `${show(i.input)} is not a rate limit ({interface, rate})`,
                ),
                (i) => `${show(i.input)} is not a list of rate limits`,
              ),
            ),
          ),
          internalprefixes: v.optional(v.nullable(v.array(CidrSchema, (i) => `${show(i.input)} is not a list of CIDR strings`))),
          // SPEC §3.1: log accepted new connections too (lib/ruleset/render.ts, accept_log).
          logacceptedconnections: v.optional(v.boolean((i) => `${show(i.input)} is not a boolean`), false),
        },
        "the Firewall spec takes interval, dryrun, ipv4rulefile, ratelimits, internalprefixes, logacceptedconnections",
        (i) => `${show(i.input)} is not an object`,
      ),
      {},
    ),
  });
}

// One schema per ruleset directory; there is one in a process, the map only spares rebuilding it per call.
const schemas = new Map<string, ReturnType<typeof firewallObjectSchema>>();
const schemaFor = (dir: string) => {
  let s = schemas.get(dir);
  if (!s) {
    s = firewallObjectSchema(dir);
    schemas.set(dir, s);
  }
  return s;
};

/** Options of {@link parseFirewall}. */
export interface FirewallOptions {
  /** The only directory `spec.ipv4rulefile` may name a file in; default {@link DEFAULT_RULESET_DIR}. */
  readonly rulesetDir?: string;
}

/**
 * Validates a Firewall object: every problem at once, each with its path.
 * Unknown keys in `spec` (and in its rate limits) are problems; host bits set
 * in an internal prefix are cleared and noted.
 *
 * @example
 * ```ts
 * import { parseFirewall } from "./firewall.ts";
 * const r = parseFirewall(
 *   { apiVersion: "metal-stack.io/v1", kind: "Firewall", metadata: { name: "firewall", namespace: "firewall" },
 *     spec: { ipv4rulefile: "/etc/passwd" } },
 *   { rulesetDir: "/etc/nftables/" },
 * );
 * // r.ok === false; r.problems[0].path === "spec.ipv4rulefile"
 * ```
 */
export function parseFirewall(input: unknown, options?: FirewallOptions): Validated<FirewallSpec> {
  const r = v.safeParse(schemaFor(options?.rulesetDir ?? DEFAULT_RULESET_DIR), input, { abortEarly: false });
  if (!r.success) return { ok: false, problems: issuesToProblems(r.issues) };
  const { metadata, spec } = r.output;
  const seen = new Map<string, number>();
  const problems: Problem[] = [];
  (spec.ratelimits ?? []).forEach((l, i) => {
    const prev = seen.get(l.interface);
    if (prev !== undefined) problems.push({ path: `spec.ratelimits[${i}].interface`, message: `${show(l.interface)} is already limited by spec.ratelimits[${prev}]` });
    seen.set(l.interface, i);
  });
  if (problems.length > 0) return { ok: false, problems };
  const internalPrefixes = spec.internalprefixes ?? [];
  const rawPrefixes = (input as { spec?: { internalprefixes?: unknown[] } }).spec?.internalprefixes;
  const notes: Problem[] = [];
  internalPrefixes.forEach((c, i) => {
    if (c.hostBitsSet) notes.push({ path: `spec.internalprefixes[${i}]`, message: `${show(rawPrefixes?.[i])} has host bits set; using ${c.text}` });
  });
  return {
    ok: true,
    value: {
      name: metadata.name,
      namespace: metadata.namespace,
      generation: metadata.generation,
      intervalMs: spec.interval as number,
      dryrun: spec.dryrun,
      rulesetFile: spec.ipv4rulefile || undefined,
      rateLimits: (spec.ratelimits ?? []).map((l) => ({ interface: l.interface, rateMbit: l.rate })),
      internalPrefixes,
      logAcceptedConnections: spec.logacceptedconnections,
    },
    notes,
  };
}
