/**
 * Names of the chains and counters the renderer writes for policies and
 * services, and their comments. Names come only from validated object names
 * (RFC 1123: `a-z 0-9 - .`), which are valid nftables identifiers once prefixed;
 * overlong ones are shortened with a stable hash so they stay unique and within
 * the kernel's 255-byte limit for names and comments.
 *
 * @example
 * ```ts
 * import { policyChain, policyComment } from "./names.ts";
 * policyChain("egress", "tcp", "allow-dns"); // "np.eg.tcp.allow-dns"
 * policyComment("egress", "tcp", "allow-dns"); // "accept traffic for np allow-dns tcp"
 * ```
 * @module
 */
import { createHash } from "node:crypto";

export type Direction = "ingress" | "egress";
export type ProtocolLabel = "tcp" | "udp" | "sctp" | "any";

const MAX = 255;

function fit(prefix: string, name: string, suffix = ""): string {
  const full = `${prefix}${name}${suffix}`;
  if (full.length <= MAX) return full;
  const hash = createHash("sha256").update(name).digest("hex").slice(0, 12);
  const room = MAX - prefix.length - suffix.length - hash.length - 1;
  return `${prefix}${name.slice(0, room)}~${hash}${suffix}`;
}

const DIR = { ingress: "in", egress: "eg" } as const;

/** Chain (and counter) of one policy's accepts for one direction and protocol. */
export const policyChain = (dir: Direction, proto: ProtocolLabel, name: string): string =>
  fit(`np.${DIR[dir]}.${proto}.`, name).replace("~", "-");

/** The comment the original controller wrote; status.stats.rules is keyed by it. */
export const policyComment = (dir: Direction, proto: ProtocolLabel, name: string): string =>
  dir === "egress" ? fit("accept traffic for np ", name, ` ${proto}`) : fit("accept traffic for k8s network policy ", name, ` ${proto}`);

export const serviceChain = (namespace: string, name: string): string => fit(`svc.${namespace}.`, name).replace("~", "-");

export const serviceComment = (namespace: string, name: string): string => fit("accept traffic for k8s service ", `${namespace}/${name}`);
