import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { parseCidr } from "../../lib/api/address.ts";
import { parsePolicy } from "../../lib/api/policy.ts";
import { parseService } from "../../lib/api/service.ts";
import { runCommand } from "../../lib/exec.ts";
import { applyRuleset, GENERATION_PREFIX, REVISION_PREFIX } from "../../lib/nft/apply.ts";
import { type NftClient, nftClient } from "../../lib/nft/client.ts";
import { elementBatch, type ElementLoad } from "../../lib/nft/element-batch.ts";
import { type NftNetlink, openNetlink } from "../../lib/nft/netlink.ts";
import { type DesiredState, renderRuleset } from "../../lib/ruleset/render.ts";
import { needs, netnsExecutor } from "../netns/topology.ts";
import { policiesArb, servicesArb } from "../ruleset/arbitraries.ts";

const skip = needs(["ip", "nft"]).skip;
if (skip && process.env.CI !== undefined) throw new Error("test/nft/element-batch.test.ts needs root, ip and nft; CI is set, so this fails instead of skipping");

const load = (maps: ElementLoad["maps"], verdict = "accept"): ElementLoad => ({ table: "firewall", generation: 1, verdict, maps, chains: ["marker"] });

describe("element batch encoding", () => {
  test("a key the renderer would never print is refused with the key named", () => {
    for (const [type, key] of [
      ["ipv4_addr", "10.0.0.256"],
      ["ipv4_addr", "10.0.0.1/33"],
      ["ipv4_addr", "10.0.0.1/24"],
      ["ipv6_addr", "2001:db8:::1"],
      ["ipv6_addr", "1:2:3:4:5:6:7:8:9"],
      ["ipv4_addr . inet_proto . inet_service", "10.0.0.1 . icmp . 80"],
      ["ipv4_addr . inet_proto . inet_service", "10.0.0.1 . tcp . 70000"],
      ["ipv4_addr . inet_proto . inet_service", "10.0.0.1 . tcp"],
    ] as const) {
      expect(() => elementBatch(load([{ name: "m", type, added: [{ key: key, comment: "c" }] }]))).toThrow(/element key/);
    }
  });

  test("overlapping ranges of a one-field map, an unknown verdict, a key type it cannot encode and an oversized comment are refused", () => {
    expect(() => elementBatch(load([{ name: "m", type: "ipv4_addr", added: [{ key: "10.0.0.0/8", comment: "a" }, { key: "10.1.0.0/16", comment: "b" }] }]))).toThrow("map m has overlapping ranges");
    expect(() => elementBatch(load([], "drop"))).toThrow('cannot encode verdict "drop"');
    expect(() => elementBatch(load([{ name: "m", type: "ether_addr", added: [] }]))).toThrow('a field it cannot encode: "ether_addr"');
    expect(() => elementBatch(load([{ name: "m", type: "ipv4_addr", added: [{ key: "10.0.0.1", comment: "x".repeat(300) }] }]))).toThrow("does not fit an element");
  });

  test("elements are split into messages below the 64 KiB attribute limit, and only the last message asks for an acknowledgement", () => {
    const added = Array.from({ length: 5000 }, (_, i) => ({ key: `10.${i >> 8}.${i & 255}.0/24 . tcp . ${i + 1}`, comment: `accept traffic for np p${i} tcp` }));
    const batch = elementBatch(load([{ name: "m", type: "ipv4_addr . inet_proto . inet_service", added }]), 100);
    const v = new DataView(batch.bytes.buffer);
    const seen: { seq: number; flags: number; len: number }[] = [];
    for (let off = 0; off < batch.bytes.length; off += v.getUint32(off, true)) seen.push({ seq: v.getUint32(off + 8, true), flags: v.getUint16(off + 6, true), len: v.getUint32(off, true) });
    expect(seen.length).toBe(batch.messages + 2);
    expect(batch.messages).toBeGreaterThan(5);
    expect(seen.map((m) => m.seq)).toEqual(seen.map((_, i) => 100 + i));
    expect(seen.filter((m) => m.flags & 0x4).map((m) => m.seq)).toEqual([batch.lastSeq]);
    expect(batch.lastSeq).toBe(100 + batch.messages);
    expect(Math.max(...seen.map((m) => m.len))).toBeLessThan(65536);
  });
});

