import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { readlinkSync } from "node:fs";
import { runCommand } from "../../lib/exec.ts";
import { commentIndex } from "../../lib/nft/comment-index.ts";
import { type ElementCounter, netlinkAvailable, type NftNetlink, openNetlink } from "../../lib/nft/netlink.ts";
import { needs, netnsExecutor } from "../netns/topology.ts";

// needs() warns and skips without root or tools, and throws under CI=true; any other CI value must not skip either.
const skip = needs(["ip", "nft"]).skip;
if (skip && process.env.CI !== undefined) throw new Error("test/nft/netlink.test.ts needs root, ip and nft; CI is set, so this fails instead of skipping");

const RULESET = `table inet firewall {
  counter drop_total { packets 5 bytes 300 }
  map egress4_ports {
    type ipv4_addr . inet_proto . inet_service : verdict
    flags interval
    counter
    elements = { 198.18.0.1 . tcp . 443 counter packets 3 bytes 180 comment "accept traffic for np a tcp" : accept,
                 198.18.0.0/24 . udp . 50-60 counter packets 1 bytes 40 comment "accept traffic for np b udp" : accept,
                 203.0.113.0/24 . tcp . 1-65535 : accept }
  }
  map egress4_any { type ipv4_addr : verdict; flags interval; counter; }
  map ingress4_nets {
    type ipv4_addr : verdict
    flags interval
    counter
    elements = { 10.0.0.0/8 counter packets 7 bytes 700 comment "accept traffic for np c" : accept }
  }
}
table inet other {
  counter elsewhere { packets 1 bytes 2 }
}
`;

const newNs = () => `fct-nl-${randomBytes(3).toString("hex")}`;

async function nft(ns: string, script: string): Promise<void> {
  const r = await netnsExecutor(ns)(["nft", "-f", "-"], { stdin: script });
  if (r.code !== 0) throw new Error(`nft -f in ${ns} failed: ${r.stderr}`);
}

interface NftJsonElem {
  elem?: { comment?: string; counter?: { packets: number; bytes: number } };
}

/** What `nft -j list map` says about each element: the same shape as setElementCounters. */
async function listedByNft(ns: string, table: string, map: string): Promise<ElementCounter[]> {
  const r = await netnsExecutor(ns)(["nft", "-j", "list", "map", "inet", table, map]);
  if (r.code !== 0) throw new Error(r.stderr);
  const doc = JSON.parse(r.stdout) as { nftables: { map?: { elem?: [NftJsonElem, unknown][] } }[] };
  const elems = doc.nftables.find((o) => o.map !== undefined)?.map?.elem ?? [];
  return elems.map(([key]) => ({ comment: key.elem?.comment ?? null, packets: key.elem?.counter?.packets ?? 0, bytes: key.elem?.counter?.bytes ?? 0 }));
}

const byComment = (a: ElementCounter, b: ElementCounter) => String(a.comment).localeCompare(String(b.comment));

