import { describe, expect, test } from "bun:test";
import {
  type AddressRange,
  anyAddress,
  contains,
  formatAddress,
  formatRange,
  parseAddress,
  parseCidr,
  subtractRanges,
} from "../../lib/api/address.ts";

const v4 = (a: number, b: number, c: number, d: number): bigint => BigInt(((a << 24) >>> 0) + (b << 16) + (c << 8) + d);
const r4 = (first: bigint, last: bigint): AddressRange => ({ family: 4, first, last });
const cidr = (text: string) => {
  const r = parseCidr(text);
  if (!r.ok) throw new Error(`test setup: ${r.message}`);
  return r.value;
};

describe("parseCidr", () => {
  test.each([
    ["203.0.113.0/24", 4, "203.0.113.0/24", 24, v4(203, 0, 113, 0), v4(203, 0, 113, 255)],
    ["0.0.0.0/0", 4, "0.0.0.0/0", 0, 0n, 0xffffffffn],
    ["198.51.100.7/32", 4, "198.51.100.7/32", 32, v4(198, 51, 100, 7), v4(198, 51, 100, 7)],
    ["2001:db8::/32", 6, "2001:db8::/32", 32, 0x20010db8n << 96n, (0x20010db8n << 96n) | ((1n << 96n) - 1n)],
    ["2001:DB8::/32", 6, "2001:db8::/32", 32, 0x20010db8n << 96n, (0x20010db8n << 96n) | ((1n << 96n) - 1n)],
    ["::/0", 6, "::/0", 0, 0n, (1n << 128n) - 1n],
    ["2001:db8::1/128", 6, "2001:db8::1/128", 128, (0x20010db8n << 96n) | 1n, (0x20010db8n << 96n) | 1n],
  ] as const)("%p parses as IPv%p %p", (input, family, text, prefix, first, last) => {
    const r = parseCidr(input);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value).toEqual({ family, text, prefix, first, last, hostBitsSet: false });
  });

  test.each([
    ["203.0.113.7/24", "203.0.113.0/24"],
    ["10.1.2.3/8", "10.0.0.0/8"],
    ["255.255.255.255/0", "0.0.0.0/0"],
    ["2001:db8::1/32", "2001:db8::/32"],
    ["2001:db8:1:2:3:4:5:6/64", "2001:db8:1:2::/64"],
  ])("host bits of %p are cleared to %p and flagged", (input, text) => {
    const r = parseCidr(input);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.text).toBe(text);
    expect(r.value.hostBitsSet).toBe(true);
  });

  test.each([
    ["10.0.0.0/33", "33"],
    ["10.0.0.0/100", "100"],
    ["2001:db8::/129", "129"],
  ])("prefix too long for the family is rejected: %p", (input, prefix) => {
    const r = parseCidr(input);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.message).toContain(input);
    expect(r.message).toContain(prefix);
  });

  test.each([
    "1.2.3.4", // bare address, no prefix
    "2001:db8::1", // bare IPv6 address
    "1.2.3/24", // three-part IPv4
    "0x1.2.3.4/8", // hex part
    "1/8", // ipaddr.js would take "1" as an address
    "010.0.0.0/8", // octal-looking part
    "256.0.0.0/8",
    "10.0.0.0/",
    "/8",
    "10.0.0.0/-1",
    "10.0.0.0/+8",
    "10.0.0.0/8/8",
    "10.0.0.0/1000",
    "10.0.0.0/x",
    "fe80::1%eth0/64", // zone index
    "",
    "junk",
    "2001:db8::/32 except 2001:db8::/48",
  ])("%p is rejected with the value in the message", (input) => {
    const r = parseCidr(input);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.message).toContain(JSON.stringify(input));
  });
});

describe("parseAddress", () => {
  test.each([
    ["192.0.2.1", 4, "192.0.2.1"],
    ["2001:db8::1", 6, "2001:db8::1"],
    ["2001:0DB8:0000::0001", 6, "2001:db8::1"],
  ] as const)("%p is an IPv%p address written %p", (input, family, text) => {
    const r = parseAddress(input);
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.value).toMatchObject({ family, text });
  });

  test.each(["1", "0x1.2.3.4", "1.2.3", "192.0.2.1/32", "fe80::1%eth0", "", "example.com"])("%p is not an address", (input) => {
    const r = parseAddress(input);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toContain(JSON.stringify(input));
  });
});

