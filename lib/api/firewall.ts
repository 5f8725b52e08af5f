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
import * as v from "valibot";
import type { Cidr } from "./address.ts";
import { parseDuration } from "./duration.ts";
import { MetadataSchema } from "./meta.ts";
import { CidrSchema } from "./policy.ts";
import { issuesToProblems, show, type Validated } from "./problem.ts";

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
}

// Linux IFNAMSIZ is 16 including the terminator; the kernel refuses "/", ":" and whitespace.
const IFNAME = /^[A-Za-z0-9_.@-]{1,15}$/;

export const InterfaceNameSchema = v.pipe(
  v.string((i) => `${show(i.input)} is not an interface name`),
  v.check((s) => IFNAME.test(s) && s !== "." && s !== "..", (i) => `${show(i.input)} is not a Linux interface name (1..15 of A-Z a-z 0-9 _ . @ -)`),
);

const FirewallObjectSchema = v.looseObject({
  apiVersion: v.literal("metal-stack.io/v1", (i) => `${show(i.input)} is not metal-stack.io/v1`),
  kind: v.literal("Firewall"),
  metadata: MetadataSchema,
  spec: v.optional(
    v.looseObject({
      interval: v.optional(
        v.pipe(
          v.string((i) => `${show(i.input)} is not a duration string`),
          v.rawTransform(({ dataset, addIssue, NEVER }) => {
            const ms = parseDuration(dataset.value);
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
          v.check((s) => s === "" || (s.startsWith("/") && !s.includes("\0")), (i) => `${show(i.input)} is not an absolute path`),
        ),
      ),
      ratelimits: v.optional(
        v.nullable(
          v.array(
            v.looseObject({
              interface: InterfaceNameSchema,
              rate: v.pipe(
                v.unknown(),
                v.check((x) => typeof x === "number" && Number.isInteger(x) && x >= 1 && x <= 100_000, (i) => `${show(i.input)} is not a rate in Mbit/s (an integer 1..100000)`),
                v.transform((x) => x as number),
              ),
            }),
          ),
        ),
      ),
      internalprefixes: v.optional(v.nullable(v.array(CidrSchema))),
    }),
    {},
  ),
});

/** Validates a Firewall object. */
export function parseFirewall(input: unknown): Validated<FirewallSpec> {
  const r = v.safeParse(FirewallObjectSchema, input, { abortEarly: false });
  if (!r.success) return { ok: false, problems: issuesToProblems(r.issues) };
  const { metadata, spec } = r.output;
  const seen = new Map<string, number>();
  const problems: { path: string; message: string }[] = [];
  (spec.ratelimits ?? []).forEach((l, i) => {
    const prev = seen.get(l.interface);
    if (prev !== undefined) problems.push({ path: `spec.ratelimits[${i}].interface`, message: `${show(l.interface)} is already limited by spec.ratelimits[${prev}]` });
    seen.set(l.interface, i);
  });
  if (problems.length > 0) return { ok: false, problems };
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
      internalPrefixes: spec.internalprefixes ?? [],
    },
    notes: [],
  };
}