const cidr = (s: string) => {
  const r = parseCidr(s);
  if (!r.ok) throw new Error(r.message);
  return r.value;
};

const stateArb: fc.Arbitrary<DesiredState> = fc
  .record({ policies: policiesArb(8), services: servicesArb(5), logAcceptedConnections: fc.boolean() })
  .map(({ policies, services, logAcceptedConnections }) => ({
    policies: policies.flatMap((o) => {
      const r = parsePolicy(o);
      return r.ok ? [r.value] : [];
    }),
    services: services.flatMap((o) => {
      const r = parseService(o);
      return r.ok ? [r.value] : [];
    }),
    clusterPrefixes: [cidr("10.0.0.0/8"), cidr("fd00::/8")],
    internalPrefixes: [],
    privateVrf: 42,
    logAcceptedConnections,
  }));

/**
 * The table as nft lists it, without our marker chains, and before it every element as the
 * kernel holds it (`--debug=netlink`: keys, flags, user data), sorted within each set: the
 * listing alone would not show an end element or a flag that nft can do without when it reads.
 */
async function listed(ns: string): Promise<string> {
  const r = await netnsExecutor(ns)(["nft", "--debug=netlink", "list", "table", "inet", "firewall"]);
  if (r.code !== 0) throw new Error(r.stderr);
  const out = `${r.stdout}\n${r.stderr}`;
  const start = out.indexOf("table inet firewall {");
  const raw: string[] = [];
  let group: string[] = [];
  // The debug part also prints rules with their handles, which differ between any two loads: only sets and elements are kept.
  for (const line of out.slice(0, start).split("\n")) {
    if (/^\S+ \S+ @\S+$/.test(line)) {
      raw.push(...group.sort());
      group = [];
      raw.push(line);
    } else if (line.startsWith("\telement ")) group.push(line);
  }
  raw.push(...group.sort());
  const table = out.slice(start).replace(/\tchain (revision|generation|fingerprint)\.\S+ \{\n\t\}\n\n?/g, "").replace(/\n\n\}/g, "\n}").trim();
  return `${raw.join("\n")}\n${table}`;
}