describe.skipIf(skip)("nf_tables over netlink, in a namespace", () => {
  const ns = newNs();
  const other = newNs();
  const created: string[] = [];
  let nl: NftNetlink;

  beforeAll(async () => {
    for (const name of [ns, other]) {
      const r = await runCommand(["ip", "netns", "add", name]);
      if (r.code !== 0) throw new Error(`ip netns add ${name}: ${r.stderr}`);
      created.push(name);
    }
    await nft(ns, RULESET);
    await nft(other, "table inet firewall {\n  counter only_in_other { packets 9 bytes 9 }\n}\n");
    nl = openNetlink({ netns: ns });
  });

  afterAll(async () => {
    nl?.close();
    for (const name of created) await runCommand(["ip", "netns", "del", name]);
  });

  test("netlink is available here", () => {
    expect(netlinkAvailable()).toBe(true);
  });

  test("reads every element's comment and counter, including an element without a comment", () => {
    expect(nl.setElementCounters("inet", "firewall", "egress4_ports").toSorted(byComment)).toEqual([
      { comment: "accept traffic for np a tcp", packets: 3, bytes: 180 },
      { comment: "accept traffic for np b udp", packets: 1, bytes: 40 },
      { comment: null, packets: 0, bytes: 0 },
    ]);
  });

  test("agrees with nft -j list map", async () => {
    const mine = nl.setElementCounters("inet", "firewall", "egress4_ports").toSorted(byComment);
    expect(mine).toEqual((await listedByNft(ns, "firewall", "egress4_ports")).toSorted(byComment));
  });

  test("leaves out the interval ends of a plain interval map", () => {
    // 10.0.0.0/8 is stored as a start and an end element; only the start has the counter.
    expect(nl.setElementCounters("inet", "firewall", "ingress4_nets")).toEqual([{ comment: "accept traffic for np c", packets: 7, bytes: 700 }]);
  });

  test("element sums add up the counters of the elements sharing a comment, and leave out elements without one and interval ends", async () => {
    await nft(ns, `table inet firewall {
  map shared {
    type ipv4_addr : verdict
    flags interval
    counter
    elements = { 10.0.0.0/24 counter packets 1 bytes 10 comment "np x" : accept, 10.0.2.0/24 counter packets 2 bytes 20 comment "np y" : accept,
                 10.0.4.0/24 counter packets 4 bytes 40 comment "np x" : accept, 10.0.6.0/24 counter packets 8 bytes 80 : accept }
  }
}
`);
    expect(new Map(nl.setElementSums("inet", "firewall", "shared"))).toEqual(new Map([["np x", { packets: 5, bytes: 50 }], ["np y", { packets: 2, bytes: 20 }]]));
    expect(new Map(nl.setElementSums("inet", "firewall", "egress4_ports"))).toEqual(new Map([["accept traffic for np a tcp", { packets: 3, bytes: 180 }], ["accept traffic for np b udp", { packets: 1, bytes: 40 }]]));
    expect(nl.setElementSums("inet", "firewall", "egress4_any").size).toBe(0);

    // Into slots: the known comments there (the slot of a comment without elements stays 0),
    // the others summed apart; the arrays are zeroed first.
    const index = commentIndex(["np y", "np gone", "np x"]);
    const packets = new Float64Array(3).fill(99);
    const bytes = new Float64Array(3).fill(99);
    expect(nl.setElementSlots("inet", "firewall", "shared", index, packets, bytes)).toEqual(new Map());
    expect([...packets]).toEqual([2, 0, 5]);
    expect([...bytes]).toEqual([20, 0, 50]);
    const partial = commentIndex(["np x"]);
    const p1 = new Float64Array(1);
    const b1 = new Float64Array(1);
    expect(new Map(nl.setElementSlots("inet", "firewall", "shared", partial, p1, b1))).toEqual(new Map([["np y", { packets: 2, bytes: 20 }]]));
    expect([p1[0], b1[0]]).toEqual([5, 50]);
    expect(() => nl.setElementSlots("inet", "firewall", "shared", index, new Float64Array(2), bytes)).toThrow("fewer counter slots");
    await nft(ns, "delete map inet firewall shared\n");
  });

  test("elements read by key are exactly those asked for, in concatenated and one-field maps; a key not held throws ENOENT and the socket stays usable", () => {
    const byKey = nl.elementCountersByKey("inet", "firewall", "egress4_ports", "ipv4_addr . inet_proto . inet_service", ["198.18.0.0/24 . udp . 50-60", "203.0.113.0/24 . tcp . 1-65535"]);
    expect(byKey.toSorted(byComment)).toEqual([
      { comment: "accept traffic for np b udp", packets: 1, bytes: 40 },
      { comment: null, packets: 0, bytes: 0 },
    ]);
    expect(nl.elementCountersByKey("inet", "firewall", "ingress4_nets", "ipv4_addr", ["10.0.0.0/8"])).toEqual([{ comment: "accept traffic for np c", packets: 7, bytes: 700 }]);
    expect(() => nl.elementCountersByKey("inet", "firewall", "ingress4_nets", "ipv4_addr", ["11.0.0.0/8"])).toThrow("ENOENT");
    expect(nl.elementCountersByKey("inet", "firewall", "ingress4_nets", "ipv4_addr", [])).toEqual([]);
    expect(nl.generation()).toBeGreaterThan(0);
  });

  test("an empty map has no elements", () => {
    expect(nl.setElementCounters("inet", "firewall", "egress4_any")).toEqual([]);
  });

  test("a missing set throws ENOENT naming the set, and the socket stays usable", () => {
    let error: unknown;
    try {
      nl.setElementCounters("inet", "firewall", "egress4_missing");
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toContain("ENOENT");
    expect((error as Error).message).toContain("egress4_missing");
    expect((error as Error).cause).toMatchObject({ code: "ENOENT", errno: 2 });
    expect(() => nl.setElementCounters("inet", "missing_table", "egress4_ports")).toThrow(/missing_table.*ENOENT/);
    expect(nl.open).toBe(true);
    expect(nl.setElementCounters("inet", "firewall", "egress4_any")).toEqual([]);
  });

  test("a set of another family is not found", () => {
    expect(() => nl.setElementCounters("ip", "firewall", "egress4_ports")).toThrow(/ENOENT/);
  });

  test("named counters are exactly the table's own", () => {
    expect(nl.namedCounters("inet", "firewall")).toEqual(new Map([["drop_total", { packets: 5, bytes: 300 }]]));
    expect(nl.namedCounters("inet", "other")).toEqual(new Map([["elsewhere", { packets: 1, bytes: 2 }]]));
  });

  test("a table that does not exist has no named counters", () => {
    expect(nl.namedCounters("inet", "missing_table")).toEqual(new Map());
  });

  test("the generation goes up by exactly one per nft -f transaction and not on reads", async () => {
    const before = nl.generation();
    expect(nl.generation()).toBe(before);
    const list = await netnsExecutor(ns)(["nft", "list", "ruleset"]);
    expect(list.code).toBe(0);
    expect(nl.generation()).toBe(before);
    await nft(ns, "add counter inet other one_more\nadd counter inet other two_more\n");
    expect(nl.generation()).toBe(before + 1);
    expect(nl.namedCounters("inet", "firewall").size).toBe(1);
    expect(nl.generation()).toBe(before + 1);
  });

  test("a socket opened for one namespace does not see another namespace's tables", () => {
    const inOther = openNetlink({ netns: other });
    try {
      expect(inOther.namedCounters("inet", "firewall")).toEqual(new Map([["only_in_other", { packets: 9, bytes: 9 }]]));
      expect(() => inOther.setElementCounters("inet", "firewall", "egress4_ports")).toThrow(/ENOENT/);
      expect(nl.namedCounters("inet", "firewall")).toEqual(new Map([["drop_total", { packets: 5, bytes: 300 }]]));
    } finally {
      inOther.close();
    }
  });

  test("tables lists every table of the namespace with its family, as nft list tables does", async () => {
    const listed = (await runCommand(["ip", "netns", "exec", ns, "nft", "list", "tables"])).stdout.trim().split("\n").map((l) => l.replace(/^table /, ""));
    expect(nl.tables().map((t) => `${t.family} ${t.name}`).sort()).toEqual(listed.sort());
    await nft(other, "table ip6 extra {\n}\n");
    const inOther = openNetlink({ netns: other });
    try {
      expect(inOther.tables().map((t) => `${t.family} ${t.name}`).sort()).toEqual(["inet firewall", "ip6 extra"]);
    } finally {
      inOther.close();
    }
  });

  test("a change in one namespace leaves the other namespace's generation alone", async () => {
    const inOther = openNetlink({ netns: other });
    try {
      const before = inOther.generation();
      await nft(ns, "add counter inet other three_more\n");
      expect(inOther.generation()).toBe(before);
    } finally {
      inOther.close();
    }
  });

  test("opening a socket in a namespace leaves the calling thread in its own namespace", () => {
    const home = readlinkSync("/proc/thread-self/ns/net");
    openNetlink({ netns: other }).close();
    expect(readlinkSync("/proc/thread-self/ns/net")).toBe(home);
  });

  test("a namespace that does not exist cannot be opened", () => {
    expect(() => openNetlink({ netns: `fct-nl-gone-${randomBytes(3).toString("hex")}` })).toThrow(/ENOENT/);
    expect(() => openNetlink({ netns: "../../proc/1/ns/net" })).toThrow(/not a network namespace name/);
  });

  test("a closed socket refuses further reads", () => {
    const s = openNetlink({ netns: ns });
    s.close();
    s.close();
    expect(s.open).toBe(false);
    expect(() => s.generation()).toThrow(/closed/);
  });

  test("20,000 counted elements with comments dump back complete", async () => {
    const n = 20_000;
    const lines: string[] = [];
    for (let i = 0; i < n; i++) {
      lines.push(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255} . tcp . ${1 + (i % 60000)} counter packets ${i} bytes ${i * 100} comment "accept traffic for np scale ${i}" : accept`);
    }
    await nft(ns, `table inet scale {\n  map ports {\n    type ipv4_addr . inet_proto . inet_service : verdict\n    flags interval\n    counter\n    elements = { ${lines.join(",\n")} }\n  }\n}\n`);
    const got = nl.setElementCounters("inet", "scale", "ports");
    expect(got.length).toBe(n);
    expect(got.reduce((s, e) => s + e.packets, 0)).toBe((n * (n - 1)) / 2);
    expect(got.reduce((s, e) => s + e.bytes, 0)).toBe((100 * n * (n - 1)) / 2);
    expect(new Set(got.map((e) => e.comment)).size).toBe(n);
    expect(got.find((e) => e.comment === "accept traffic for np scale 12345")).toEqual({ comment: "accept traffic for np scale 12345", packets: 12345, bytes: 1234500 });
    // 8,000 of them by key, on a fresh socket (default buffers): every answer arrives.
    using fresh = openNetlink({ netns: ns });
    const keys = Array.from({ length: 8000 }, (_, k) => {
      const i = k * 2;
      return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255} . tcp . ${1 + (i % 60000)}`;
    });
    const byKey = fresh.elementCountersByKey("inet", "scale", "ports", "ipv4_addr . inet_proto . inet_service", keys);
    expect(byKey.length).toBe(8000);
    expect(byKey.reduce((s, e) => s + e.packets, 0)).toBe(keys.reduce((s, _, k) => s + k * 2, 0));
  }, 120_000);
});
