import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { isLabel, isSubdomain } from "../../lib/api/meta.ts";
import { decodeShortened, policyChain, policyChainPrefix, policyComment, serviceChain, serviceComment } from "../../lib/ruleset/names.ts";

// nft refuses comments longer than 128 characters ("comment too long, 128 characters maximum allowed",
// NFTNL_UDATA_COMMENT_MAXLEN) and names longer than 255.
const NFT_COMMENT_MAX = 128;
const NFT_NAME_MAX = 255;

const longestName = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(61)}`; // 253, a valid RFC 1123 subdomain
const longestLabel = "n".repeat(63);

describe("names and comments", () => {
  test("policy chains and comments follow the original's wording", () => {
    expect(policyChain("egress", "tcp", "allow-dns")).toBe("np.eg.tcp.allow-dns");
    expect(policyChain("ingress", "any", "allow-dns")).toBe("np.in.any.allow-dns");
    expect(policyComment("egress", "udp", "allow-dns")).toBe("accept traffic for np allow-dns udp");
    expect(policyComment("ingress", "sctp", "allow-dns")).toBe("accept traffic for k8s network policy allow-dns sctp");
  });

  test("service chains and comments follow the original's wording", () => {
    expect(serviceChain("shop", "web")).toBe("svc.shop.web");
    expect(serviceComment("shop", "web")).toBe("accept traffic for k8s service shop/web");
  });

  test("chain names of the longest valid names fit nft's 255-character limit and stay distinct", () => {
    const other = `${longestName.slice(0, -1)}e`;
    for (const dir of ["egress", "ingress"] as const) {
      for (const proto of ["tcp", "udp", "sctp", "any"] as const) {
        const c = policyChain(dir, proto, longestName);
        expect(c.length).toBeLessThanOrEqual(NFT_NAME_MAX);
        expect(c).toMatch(/^[a-z][a-z0-9.-]*_[0-9A-Za-z]+$/);
        expect(c).not.toBe(policyChain(dir, proto, other));
      }
    }
    // Service names are labels (63 characters at most): a service chain is at most 131 characters, always verbatim.
    const longestService = "s".repeat(63);
    expect(serviceChain(longestLabel, longestService)).toBe(`svc.${longestLabel}.${longestService}`);
    expect(serviceChain(longestLabel, longestService)).not.toBe(serviceChain(longestLabel, `${longestService.slice(0, -1)}e`));
  });

  test("names are stable: the same input gives the same chain", () => {
    expect(policyChain("egress", "tcp", longestName)).toBe(policyChain("egress", "tcp", longestName));
  });

  // BUG (lib/ruleset/names.ts): fit() shortens to 255 characters, but nft rejects comments over 128,
  // so one valid policy with a name over ~86 characters (or a service whose namespace/name is over ~97)
  // makes `nft -c` fail for the whole ruleset: nothing applies (SPEC §3.2, §4.9 "one bad object blocking every update").
  test("comments of the longest valid names fit nft's 128-character comment limit", () => {
    for (const dir of ["egress", "ingress"] as const) {
      for (const proto of ["tcp", "udp", "sctp", "any"] as const) expect(policyComment(dir, proto, longestName).length).toBeLessThanOrEqual(NFT_COMMENT_MAX);
    }
    expect(serviceComment(longestLabel, longestName).length).toBeLessThanOrEqual(NFT_COMMENT_MAX);
  });

  test("comments of names up to 60 characters are kept whole", () => {
    const name = "a".repeat(60);
    expect(policyComment("ingress", "sctp", name)).toBe(`accept traffic for k8s network policy ${name} sctp`);
    expect(serviceComment("ns", name)).toBe(`accept traffic for k8s service ns/${name}`);
  });
});

/* ---------- injectivity (chains carry the counters: two objects must never share one) ---------- */

const LABEL_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** A valid label of exactly `n` characters (1..63) built from `seed` characters. */
const labelOf = (seed: string, n: number) => {
  const body = seed.padEnd(n, "x").slice(0, n).replace(/^[-.]|[-.]$/g, "a").replace(/\./g, "-");
  return body;
};

/** Valid RFC 1123 subdomains, biased to the lengths around the shortening threshold (245 for policy chains). */
const subdomainArb: fc.Arbitrary<string> = fc
  .tuple(fc.array(fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/), { minLength: 1, maxLength: 5 }), fc.integer({ min: 1, max: 253 }), fc.boolean())
  .map(([labels, want, stretch]) => {
    let name = labels.join(".");
    // Stretch to around the threshold with 63-character labels so that long names are common.
    while (stretch && name.length < want) name = `${name}.${labelOf(labels[0] as string, Math.min(63, Math.max(1, want - name.length - 1)))}`;
    return name.slice(0, 253).replace(/[-.]+$/, "") || "a";
  })
  .filter((n) => isSubdomain(n));

describe("names are injective", () => {
  // The regression: names.ts once wrote the shortened form of a long name with a `-` where the hash
  // began, a form that is itself a valid 245-character name, so two policies shared one chain and counter.
  test("a valid name equal to another name's shortened form gets a different chain", () => {
    const long = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(61)}`;
    const chain = policyChain("egress", "tcp", long);
    const lookalike = chain.slice("np.eg.tcp.".length).toLowerCase().replace(/_/g, "-").slice(0, 245).replace(/[-.]+$/, "");
    expect(isSubdomain(lookalike)).toBe(true);
    expect(policyChain("egress", "tcp", lookalike)).toBe(`np.eg.tcp.${lookalike}`);
    expect(policyChain("egress", "tcp", lookalike)).not.toBe(chain);
  });

  test("a 245-character name is kept verbatim and a 246-character one is shortened to exactly 255 or fewer", () => {
    const n245 = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(53)}`;
    expect(n245.length).toBe(245);
    expect(policyChain("ingress", "tcp", n245)).toBe(`np.in.tcp.${n245}`);
    const n246 = `${n245.slice(0, -1)}dd`;
    const c = policyChain("egress", "udp", n246);
    expect(c).toContain("_");
    expect(c.length).toBeLessThanOrEqual(255);
    expect(decodeShortened(c, "np.eg.udp.")).toBe(n246);
  });

  test("property: every valid name decodes back from its chain, and chains fit 255 characters", () => {
    fc.assert(
      fc.property(subdomainArb, fc.constantFrom("egress", "ingress"), fc.constantFrom("tcp", "udp", "sctp", "any"), (name, dir, proto) => {
        const chain = policyChain(dir, proto, name);
        expect(chain.length).toBeLessThanOrEqual(255);
        expect(chain.startsWith(policyChainPrefix(dir, proto))).toBe(true);
        expect(decodeShortened(chain, policyChainPrefix(dir, proto))).toBe(name);
      }),
      { numRuns: 3000 },
    );
  });

  test("property: two different valid names (including one spelled like the other's shortened form) never share a chain", () => {
    const adversarial = subdomainArb.map((n) => {
      const c = policyChain("egress", "tcp", n).slice("np.eg.tcp.".length);
      const look = c.toLowerCase().replace(/_/g, "-").slice(0, 253).replace(/[-.]+$/, "");
      return isSubdomain(look) ? look : n;
    });
    fc.assert(
      fc.property(fc.oneof(subdomainArb, adversarial), fc.oneof(subdomainArb, adversarial), (a, b) => {
        fc.pre(a !== b);
        expect(policyChain("egress", "tcp", a)).not.toBe(policyChain("egress", "tcp", b));
      }),
      { numRuns: 3000 },
    );
  });

  test("property: service chains are verbatim and distinct for distinct namespace/name pairs", () => {
    const label = fc.stringMatching(LABEL_RE).filter(isLabel);
    fc.assert(
      fc.property(label, label, label, label, (ns1, n1, ns2, n2) => {
        fc.pre(`${ns1}/${n1}` !== `${ns2}/${n2}`);
        expect(serviceChain(ns1, n1)).toBe(`svc.${ns1}.${n1}`);
        expect(serviceChain(ns1, n1)).not.toBe(serviceChain(ns2, n2));
      }),
      { numRuns: 2000 },
    );
  });

  test("shortened comments carry a mark no valid name has, so they never equal a verbatim comment", () => {
    const long = "p".repeat(200);
    const c = policyComment("egress", "tcp", long);
    expect(c.length).toBeLessThanOrEqual(128);
    expect(c).toMatch(/^accept traffic for np p+~[0-9a-f]{24} tcp$/);
    expect(policyComment("egress", "tcp", `${"p".repeat(199)}q`)).not.toBe(c);
  });
});