describe("formatAddress and formatRange", () => {
  test("addresses are written in their canonical short form", () => {
    expect(formatAddress(4, v4(192, 0, 2, 1))).toBe("192.0.2.1");
    expect(formatAddress(6, (0x20010db8n << 96n) | 1n)).toBe("2001:db8::1");
    expect(formatAddress(6, 0n)).toBe("::");
  });

  test.each([
    ["single IPv4 address", r4(v4(192, 0, 2, 1), v4(192, 0, 2, 1)), "192.0.2.1"],
    ["prefix-aligned IPv4 range", r4(v4(192, 0, 2, 0), v4(192, 0, 2, 255)), "192.0.2.0/24"],
    ["whole IPv4 space", anyAddress(4), "0.0.0.0/0"],
    ["two addresses on a /31 boundary", r4(v4(192, 0, 2, 2), v4(192, 0, 2, 3)), "192.0.2.2/31"],
    ["unaligned IPv4 range", r4(v4(192, 0, 2, 1), v4(192, 0, 2, 2)), "192.0.2.1-192.0.2.2"],
    ["power-of-two size but unaligned", r4(v4(192, 0, 2, 4), v4(192, 0, 2, 11)), "192.0.2.4-192.0.2.11"],
    ["aligned start but not a power of two", r4(v4(192, 0, 2, 0), v4(192, 0, 2, 2)), "192.0.2.0-192.0.2.2"],
    ["single IPv6 address", { family: 6, first: 1n, last: 1n }, "::1"],
    ["prefix-aligned IPv6 range", { family: 6, first: 0x20010db8n << 96n, last: (0x20010db9n << 96n) - 1n }, "2001:db8::/32"],
    ["whole IPv6 space", anyAddress(6), "::/0"],
    ["unaligned IPv6 range", { family: 6, first: 1n, last: 5n }, "::1-::5"],
  ] as const)("%s", (_what, range, text) => {
    expect(formatRange(range as AddressRange)).toBe(text);
  });

  test("a formatted CIDR range parses back to the same range", () => {
    for (const text of ["10.0.0.0/8", "203.0.113.128/25", "2001:db8:443::/48", "::/0"]) {
      const c = cidr(text);
      expect(formatRange(c)).toBe(text);
    }
  });
});

describe("contains", () => {
  test("a block contains its sub-blocks and itself, not its neighbours or another family", () => {
    expect(contains(cidr("10.0.0.0/8"), cidr("10.1.0.0/16"))).toBe(true);
    expect(contains(cidr("10.0.0.0/8"), cidr("10.0.0.0/8"))).toBe(true);
    expect(contains(cidr("10.0.0.0/8"), cidr("11.0.0.0/16"))).toBe(false);
    expect(contains(cidr("10.0.0.0/16"), cidr("10.0.0.0/8"))).toBe(false);
    expect(contains(cidr("::/0"), cidr("10.0.0.0/8"))).toBe(false);
  });
});

describe("subtractRanges", () => {
  const base = r4(100n, 199n);
  test.each([
    ["no excepts", [], [[100n, 199n]]],
    ["except at the start", [r4(100n, 109n)], [[110n, 199n]]],
    ["except at the end", [r4(190n, 199n)], [[100n, 189n]]],
    ["excepts at both edges", [r4(190n, 199n), r4(100n, 109n)], [[110n, 189n]]],
    ["except in the middle", [r4(150n, 159n)], [[100n, 149n], [160n, 199n]]],
    ["overlapping excepts", [r4(120n, 140n), r4(130n, 150n)], [[100n, 119n], [151n, 199n]]],
    ["nested excepts", [r4(120n, 160n), r4(130n, 140n)], [[100n, 119n], [161n, 199n]]],
    ["adjacent excepts", [r4(120n, 129n), r4(130n, 139n)], [[100n, 119n], [140n, 199n]]],
    ["except covering everything", [r4(100n, 199n)], []],
    ["except larger than the base", [r4(0n, 1000n)], []],
    ["except sticking out on the left", [r4(50n, 120n)], [[121n, 199n]]],
    ["except sticking out on the right", [r4(180n, 300n)], [[100n, 179n]]],
    ["excepts outside the base", [r4(0n, 50n), r4(250n, 300n)], [[100n, 199n]]],
    ["single-address excepts", [r4(100n, 100n), r4(199n, 199n), r4(150n, 150n)], [[101n, 149n], [151n, 198n]]],
    ["excepts of the other family are ignored", [{ family: 6, first: 0n, last: 1000n }], [[100n, 199n]]],
  ] as const)("%s", (_what, cuts, expected) => {
    const out = subtractRanges(base, cuts as readonly AddressRange[]);
    expect(out.map((r) => [r.first, r.last])).toEqual(expected.map((e) => [...e]));
    for (const r of out) expect(r.family).toBe(4);
  });

  test("IPv6 block minus a /48 except leaves two pieces around it", () => {
    const out = subtractRanges(cidr("2001:db8::/32"), [cidr("2001:db8:443::/48")]);
    expect(out.map(formatRange)).toEqual(["2001:db8::-2001:db8:442:ffff:ffff:ffff:ffff:ffff", "2001:db8:444::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"]);
  });
});

describe("subtractRanges property", () => {
  test("equals the brute-force set difference over small ranges, as sorted disjoint non-adjacent pieces", async () => {
    const fc = (await import("fast-check")).default;
    const span = fc.tuple(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 40 })).map(([a, b]) => r4(BigInt(Math.min(a, b)), BigInt(Math.max(a, b))));
    fc.assert(
      fc.property(span, fc.array(span, { maxLength: 6 }), (b, cuts) => {
        const out = subtractRanges(b, cuts);
        const expected = new Set<number>();
        for (let x = Number(b.first); x <= Number(b.last); x++) if (!cuts.some((c) => c.first <= BigInt(x) && BigInt(x) <= c.last)) expected.add(x);
        const got = new Set<number>();
        out.forEach((r, i) => {
          expect(r.first <= r.last).toBe(true);
          if (i > 0) expect((out[i - 1] as AddressRange).last + 1n < r.first).toBe(true);
          for (let x = Number(r.first); x <= Number(r.last); x++) got.add(x);
        });
        expect([...got].sort((x, y) => x - y)).toEqual([...expected].sort((x, y) => x - y));
      }),
      { numRuns: 300 },
    );
  });
});
