/**
 * The Kubernetes CEL IP/CIDR library on cel-js: the examples of the library's
 * documentation (k8s.io/apiserver/pkg/cel/library ip.go, cidr.go) and its
 * parsing refusals, which the CRDs' isCIDR() rules depend on.
 */
import { Environment } from "@marcbachmann/cel-js";
import { describe, expect, test } from "bun:test";
import { registerNetLibrary } from "./cel_net.ts";

const env = registerNetLibrary(new Environment());
const evaluate = (e: string) => env.evaluate(e) as unknown;

describe("Kubernetes CEL CIDR and IP library", () => {
  const cases: [string, unknown][] = [
    ["isCIDR('192.168.0.0/16')", true],
    ["isCIDR('::1/128')", true],
    ["isCIDR('192.168.0.0/33')", false],
    ["isCIDR('::1/129')", false],
    ["isCIDR('10.0.0.1/8')", true], // host bits are allowed (masked() clears them)
    ["isCIDR('010.0.0.0/8')", false], // leading zero in an octet
    ["isCIDR('10.0.0.0/08')", false], // leading zero in the bits
    ["isCIDR('10.0.0.0')", false],
    ["isCIDR('::ffff:1.2.3.4/120')", false], // IPv4-mapped IPv6
    ["isCIDR('fe80::1%eth0/64')", false], // zone
    ["isCIDR('1:2:3:4:5:6:7::/64')", true],
    ["isCIDR('1:2:3:4:5:6:7:8::/64')", false], // :: must stand for at least one group
    ["cidr('192.168.0.0/24').containsIP(ip('192.168.0.1'))", true],
    ["cidr('192.168.0.0/24').containsIP('192.168.1.1')", false],
    ["cidr('192.168.0.0/16').containsCIDR(cidr('192.168.10.0/24'))", true],
    ["cidr('192.168.0.0/16').containsCIDR('192.168.10.0/24')", true],
    ["cidr('192.168.1.0/24').containsCIDR('192.168.2.0/24')", false],
    ["cidr('192.168.0.0/24').containsCIDR('192.168.0.0/23')", false],
    ["cidr('10.0.0.0/8').containsCIDR('2001:db8::/32')", false], // other family
    ["cidr('2001:db8::/32').containsCIDR('2001:db8::/33')", true],
    ["string(cidr('192.168.0.1/24').ip())", "192.168.0.1"],
    ["cidr('192.168.0.1/24').ip().family()", 4n],
    ["cidr('::1/128').ip().family()", 6n],
    ["string(cidr('192.168.0.1/24').masked())", "192.168.0.0/24"],
    ["cidr('192.168.0.0/24') == cidr('192.168.0.0/24').masked()", true],
    ["cidr('192.168.0.1/24') == cidr('192.168.0.1/24').masked()", false],
    ["cidr('192.168.0.0/16').prefixLength()", 16n],
    ["string(cidr('2001:db8:1::/32').masked())", "2001:db8::/32"],
    ["isIP('127.0.0.1')", true],
    ["isIP('127.0.0.256')", false],
    ["isIP(':::1')", false],
    ["isIP('fe80::1%eth0')", false],
    ["ip.isCanonical('127.0.0.1')", true],
    ["ip.isCanonical('2001:db8::abcd')", true],
    ["ip.isCanonical('2001:DB8::ABCD')", false],
    ["ip.isCanonical('2001:db8::0:0:0:abcd')", false],
    ["string(ip('2001:db8:0:0:1:0:0:1'))", "2001:db8::1:0:0:1"],
    ["ip('0.0.0.0').isUnspecified()", true],
    ["ip('::1').isLoopback()", true],
    ["ip('224.0.0.1').isLinkLocalMulticast()", true],
    ["ip('224.0.1.1').isLinkLocalMulticast()", false],
    ["ip('ff02::1').isLinkLocalMulticast()", true],
    ["ip('169.254.169.254').isLinkLocalUnicast()", true],
    ["ip('fd80::1').isLinkLocalUnicast()", false],
    ["ip('192.168.0.1').isGlobalUnicast()", true],
    ["ip('255.255.255.255').isGlobalUnicast()", false],
    ["ip('ff00::1').isGlobalUnicast()", false],
    ["ip('2001:db8::abcd') == ip('2001:db8:0::abcd')", true],
  ];
  for (const [expr, want] of cases) test(`${expr} is ${String(want)}`, () => expect(evaluate(expr)).toBe(want));

  test("cidr() and ip() of bad strings are evaluation errors with the library's messages", () => {
    expect(() => evaluate("cidr('192.168.0.0/33')")).toThrow('network address parse error during conversion from string: netip.ParsePrefix("192.168.0.0/33"): prefix length out of range');
    expect(() => evaluate("ip('::ffff:1.2.3.4')")).toThrow('IPv4-mapped IPv6 address "::ffff:1.2.3.4" is not allowed');
    expect(() => evaluate("ip('fe80::1%eth0')")).toThrow('IP address "fe80::1%eth0" with zone value is not allowed');
  });
});
