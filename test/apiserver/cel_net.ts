/**
 * The Kubernetes CEL IP and CIDR libraries (`k8s.io/apiserver/pkg/cel/library`
 * ip.go and cidr.go, Kubernetes 1.31+) on top of `@marcbachmann/cel-js`, so the
 * CRDs' `x-kubernetes-validations` rules evaluate here as on a cluster.
 *
 * Parsing follows Go's `net/netip` (`ParseAddr`, `ParsePrefix`) plus the
 * library's own refusals: no IPv4 octets with leading zeros, no zones
 * (`fe80::1%eth0`), no IPv4-mapped IPv6 (`::ffff:1.2.3.4`), prefix bits in
 * plain decimal (`/08` and `/+8` are errors). Host bits after the prefix are
 * allowed (`isCIDR('10.0.0.1/8')` is true; `.masked()` clears them).
 *
 * `containsCIDR` is the corrected one of kubernetes/kubernetes#130450 (1.33):
 * the other CIDR's address is masked to this one's length before comparing.
 * Unpatched 1.31/1.32 servers compare it unmasked, so there
 * `cidr('10.0.0.0/8').containsCIDR('10.1.0.0/16')` is false; the CRDs avoid
 * containsCIDR for that reason (see crds/*.yaml).
 *
 * Functions: `isIP(string)`, `ip(string)`, `ip.isCanonical(string)`,
 * `<IP>.family()`, `.isUnspecified()`, `.isLoopback()`,
 * `.isLinkLocalMulticast()`, `.isLinkLocalUnicast()`, `.isGlobalUnicast()`,
 * `string(<IP>)`; `isCIDR(string)`, `cidr(string)`, `<CIDR>.containsIP(string|IP)`,
 * `.containsCIDR(string|CIDR)`, `.ip()`, `.masked()`, `.prefixLength()`,
 * `string(<CIDR>)`. Values compare with `==` by address (and prefix length).
 *
 * @example
 * ```ts
 * import { Environment } from "@marcbachmann/cel-js";
 * import { registerNetLibrary } from "./cel_net.ts";
 * const env = registerNetLibrary(new Environment());
 * console.log(env.evaluate("cidr('10.0.0.0/8').containsIP('10.1.2.3')")); // true
 * ```
 * @module
 */
import type { Environment } from "@marcbachmann/cel-js";

/** An IP address: family and value (32 or 128 bits). */
export class IPAddr {
  constructor(
    readonly family: 4 | 6,
    readonly value: bigint,
  ) {}

  get bits(): number {
    return this.family === 4 ? 32 : 128;
  }

  /** Go's `netip.Addr.String()`: dotted quad, or RFC 5952 IPv6 (lower case, longest run of 2+ zero groups as `::`). */
  toString(): string {
    if (this.family === 4) return [24n, 16n, 8n, 0n].map((s) => String((this.value >> s) & 0xffn)).join(".");
    const groups = Array.from({ length: 8 }, (_, i) => Number((this.value >> BigInt(112 - 16 * i)) & 0xffffn));
    let bestStart = -1;
    let bestLen = 1;
    for (let i = 0; i < 8; ) {
      let j = i;
      while (j < 8 && groups[j] === 0) j++;
      if (j - i > bestLen) {
        bestStart = i;
        bestLen = j - i;
      }
      i = j === i ? i + 1 : j;
    }
    const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(":");
    if (bestStart < 0) return hex(groups);
    return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
  }

  /** `::ffff:0:0/96`. */
  get is4In6(): boolean {
    return this.family === 6 && this.value >> 32n === 0xffffn;
  }
}

/** A CIDR as written: address (host bits kept) and prefix length. */
export class CIDRValue {
  constructor(
    readonly ip: IPAddr,
    readonly prefix: number,
  ) {}

  masked(): CIDRValue {
    return new CIDRValue(new IPAddr(this.ip.family, this.ip.value & mask(this.ip.bits, this.prefix)), this.prefix);
  }

  containsIP(ip: IPAddr): boolean {
    if (ip.family !== this.ip.family) return false;
    const m = mask(this.ip.bits, this.prefix);
    return (ip.value & m) === (this.ip.value & m);
  }

