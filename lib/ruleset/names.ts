/**
 * Names of the chains and counters the renderer writes for policies and
 * services, and their comments. Names come only from validated object names
 * (RFC 1123: `a-z 0-9 - .`), which are valid nftables identifiers once prefixed.
 *
 * Chain (= counter) names are injective: two different objects never share a
 * chain or a counter. A name that fits (255 bytes, the kernel's limit) is kept
 * verbatim; a longer one (only policy names over 245 characters) keeps its head
 * verbatim and writes the rest of the name, reversibly, in base 62 after an
 * `_`. Valid names never contain `_` or upper-case letters, so a shortened form
 * never equals a verbatim one, and the shortened form decodes back to the name
 * ({@link decodeShortened}): no hash, no collision.
 *
 * Comments are capped at 128 characters by nft, too short to hold a 253-character
 * name in any encoding; a long name's comment keeps a verbatim head, then `~`
 * (never in a valid name) and 96 bits of the name's SHA-256. Comments of
 * different objects can therefore collide only by a SHA-256 collision; chains,
 * which carry the counters, never do.
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

/** Kernel limit of chain and counter names (NFT_NAME_MAXLEN 256, with the NUL). */
export const NAME_MAX = 255;
/** nft's limit of comments (NFTNL_UDATA_COMMENT_MAXLEN). */
export const COMMENT_MAX = 128;

/** Every character of a valid object name; a name is a numeral in bijective base 38 over these. */
const NAME_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz-.";
/** Characters of the encoded tail: valid in nft identifiers, and `_` stays free as the separator. */
const TAIL_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/** Separates the verbatim head from the encoded tail; never part of a valid name or of the tail. */
export const SHORTENED_MARK = "_";

/** Bijective base 38 (so "0" and "00" differ), then plain base 62: a positive number has one spelling. */
function encodeTail(tail: string): string {
  let n = 0n;
  for (let i = tail.length - 1; i >= 0; i--) n = n * 38n + BigInt(NAME_DIGITS.indexOf(tail[i] as string) + 1);
  let out = "";
  while (n > 0n) {
    out = (TAIL_DIGITS[Number(n % 62n)] as string) + out;
    n /= 62n;
  }
  return out;
}

function decodeTail(encoded: string): string {
  let n = 0n;
  for (const ch of encoded) n = n * 62n + BigInt(TAIL_DIGITS.indexOf(ch));
  let out = "";
  while (n > 0n) {
    const d = (n - 1n) % 38n;
    out += NAME_DIGITS[Number(d)] as string;
    n = (n - 1n - d) / 38n;
  }
  return out;
}

/**
 * `prefix + name` when it fits in `max`, else `prefix + head + "_" + base62(tail)`
 * with the longest head that fits. Only for names made of {@link NAME_DIGITS}.
 */
function fitName(prefix: string, name: string, max = NAME_MAX): string {
  const full = `${prefix}${name}`;
  if (full.length <= max) return full;
  // The tail shrinks by a factor of ~0.88 when encoded; grow it until the whole fits.
  for (let k = 1; k <= name.length; k++) {
    const out = `${prefix}${name.slice(0, name.length - k)}${SHORTENED_MARK}${encodeTail(name.slice(name.length - k))}`;
    if (out.length <= max) return out;
  }
  throw new Error(`name of ${name.length} characters cannot fit ${max - prefix.length} characters`);
}

/**
 * The object name a chain name was made from (the inverse of the shortening),
 * given the chain's prefix; what the injectivity tests decode with.
 *
 * @example
 * ```ts
 * import { decodeShortened, policyChain } from "./names.ts";
 * const name = "a".repeat(253);
 * decodeShortened(policyChain("egress", "tcp", name), "np.eg.tcp.") === name; // true
 * ```
 */
export function decodeShortened(chain: string, prefix: string): string {
  const rest = chain.slice(prefix.length);
  const at = rest.indexOf(SHORTENED_MARK);
  return at < 0 ? rest : rest.slice(0, at) + decodeTail(rest.slice(at + 1));
}

/** Comments: verbatim when they fit, else a verbatim head, `~` and 96 bits of SHA-256 of the name. */
function fitComment(prefix: string, name: string, suffix: string): string {
  const full = `${prefix}${name}${suffix}`;
  if (full.length <= COMMENT_MAX) return full;
  const hash = createHash("sha256").update(name).digest("hex").slice(0, 24);
  const room = COMMENT_MAX - prefix.length - suffix.length - hash.length - 1;
  return `${prefix}${name.slice(0, room)}~${hash}${suffix}`;
}

const DIR = { ingress: "in", egress: "eg" } as const;

/** The prefix of one policy's chains for one direction and protocol, e.g. `np.eg.tcp.`. */
export const policyChainPrefix = (dir: Direction, proto: ProtocolLabel): string => `np.${DIR[dir]}.${proto}.`;

/** Chain (and counter) of one policy's accepts for one direction and protocol. */
export const policyChain = (dir: Direction, proto: ProtocolLabel, name: string): string => fitName(policyChainPrefix(dir, proto), name);

/** The comment the original controller wrote; status.stats.rules is keyed by it. */
export const policyComment = (dir: Direction, proto: ProtocolLabel, name: string): string =>
  dir === "egress"
    ? fitComment("accept traffic for np ", name, ` ${proto}`)
    : fitComment("accept traffic for k8s network policy ", name, ` ${proto}`);

/**
 * Chain (and counter) of one LoadBalancer service. Namespaces and Service names
 * are labels (no dots, at most 63 characters), so `svc.<ns>.<name>` is at most
 * 131 characters and always verbatim, and the dot splits it unambiguously.
 */
export const serviceChain = (namespace: string, name: string): string => fitName("svc.", `${namespace}.${name}`);

export const serviceComment = (namespace: string, name: string): string => fitComment("accept traffic for k8s service ", `${namespace}/${name}`, "");