describe.skipIf(skip)("a cold load over netlink, in the kernel", () => {
  const byNft = `fct-eb-${randomBytes(3).toString("hex")}`;
  const byBatch = `fct-eb-${randomBytes(3).toString("hex")}`;
  let nl: NftNetlink;
  let client: NftClient;
  const loads: { ok: boolean; error?: unknown }[] = [];

  beforeAll(async () => {
    for (const ns of [byNft, byBatch]) expect((await runCommand(["ip", "netns", "add", ns])).code).toBe(0);
    nl = openNetlink({ netns: byBatch });
    const real = nftClient("nft", netnsExecutor(byBatch), nl);
    client = {
      ...real,
      applyElements: async (l) => {
        try {
          await real.applyElements?.(l);
          loads.push({ ok: true });
        } catch (error) {
          loads.push({ ok: false, error });
          throw error;
        }
      },
    };
  });
  afterAll(async () => {
    nl?.close();
    for (const ns of [byNft, byBatch]) await runCommand(["ip", "netns", "del", ns]);
  });

  const nftLoad = async (ns: string, text: string) => {
    const r = await netnsExecutor(ns)(["nft", "-f", "-"], { stdin: `add table inet firewall\ndelete table inet firewall\n${text}` });
    if (r.code !== 0) throw new Error(r.stderr);
  };
  const clear = async (ns: string) => {
    await netnsExecutor(ns)(["nft", "delete", "table", "inet", "firewall"]);
  };

  test("loads exactly what nft -f loads, for random policies and services (elements, comments, verdicts, open and adjacent ranges)", async () => {
    await fc.assert(
      fc.asyncProperty(stateArb, async (state) => {
        const ruleset = renderRuleset(state);
        await clear(byBatch);
        loads.length = 0;
        const result = await applyRuleset(ruleset, { nft: client, table: "firewall" });
        // The netlink path itself, not the fallback, must have loaded it.
        expect(loads).toEqual([{ ok: true }]);
        expect(result.mode).toBe("replaced");
        expect(result.generation).toBe(nl.generation());
        await nftLoad(byNft, ruleset.text);
        const ours = await listed(byBatch);
        expect(ours).toBe(await listed(byNft));
        const chains = (await netnsExecutor(byBatch)(["nft", "-j", "-t", "list", "chains", "inet"])).stdout;
        expect(chains).toContain(`"${REVISION_PREFIX}${result.revision}"`);
        expect(chains).toContain(`"${GENERATION_PREFIX}${result.generation}"`);
      }),
      { numRuns: 30 },
    );
  }, 120_000);

  test("the next run finds it unchanged, proven by the generation, without a transaction", async () => {
    const ruleset = renderRuleset(fc.sample(stateArb, { numRuns: 1, seed: 7 })[0] as DesiredState);
    await clear(byBatch);
    const first = await applyRuleset(ruleset, { nft: client, table: "firewall" });
    const before = nl.generation();
    const again = await applyRuleset(ruleset, { nft: client, table: "firewall" });
    expect(again.mode).toBe("unchanged");
    expect(again.generation).toBe(first.generation as number);
    expect(nl.generation()).toBe(before);
  });

  test("a batch made for an older generation is refused whole (ERESTART) and changes nothing", async () => {
    await clear(byBatch);
    await nftLoad(byBatch, "table inet firewall {\n\tmap m { type ipv4_addr : verdict; flags interval; counter; }\n}\n");
    const generation = nl.generation();
    await netnsExecutor(byBatch)(["nft", "add", "chain", "inet", "firewall", "someone_else"]);
    const before = await listed(byBatch);
    const stale = elementBatch({ table: "firewall", generation, verdict: "accept", maps: [{ name: "m", type: "ipv4_addr", added: [{ key: "10.0.0.0/8", comment: "x" }] }], chains: ["marker"] });
    expect(() => nl.commit(stale)).toThrow("the ruleset changed since the batch was made");
    expect(await listed(byBatch)).toBe(before);
    expect(nl.generation()).toBe(generation + 1);
    // A batch that fails part way (a map that is not there) leaves the elements before it out too.
    const partial = elementBatch({ table: "firewall", generation: generation + 1, verdict: "accept", maps: [{ name: "m", type: "ipv4_addr", added: [{ key: "10.0.0.0/8", comment: "x" }] }, { name: "gone", type: "ipv4_addr", added: [{ key: "10.0.0.1", comment: "y" }] }], chains: ["marker"] });
    expect(() => nl.commit(partial)).toThrow("ENOENT");
    expect(await listed(byBatch)).toBe(before);
    expect(nl.generation()).toBe(generation + 1);
  });

  test("when the batch is refused, the table is replaced by nft instead, and ends up the same", async () => {
    const ruleset = renderRuleset(fc.sample(stateArb, { numRuns: 1, seed: 11 })[0] as DesiredState);
    await clear(byBatch);
    const real = nftClient("nft", netnsExecutor(byBatch), nl);
    let refused = 0;
    const failing: NftClient = {
      ...real,
      applyElements: async () => {
        refused++;
        throw new Error("refused");
      },
    };
    const result = await applyRuleset(ruleset, { nft: failing, table: "firewall" });
    expect(refused).toBe(1);
    expect(result.mode).toBe("replaced");
    expect(result.generation).toBe(nl.generation());
    await nftLoad(byNft, ruleset.text);
    expect(await listed(byBatch)).toBe(await listed(byNft));
  });
});
