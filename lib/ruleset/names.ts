/**
 * Names of the chains and counters the renderer writes for policies and
 * services, and their comments. Names come only from validated object names
 * (RFC 1123: `a-z 0-9 - .`), which are valid nftables identifiers once prefixed;
 * overlong ones are shortened with a stable hash so they stay unique and within
 * the limits: 255 bytes for chain and counter names (kernel), 128 characters for
 * comments (nft refuses longer ones).
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

const NAME_MAX = 255;
const COMMENT_MAX = 128;

function fit(prefix: string, name: string, suffix = "", max = NAME_MAX): string {
  const full = `${prefix}${name}${suffix}`;
  if (full.length <= max) return full;
  const hash = createHash("sha256").update(name).digest("hex").slice(0, 12);
  const room = max - prefix.length - suffix.length - hash.length - 1;
  return `${prefix}${name.slice(0, room)}~${hash}${suffix}`;
}

const DIR = { ingress: "in", egress: "eg" } as const;

/** Chain (and counter) of one policy's accepts for one direction and protocol. */
export const policyChain = (dir: Direction, proto: ProtocolLabel, name: string): string =>
  fit(`np.${DIR[dir]}.${proto}.`, name).replace("~", "-");

/** The comment the original controller wrote; status.stats.rules is keyed by it. */
export const policyComment = (dir: Direction, proto: ProtocolLabel, name: string): string =>
  dir === "egress"
    ? fit("accept traffic for np ", name, ` ${proto}`, COMMENT_MAX)
    : fit("accept traffic for k8s network policy ", name, ` ${proto}`, COMMENT_MAX);

export const serviceChain = (namespace: string, name: string): string => fit(`svc.${namespace}.`, name).replace("~", "-");

export const serviceComment = (namespace: string, name: string): string => fit("accept traffic for k8s service ", `${namespace}/${name}`, "", COMMENT_MAX);