  containsCIDR(other: CIDRValue): boolean {
    return other.prefix >= this.prefix && this.containsIP(other.ip);
  }

  toString(): string {
    return `${this.ip.toString()}/${this.prefix}`;
  }
}

function mask(bits: number, prefix: number): bigint {
  const all = (1n << BigInt(bits)) - 1n;
  return all ^ ((1n << BigInt(bits - prefix)) - 1n);
}

function parseIPv4(s: string): bigint | undefined {
  const fields = s.split(".");
  if (fields.length !== 4) return undefined;
  let v = 0n;
  for (const f of fields) {
    // Go's netip: 1-3 decimal digits, no leading zeros ("010" is refused), at most 255.
    if (!/^(0|[1-9][0-9]{0,2})$/.test(f) || Number(f) > 255) return undefined;
    v = (v << 8n) | BigInt(f);
  }
  return v;
}

function parseGroups(s: string, allowV4Tail: boolean): number[] | undefined {
  if (s === "") return [];
  const parts = s.split(":");
  const out: number[] = [];
  for (const [i, g] of parts.entries()) {
    if (allowV4Tail && i === parts.length - 1 && g.includes(".")) {
      const v4 = parseIPv4(g);
      if (v4 === undefined) return undefined;
      out.push(Number(v4 >> 16n), Number(v4 & 0xffffn));
    } else if (/^[0-9a-fA-F]{1,4}$/.test(g)) out.push(Number.parseInt(g, 16));
    else return undefined;
  }
  return out;
}

function parseIPv6(s: string): bigint | undefined {
  const halves = s.split("::");
  if (halves.length > 2) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    const head = parseGroups(halves[0] ?? "", false);
    const tail = parseGroups(halves[1] ?? "", true);
    // "::" must stand for at least one zero group.
    if (!head || !tail || head.length + tail.length > 7) return undefined;
    groups = [...head, ...Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  } else {
    const all = parseGroups(s, true);
    if (!all || all.length !== 8) return undefined;
    groups = all;
  }
  return groups.reduce((v, g) => (v << 16n) | BigInt(g), 0n);
}

/** Go's `netip.ParseAddr` without zones; undefined when invalid. IPv4-mapped IPv6 parses (callers refuse it). */
function parseAddr(s: string): IPAddr | undefined {
  if (s.includes("%")) return undefined;
  if (s.includes(":")) {
    const v = parseIPv6(s);
    return v === undefined ? undefined : new IPAddr(6, v);
  }
  const v = parseIPv4(s);
  return v === undefined ? undefined : new IPAddr(4, v);
}

/** `ip(string)` of the Kubernetes library: throws with its messages. */
export function parseIP(s: string): IPAddr {
  if (s.includes("%")) throw new Error(`IP address "${s}" with zone value is not allowed`);
  const a = parseAddr(s);
  if (!a) throw new Error(`IP Address "${s}" parse error during conversion from string: ParseAddr("${s}"): invalid IP address`);
  if (a.is4In6) throw new Error(`IPv4-mapped IPv6 address "${s}" is not allowed`);
  return a;
}

/** `cidr(string)` of the Kubernetes library: throws with its messages. */
export function parseCIDR(s: string): CIDRValue {
  const fail = (why: string) => new Error(`network address parse error during conversion from string: netip.ParsePrefix("${s}"): ${why}`);
  const slash = s.lastIndexOf("/");
  if (slash < 0) throw fail("no '/'");
  const addr = s.slice(0, slash);
  const bits = s.slice(slash + 1);
  if (addr.includes("%")) throw fail("IPv6 zones cannot be present in a prefix");
  const ip = parseAddr(addr);
  if (!ip) throw fail(`ParseAddr("${addr}"): invalid IP address`);
  // Go 1.22+: decimal digits only, no sign, no leading zeros.
  if (!/^(0|[1-9][0-9]*)$/.test(bits)) throw fail(`bad bits after slash: "${bits}"`);
  if (Number(bits) > ip.bits) throw fail("prefix length out of range");
  if (ip.is4In6) throw new Error(`network address parse error during conversion from string: IPv4-mapped IPv6 address "${s}" is not allowed`);
  return new CIDRValue(ip, Number(bits));
}

function valid(f: () => unknown): boolean {
  try {
    f();
    return true;
  } catch {
    return false;
  }
}

