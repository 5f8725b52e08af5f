import { describe, expect, test } from "bun:test";
import { policyChain, policyComment, serviceChain, serviceComment } from "../../lib/ruleset/names.ts";

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
        expect(c).toMatch(/^[a-z][a-z0-9.-]*$/);
        expect(c).not.toBe(policyChain(dir, proto, other));
      }
    }
    expect(serviceChain(longestLabel, longestName).length).toBeLessThanOrEqual(NFT_NAME_MAX);
    expect(serviceChain(longestLabel, longestName)).not.toBe(serviceChain(longestLabel, `${longestName.slice(0, -1)}e`));
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
