/**
 * Kubernetes object metadata as this program reads it: only name, namespace,
 * generation; every other field (uid, resourceVersion, labels, ...) is
 * ignored, never rejected, whatever its type.
 *
 * @example
 * ```ts
 * import * as v from "valibot";
 * import { MetadataSchema } from "./meta.ts";
 * v.parse(MetadataSchema, { name: "allow-dns", namespace: "firewall", labels: { a: "b" } });
 * ```
 * @module
 */
import * as v from "valibot";
import { show } from "./problem.ts";

// RFC 1123 subdomain (object names) and label (namespaces, Service names), as the API server enforces.
const SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export const isSubdomain = (s: string): boolean => s.length <= 253 && SUBDOMAIN.test(s);
export const isLabel = (s: string): boolean => s.length <= 63 && LABEL.test(s);

/** A name that is safe to put into nftables identifiers and comments (checked, not escaped). */
export const SubdomainName = v.pipe(
  v.string((i) => `${show(i.input)} is not a string`),
  v.check(isSubdomain, (i) => `${show(i.input)} is not a valid name (lowercase RFC 1123 subdomain, at most 253 characters)`),
);

export const LabelName = v.pipe(
  v.string((i) => `${show(i.input)} is not a string`),
  v.check(isLabel, (i) => `${show(i.input)} is not a valid name (lowercase RFC 1123 label, at most 63 characters)`),
);

export const MetadataSchema = v.looseObject(
  {
    name: SubdomainName,
    namespace: v.optional(LabelName, "default"),
    generation: v.optional(v.number((i) => `${show(i.input)} is not a number`)),
    // uid and resourceVersion are the API server's, not ours to judge: a file may carry any value
    // there (a numeric uid, say), and whoever needs them reads them from the object itself.
  },
  (i) => `${show(i.input)} is not an object`,
);

export type Metadata = v.InferOutput<typeof MetadataSchema>;
