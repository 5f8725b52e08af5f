/**
 * IP addresses and CIDR blocks as inclusive integer ranges, the form the
 * ruleset renderer computes with (set differences, unions, disjoint splits).
 *
 * @example
 * ```ts
 * import { parseCidr } from "./address.ts";
 * const r = parseCidr("203.0.113.7/24");
 * if (r.ok) console.log(r.value.text, r.value.hostBitsSet); // "203.0.113.0/24" true
 * ```
 * @module
 */
import ipaddr from "ipaddr.js";
import { show } from "./problem.ts";

export type Family = 4 | 6;

/** An inclusive range of addresses of one family. */
export interface AddressRange {
  readonly family: Family;
  readonly first: bigint;
  readonly last: bigint;
}

/** A parsed, normalised CIDR block. */
export interface Cidr extends AddressRange {
  readonly prefix: number;
  /** Normalised text, e.g. `203.0.113.0/24`. */
  readonly text: string;
  /** The input had host bits set (it was normalised to `text`). */
  readonly hostBitsSet: boolean;
}

/** A discriminated parse result: a value, or a message naming what is wrong. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

export const familyBits = (family: Family): number => (family === 4 ? 32 : 128);

/** The highest address of a family. */
export const familyMax = (family: Family): bigint => (1n << BigInt(familyBits(family))) - 1n;

/** The whole address space of a family as one range. */
export const anyAddress = (family: Family): AddressRange => ({ family, first: 0n, last: familyMax(family) });

const bytesToBigint = (bytes: number[]): bigint => {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return n;
};

const MAX_ADDRESS_TEXT = 45;

/** Parses a plain address (no prefix). */
export function parseAddress(text: string): Parsed<{ family: Family; value: bigint; text: string }> {
  const t = text;
  // The longest address text is 45 characters (IPv4-mapped IPv6); a longer input is not one, and the
  // parsers below need not see (and spend time on) a 5 MB string.
  if (t.length > MAX_ADDRESS_TEXT) return { ok: false, message: `${show(text)} is not an IPv4 or IPv6 address` };
  // ipaddr.js also accepts forms like "1" or "0x1.2"; only the canonical dotted quad is an IPv4 address here.
  if (ipaddr.IPv4.isValidFourPartDecimal(t)) {
    const a = ipaddr.IPv4.parse(t);
    return { ok: true, value: { family: 4, value: bytesToBigint(a.toByteArray()), text: a.toString() } };
  }
  if (ipaddr.IPv6.isValid(t) && t.includes(":") && !t.includes("%")) {
    const a = ipaddr.IPv6.parse(t);
    return { ok: true, value: { family: 6, value: bytesToBigint(a.toByteArray()), text: a.toString() } };
  }
  return { ok: false, message: `${show(text)} is not an IPv4 or IPv6 address` };
}

/** Parses `address/prefix`; host bits are cleared and reported through `hostBitsSet`. */
export function parseCidr(text: string): Parsed<Cidr> {
  const slash = text.indexOf("/");
  const hint = `${show(text)} is not a CIDR block (expected address/prefix, e.g. 203.0.113.0/24 or 2001:db8::/32)`;
  if (slash < 0 || text.length > MAX_ADDRESS_TEXT + 4) return { ok: false, message: hint };
  const addr = parseAddress(text.slice(0, slash));
  const prefixText = text.slice(slash + 1);
  // Strict like the API server's isCIDR: no spaces, no leading zeros in the prefix.
  if (!addr.ok || text.trim() !== text || !/^(0|[1-9]\d{0,2})$/.test(prefixText)) return { ok: false, message: hint };
  const { family, value } = addr.value;
  const bits = familyBits(family);
  const prefix = Number(prefixText);
  if (prefix > bits) {
    return { ok: false, message: `${show(text)} has prefix length ${prefix}, more than ${bits} for IPv${family}` };
  }
  const hostMask = (1n << BigInt(bits - prefix)) - 1n;
  const first = value & ~hostMask & familyMax(family);
  const last = first | hostMask;
  return {
    ok: true,
    value: { family, first, last, prefix, text: `${formatAddress(family, first)}/${prefix}`, hostBitsSet: first !== value },
  };
}

/** Formats an address of a family in its canonical short form. */
export function formatAddress(family: Family, value: bigint): string {
  if (family === 4) {
    // The hot path of rendering large rulesets; no need for a byte array here.
    const x = Number(value);
    return `${(x >>> 24) & 255}.${(x >>> 16) & 255}.${(x >>> 8) & 255}.${x & 255}`;
  }
  const n = 16;
  const bytes = new Array<number>(n);
  let v = value;
  for (let i = n - 1; i >= 0; i--) {
    bytes[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return ipaddr.fromByteArray(bytes).toString();
}

/** `a` lies wholly inside `b`. */
export const contains = (outer: AddressRange, inner: AddressRange): boolean =>
  outer.family === inner.family && outer.first <= inner.first && inner.last <= outer.last;

/**
 * Formats a range as nftables writes it: a single address, a CIDR block when the
 * range is exactly one, else `first-last`.
 */
export function formatRange(r: AddressRange): string {
  if (r.first === r.last) return formatAddress(r.family, r.first);
  const size = r.last - r.first + 1n;
  if ((size & (size - 1n)) === 0n && (r.first & (size - 1n)) === 0n) {
    const prefix = familyBits(r.family) - (size.toString(2).length - 1);
    return `${formatAddress(r.family, r.first)}/${prefix}`;
  }
  return `${formatAddress(r.family, r.first)}-${formatAddress(r.family, r.last)}`;
}

/** `base` minus every range in `cuts`, as sorted disjoint ranges. */
export function subtractRanges(base: AddressRange, cuts: readonly AddressRange[]): AddressRange[] {
  const sorted = cuts.filter((c) => c.family === base.family).toSorted((a, b) => (a.first < b.first ? -1 : a.first > b.first ? 1 : 0));
  const out: AddressRange[] = [];
  let cursor = base.first;
  for (const c of sorted) {
    if (c.last < cursor || c.first > base.last) continue;
    if (c.first > cursor) out.push({ family: base.family, first: cursor, last: c.first - 1n });
    if (c.last >= base.last) return out;
    cursor = c.last + 1n > cursor ? c.last + 1n : cursor;
  }
  if (cursor <= base.last) out.push({ family: base.family, first: cursor, last: base.last });
  return out;
}