function inRange(ip: IPAddr, cidr: string): boolean {
  return parseCIDR(cidr).containsIP(ip);
}

/** The `ip.isCanonical` namespace: CEL parses `ip.isCanonical(s)` as a call on an identifier `ip`. */
class IPNamespace {}

/** Registers the IP and CIDR libraries (types `net.IP`, `net.CIDR`) on a cel-js environment; returns it. */
export function registerNetLibrary(env: Environment): Environment {
  const is4 = (ip: IPAddr) => ip.family === 4;
  return env
    .registerType("net.IP", IPAddr)
    .registerType("net.CIDR", CIDRValue)
    .registerType("kubernetes.IPNamespace", IPNamespace)
    .registerConstant("ip", "kubernetes.IPNamespace", new IPNamespace())
    .registerFunction("isIP(string): bool", (s: string) => valid(() => parseIP(s)))
    .registerFunction("ip(string): net.IP", (s: string) => parseIP(s))
    .registerFunction("kubernetes.IPNamespace.isCanonical(string): bool", (_ns: IPNamespace, s: string) => parseIP(s).toString() === s)
    .registerFunction("net.IP.family(): int", (ip: IPAddr) => BigInt(ip.family))
    .registerFunction("net.IP.isUnspecified(): bool", (ip: IPAddr) => ip.value === 0n)
    .registerFunction("net.IP.isLoopback(): bool", (ip: IPAddr) => (is4(ip) ? inRange(ip, "127.0.0.0/8") : ip.value === 1n))
    .registerFunction("net.IP.isLinkLocalMulticast(): bool", (ip: IPAddr) =>
      is4(ip) ? inRange(ip, "224.0.0.0/24") : (Number(ip.value >> 112n) & 0xff0f) === 0xff02,
    )
    .registerFunction("net.IP.isLinkLocalUnicast(): bool", (ip: IPAddr) => inRange(ip, is4(ip) ? "169.254.0.0/16" : "fe80::/10"))
    .registerFunction("net.IP.isGlobalUnicast(): bool", (ip: IPAddr) => {
      // Go's netip: anything but unspecified, broadcast, loopback, multicast and link-local unicast.
      if (ip.value === 0n || (is4(ip) && ip.value === 0xffffffffn)) return false;
      if (is4(ip)) return !inRange(ip, "127.0.0.0/8") && !inRange(ip, "224.0.0.0/4") && !inRange(ip, "169.254.0.0/16");
      return ip.value !== 1n && !inRange(ip, "ff00::/8") && !inRange(ip, "fe80::/10");
    })
    .registerFunction("string(net.IP): string", (ip: IPAddr) => ip.toString())
    .registerFunction("isCIDR(string): bool", (s: string) => valid(() => parseCIDR(s)))
    .registerFunction("cidr(string): net.CIDR", (s: string) => parseCIDR(s))
    .registerFunction("net.CIDR.containsIP(string): bool", (c: CIDRValue, s: string) => c.containsIP(parseIP(s)))
    .registerFunction("net.CIDR.containsIP(net.IP): bool", (c: CIDRValue, ip: IPAddr) => c.containsIP(ip))
    .registerFunction("net.CIDR.containsCIDR(string): bool", (c: CIDRValue, s: string) => c.containsCIDR(parseCIDR(s)))
    .registerFunction("net.CIDR.containsCIDR(net.CIDR): bool", (c: CIDRValue, o: CIDRValue) => c.containsCIDR(o))
    .registerFunction("net.CIDR.ip(): net.IP", (c: CIDRValue) => c.ip)
    .registerFunction("net.CIDR.masked(): net.CIDR", (c: CIDRValue) => c.masked())
    .registerFunction("net.CIDR.prefixLength(): int", (c: CIDRValue) => BigInt(c.prefix))
    .registerFunction("string(net.CIDR): string", (c: CIDRValue) => c.toString())
    .registerOperator("net.IP == net.IP", (a: IPAddr, b: IPAddr) => a.family === b.family && a.value === b.value)
    .registerOperator("net.CIDR == net.CIDR", (a: CIDRValue, b: CIDRValue) => a.prefix === b.prefix && a.ip.family === b.ip.family && a.ip.value === b.ip.value);
}
