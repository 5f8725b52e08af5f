import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { parsePolicy } from "../../lib/api/policy.ts";
import { parseService } from "../../lib/api/service.ts";
import { type Executor, runCommand } from "../../lib/exec.ts";
import { applyRuleset, carriedOwners, carryReads, elementsOnly, patchPlan, patchScript } from "../../lib/nft/apply.ts";
import { type NftClient, nftClient } from "../../lib/nft/client.ts";
import { type NftNetlink, openNetlink } from "../../lib/nft/netlink.ts";
import { IncrementalRenderer } from "../../lib/ruleset/incremental.ts";
import { renderRuleset, type Ruleset } from "../../lib/ruleset/render.ts";
import { needs, netnsExecutor } from "../netns/topology.ts";
import { cwnp, policiesArb, servicesArb } from "../ruleset/arbitraries.ts";
import { elementCounts, ownerSums } from "../owners.ts";
import { type Count, seedElements, seedNamed } from "./seed.ts";
import { policy, state } from "../ruleset/helpers.ts";

const skip = needs(["ip", "nft"]).skip;

/** The table as JSON with handles and counter values left out, objects keyed by kind and name. */
async function normalized(exec: ReturnType<typeof netnsExecutor>): Promise<Record<string, unknown>> {
  const r = await exec(["nft", "-j", "list", "table", "inet", "firewall"]);
  const doc = JSON.parse(r.stdout) as { nftables: Record<string, Record<string, unknown>>[] };
  const out: Record<string, unknown> = {};
  const chains: Record<string, unknown[]> = {};
  for (const o of doc.nftables) {
    const [kind, body] = Object.entries(o)[0] as [string, Record<string, unknown>];
    if (kind === "metainfo" || kind === "table") continue;
    // The fingerprint marker hashes the table in its own object order, which patching changes; a
    // generation marker is the kernel's count of transactions, which differs between namespaces.
    if (/^(fingerprint|generation)\./.test(String(body.name ?? body.chain))) continue;
    const { handle: _h, packets: _p, bytes: _b, ...rest } = body;
    if (kind === "rule") {
      const { chain, expr, comment } = rest as { chain: string; expr: unknown; comment?: string };
      (chains[chain] ??= []).push({ expr, comment });
    } else {
      if (Array.isArray(rest.elem)) rest.elem = (rest.elem as unknown[]).map((e) => JSON.stringify(e)).sort();
      out[`${kind} ${String(rest.name)}`] = rest;
    }
  }
  out.rules = chains;
  return out;
}

function render(raw: { policies: unknown[]; services: unknown[] }): Ruleset {
  const policies = raw.policies.map((p) => parsePolicy(p)).flatMap((r) => (r.ok ? [r.value] : []));
  const services = raw.services.map((s) => parseService(s)).flatMap((r) => (r.ok ? [r.value] : []));
  return renderRuleset(state({ policies, services }));
}



/** The named counters of our table, read with `nft -j list counters`. */
async function namedCounters(exec: Executor): Promise<Map<string, Count>> {
  const r = await exec(["nft", "-j", "list", "counters", "table", "inet", "firewall"]);
  const doc = JSON.parse(r.stdout) as { nftables: { counter?: { name: string; packets: number; bytes: number } }[] };
  return new Map(doc.nftables.flatMap((o) => (o.counter ? [[o.counter.name, { packets: o.counter.packets, bytes: o.counter.bytes }] as const] : [])));
}


describe("patching instead of replacing", () => {
  test("a patch adds and deletes only what changed", () => {
    const keep = policy("keep", { egress: [{ to: [{ cidr: "192.0.2.0/24" }], ports: [{ port: 443 }] }] });
    const a = renderRuleset(state({ policies: [keep, policy("gone", { egress: [{ to: [{ cidr: "198.51.100.0/24" }] }] })] }));
    const b = renderRuleset(state({ policies: [keep, policy("new", { egress: [{ to: [{ cidr: "203.0.113.0/24" }], ports: [{ protocol: "UDP", port: 53 }] }] })] }));
    expect(a.skeleton).toBe(b.skeleton);
    expect(carriedOwners(a, b)).toEqual({ owners: new Set(), maps: new Set() });
    // No chains, no named counters per policy: only elements, each with its own counter and its owner's comment.
    expect(patchScript(a, b, "firewall", { from: "aaaa", to: "bbbb" })).toBe(
      [
        "delete element inet firewall egress4_ports { 198.51.100.0/24 . tcp . 0-65535, 198.51.100.0/24 . udp . 0-65535, 198.51.100.0/24 . sctp . 0-65535 }",
        'add element inet firewall egress4_ports { 203.0.113.0/24 . udp . 53 comment "accept traffic for np new udp" : accept }',
        "delete element inet firewall egress4_any { 198.51.100.0/24 }",
        "delete chain inet firewall revision.aaaa",
        "add chain inet firewall revision.bbbb",
        "",
      ].join("\n"),
    );
  });

  test("an owner that stays but loses elements has all its elements re-added, the first starting at its count", () => {
    const split = policy("split", { egress: [{ to: [{ cidr: "198.51.100.0/24" }, { cidr: "2001:db8:80::/48" }], ports: [{ port: 80 }] }] });
    const a = renderRuleset(state({ policies: [split] }));
    // An overlapping policy moves split's IPv4 element to the next layer.
    const b = renderRuleset(state({ policies: [split, policy("overlap", { egress: [{ to: [{ cidr: "198.51.100.64/26" }], ports: [{ port: 80 }] }] })] }));
    expect(a.skeleton).toBe(b.skeleton);
    expect(carriedOwners(a, b)).toEqual({ owners: new Set(["np.eg.tcp.split"]), maps: new Set(["egress4_ports", "egress6_ports"]) });
    const script = patchScript(a, b, "firewall", { from: "aaaa", to: "bbbb" }, new Map([["np.eg.tcp.split", { packets: 10, bytes: 1000 }]]));
    const lines = script.split("\n").filter((l) => l.includes("element"));
    expect(lines).toEqual([
      "delete element inet firewall egress4_ports { 198.51.100.0/24 . tcp . 80 }",
      'add element inet firewall egress4_ports { 198.51.100.64/26 . tcp . 80 comment "accept traffic for np overlap tcp" : accept }',
      'add element inet firewall egress4_ports_1 { 198.51.100.0/24 . tcp . 80 counter packets 10 bytes 1000 comment "accept traffic for np split tcp" : accept }',
      // Untouched in itself, but re-added: the owner's count now lives in its first element alone.
      "delete element inet firewall egress6_ports { 2001:db8:80::/48 . tcp . 80 }",
      'add element inet firewall egress6_ports { 2001:db8:80::/48 . tcp . 80 comment "accept traffic for np split tcp" : accept }',
    ]);
    expect(script).toContain("add map inet firewall egress4_ports_1 { type ipv4_addr . inet_proto . inet_service : verdict; flags interval; counter; }");
  });
});

describe.skipIf(skip)("patching in a real kernel", () => {
  const patched = `fct-patch-${randomBytes(3).toString("hex")}`;
  const replaced = `fct-repl-${randomBytes(3).toString("hex")}`;
  const inPatched = netnsExecutor(patched);
  const inReplaced = netnsExecutor(replaced);
  let nftPatched: NftClient;
  let nftReplaced: NftClient;
  // The same, with netlink as in production: element changes and markers go in as a netlink batch.
  let nlPatched: NftClient;
  let nl: NftNetlink | undefined;
  let netlinkPatches = 0;

  beforeAll(async () => {
    for (const ns of [patched, replaced]) expect((await runCommand(["ip", "netns", "add", ns])).code).toBe(0);
    nftPatched = nftClient("nft", inPatched);
    nftReplaced = nftClient("nft", inReplaced);
    nl = openNetlink({ netns: patched });
    const real = nftClient("nft", inPatched, nl);
    nlPatched = {
      ...real,
      applyElements: async (load) => {
        await real.applyElements?.(load);
        if (load.deleteChains?.some((c) => c.startsWith("revision."))) netlinkPatches++;
      },
    };
  });
  afterAll(async () => {
    nl?.close();
    for (const ns of [patched, replaced]) await runCommand(["ip", "netns", "del", ns]);
  });
  const clientFor = (how: "nft" | "netlink") => (how === "nft" ? nftPatched : nlPatched);
  /** With netlink, every patch whose plan changes elements only must have gone in as a netlink batch. */
  const netlinkCheck = (how: "nft" | "netlink") => {
    const before = netlinkPatches;
    let eligible = 0;
    return {
      note(p: { mode: string }, from: Ruleset | undefined, to: Ruleset): void {
        if (p.mode === "patched" && from && elementsOnly(patchPlan(from, to))) eligible++;
      },
      verify(): void {
        if (how === "nft") return;
        expect(eligible).toBeGreaterThan(0);
        expect(netlinkPatches - before).toBe(eligible);
      },
    };
  };

  // Besides the random ones, each property runs one known case whose second step changes elements
  // only (an isolated policy comes, one goes): the netlink path is then always taken at least once.
  const isolated = (name: string, cidr: string, port: number) => cwnp(name, { egress: [{ to: [{ cidr }], ports: [{ protocol: "TCP", port }] }] });
  const [one, two] = [isolated("one", "192.0.2.0/28", 443), isolated("two", "198.51.100.64/28", 8443)];
  const elementSteps = [[{ policies: [one], services: [] }, { policies: [one, two], services: [] }, { policies: [two], services: [] }]];

  for (const how of ["nft", "netlink"] as const) {
    test(`any sequence of changes, patched (by ${how}), leaves the same table as replacing it whole`, async () => {
      const nftPatched = clientFor(how);
      const byNetlink = netlinkCheck(how);
      await runCommand(["ip", "netns", "exec", patched, "nft", "flush", "ruleset"]);
      let previous: Ruleset | undefined;
      let patches = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(fc.record({ policies: policiesArb(6), services: servicesArb(3) }), { minLength: 2, maxLength: 4 }), async (steps) => {
          for (const step of steps) {
            const next = render(step as { policies: unknown[]; services: unknown[] });
            const p = await applyRuleset(next, { nft: nftPatched, table: "firewall", previous });
            if (p.mode === "patched") patches++;
            byNetlink.note(p, previous, next);
            await runCommand(["ip", "netns", "exec", replaced, "nft", "flush", "ruleset"]);
            await applyRuleset(next, { nft: nftReplaced, table: "firewall" });
            expect(await normalized(inPatched)).toEqual(await normalized(inReplaced));
            previous = next;
          }
        }),
        { numRuns: Number(process.env.FCT_PATCH_RUNS ?? 15), examples: elementSteps.map((steps) => [steps] as [typeof steps]) as never },
      );
      // The property is about patches: most steps must actually have been patched, not replaced.
      expect(patches).toBeGreaterThan(10);
      // ...and by netlink, most of them there.
      byNetlink.verify();
    }, 120_000);

    test(`unverified patches (by ${how}) from a known state (no listing first) also leave the same table as replacing it whole`, async () => {
      const nftPatched = clientFor(how);
      const byNetlink = netlinkCheck(how);
      await runCommand(["ip", "netns", "exec", patched, "nft", "flush", "ruleset"]);
      let previous: Ruleset | undefined;
      let fingerprint: string | null | undefined;
      let fast = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(fc.record({ policies: policiesArb(6), services: servicesArb(3) }), { minLength: 2, maxLength: 4 }), async (steps) => {
          for (const step of steps) {
            const next = render(step as { policies: unknown[]; services: unknown[] });
            const listings = { n: 0 };
            const counting: NftClient = { ...nftPatched, inventory: (t) => { listings.n++; return nftPatched.inventory(t); } };
            const p = await applyRuleset(next, { nft: counting, table: "firewall", ...(previous ? { previous } : {}), ...(fingerprint === undefined ? {} : { previousFingerprint: fingerprint }), verify: false });
            if (p.mode === "patched" && listings.n === 0) fast++;
            byNetlink.note(p, previous, next);
            fingerprint = p.fingerprint;
            await runCommand(["ip", "netns", "exec", replaced, "nft", "flush", "ruleset"]);
            await applyRuleset(next, { nft: nftReplaced, table: "firewall" });
            expect(await normalized(inPatched)).toEqual(await normalized(inReplaced));
            previous = next;
          }
        }),
        { numRuns: Number(process.env.FCT_PATCH_RUNS ?? 15), examples: elementSteps.map((steps) => [steps] as [typeof steps]) as never },
      );
      expect(fast).toBeGreaterThan(10);
      byNetlink.verify();
    }, 120_000);

    test(`patches (by ${how}) made from the incremental renderer's deltas leave the same table as replacing it whole`, async () => {
      const nftPatched = clientFor(how);
      const byNetlink = netlinkCheck(how);
      await runCommand(["ip", "netns", "exec", patched, "nft", "flush", "ruleset"]);
      let withDelta = 0;
      await fc.assert(
        fc.asyncProperty(policiesArb(8), policiesArb(8), servicesArb(3), fc.array(fc.tuple(fc.array(fc.nat(15), { maxLength: 10 }), fc.array(fc.nat(2), { maxLength: 3 })), { minLength: 2, maxLength: 5 }), async (p1, p2, s1, steps) => {
          // Objects drawn from a pool keep their identity between steps, as the controller's caches hand them on.
          const pool = [...p1, ...p2].map((p) => parsePolicy(p)).flatMap((r) => (r.ok ? [r.value] : []));
          const svcs = s1.map((x) => parseService(x)).flatMap((r) => (r.ok ? [r.value] : []));
          const renderer = new IncrementalRenderer();
          let previous: Ruleset | undefined;
          await runCommand(["ip", "netns", "exec", patched, "nft", "flush", "ruleset"]);
          for (const [pi, si] of steps) {
            const seen = new Set<string>();
            const policies = pi.flatMap((i) => (pool.length > 0 ? [pool[i % pool.length] as (typeof pool)[number]] : [])).filter((p) => !seen.has(p.name) && seen.add(p.name) !== undefined);
            const seenSvc = new Set<string>();
            const services = si.flatMap((i) => (svcs.length > 0 ? [svcs[i % svcs.length] as (typeof svcs)[number]] : [])).filter((x) => !seenSvc.has(`${x.namespace}/${x.name}`) && seenSvc.add(`${x.namespace}/${x.name}`) !== undefined);
            const next = renderer.render(state({ policies, services }));
            if (previous && next.delta?.from.deref() === previous) withDelta++;
            byNetlink.note(await applyRuleset(next, { nft: nftPatched, table: "firewall", ...(previous ? { previous } : {}) }), previous, next);
            await runCommand(["ip", "netns", "exec", replaced, "nft", "flush", "ruleset"]);
            await applyRuleset(next, { nft: nftReplaced, table: "firewall" });
            expect(await normalized(inPatched)).toEqual(await normalized(inReplaced));
            previous = next;
          }
        }),
        { numRuns: Number(process.env.FCT_PATCH_RUNS ?? 15), examples: [[[one], [two], [], [[[0], []], [[0, 1], []], [[1], []]]]] as never },
      );
      expect(withDelta).toBeGreaterThan(10);
      byNetlink.verify();
    }, 120_000);
  }

  test("after our own unverified patch, a verifying run fingerprints the vouched revision instead of replacing; unvouched, it replaces", async () => {
    await runCommand(["ip", "netns", "exec", patched, "nft", "flush", "ruleset"]);
    const a = renderRuleset(state({ policies: [policy("one", { egress: [{ ports: [{ port: 443 }] }] })] }));
    const b = renderRuleset(state({ policies: [policy("one", { egress: [{ ports: [{ port: 443 }] }] }), policy("two", { egress: [{ ports: [{ port: 80 }] }] })] }));
    const first = await applyRuleset(a, { nft: nftPatched, table: "firewall" });
    const p = await applyRuleset(b, { nft: nftPatched, table: "firewall", previous: a, previousFingerprint: first.fingerprint ?? null, verify: false });
    expect({ mode: p.mode, fingerprint: p.fingerprint }).toEqual({ mode: "patched", fingerprint: null });
    let runs = 0;
    const counting: NftClient = { ...nftPatched, run: (script) => { runs++; return nftPatched.run(script); } };
    const vouched = await applyRuleset(b, { nft: counting, table: "firewall", previous: b, vouchedRevision: p.revision });
    expect(vouched.mode).toBe("unchanged");
    expect(vouched.fingerprint).toMatch(/^[0-9a-f]{16}$/);
    expect(runs).toBe(1); // the fingerprint marker only
    expect((await applyRuleset(b, { nft: nftPatched, table: "firewall" })).mode).toBe("unchanged");

    const c = renderRuleset(state({ policies: [policy("one", { egress: [{ ports: [{ port: 443 }] }] })] }));
    const q = await applyRuleset(c, { nft: nftPatched, table: "firewall", previous: b, previousFingerprint: vouched.fingerprint ?? null, verify: false });
    expect(q.mode).toBe("patched");
    expect((await applyRuleset(c, { nft: nftPatched, table: "firewall" })).mode).toBe("replaced");
  });

  const egress = (name: string, cidrs: string[], port: number) => policy(name, { egress: [{ to: cidrs.map((cidr) => ({ cidr })), ports: [{ port }] }] });

  test("an edit that changes elements only goes in over netlink and carries the owner's count into its new element; a deletion in the same batch keeps the others' counts", async () => {
    await runCommand(["ip", "netns", "exec", patched, "nft", "flush", "ruleset"]);
    const keep = egress("keep", ["192.0.2.0/24", "2001:db8:1::/48"], 443);
    const a = renderRuleset(state({ policies: [keep, egress("change", ["203.0.113.0/24"], 22), egress("gone", ["198.18.0.0/24"], 53)] }));
    const b = renderRuleset(state({ policies: [keep, egress("change", ["198.51.100.0/24", "203.0.113.0/25"], 22)] }));
    expect(elementsOnly(patchPlan(a, b))).toBe(true);
    const first = await applyRuleset(a, { nft: nlPatched, table: "firewall" });
    await seedElements(inPatched, a, {
      "192.0.2.0/24 . tcp . 443": { packets: 5, bytes: 300 },
      "2001:db8:1::/48 . tcp . 443": { packets: 4, bytes: 400 },
      "203.0.113.0/24 . tcp . 22": { packets: 9, bytes: 900 },
      "198.18.0.0/24 . tcp . 53": { packets: 2, bytes: 200 },
    });
    // The seeding was a transaction of someone else's: vouched for again before the patch, as the controller's next run would.
    const vouched = await applyRuleset(a, { nft: nlPatched, table: "firewall", previous: a, previousGeneration: first.generation ?? null });
    expect(vouched.mode).toBe("repaired");
    const before = netlinkPatches;
    const r = await applyRuleset(b, { nft: nlPatched, table: "firewall", previous: a, previousGeneration: vouched.generation ?? null, previousFingerprint: null, verify: false });
    expect(r.mode).toBe("patched");
    expect(netlinkPatches - before).toBe(1);
    expect(r.generation).toBe(nl?.generation());
    const comment = (p: string) => `accept traffic for np ${p} tcp`;
    expect(await ownerSums(inPatched, b)).toEqual(new Map([[comment("keep"), { packets: 9, bytes: 700 }], [comment("change"), { packets: 9, bytes: 900 }]]));
    // The carried count is in the owner's first new element alone.
    expect((await elementCounts(inPatched, b)).filter((e) => e.comment === comment("change"))).toEqual([
      { map: "egress4_ports", comment: comment("change"), packets: 9, bytes: 900 },
      { map: "egress4_ports", comment: comment("change"), packets: 0, bytes: 0 },
    ]);
  });

  test("with counts read by key, an edit moves only its lost elements' counts: kept elements stay untouched with their own; an owner that gains none has one kept element re-added with the lost count added to its own", async () => {
    await runCommand(["ip", "netns", "exec", patched, "nft", "flush", "ruleset"]);
    // wide: keeps its IPv6 element, its IPv4 one is replaced (a new block). narrow: loses one of two IPv4 blocks, gains none.
    const a = renderRuleset(state({ policies: [egress("wide", ["203.0.113.0/24", "2001:db8:5::/48"], 22), egress("narrow", ["198.18.0.0/24", "198.18.2.0/24"], 53)] }));
    const b = renderRuleset(state({ policies: [egress("wide", ["203.0.113.0/25", "2001:db8:5::/48"], 22), egress("narrow", ["198.18.2.0/24"], 53)] }));
    const carry = carryReads(a, b, carriedOwners(a, b).owners);
    expect(carry.reads).toEqual(new Map([["egress4_ports", ["198.18.0.0/24 . tcp . 53", "203.0.113.0/24 . tcp . 22", "198.18.2.0/24 . tcp . 53"]]]));
    expect(carry.keepers).toEqual(new Map([["np.eg.tcp.narrow", { map: "egress4_ports", key: "198.18.2.0/24 . tcp . 53" }]]));
    await applyRuleset(a, { nft: nlPatched, table: "firewall" });
    await seedElements(inPatched, a, {
      "203.0.113.0/24 . tcp . 22": { packets: 9, bytes: 900 },
      "2001:db8:5::/48 . tcp . 22": { packets: 4, bytes: 400 },
      "198.18.0.0/24 . tcp . 53": { packets: 2, bytes: 200 },
      "198.18.2.0/24 . tcp . 53": { packets: 5, bytes: 500 },
    });
    // On trust (no generation, no fingerprint): the seeded counts stay as they are, element by element.
    const before = netlinkPatches;
    const r = await applyRuleset(b, { nft: nlPatched, table: "firewall", previous: a, previousFingerprint: null, previousGeneration: null, verify: false });
    expect(r.mode).toBe("patched");
    expect(netlinkPatches - before).toBe(1);
    const comment = (p: string) => `accept traffic for np ${p} tcp`;
    const counts = await elementCounts(inPatched, b);
    expect(counts.filter((e) => e.comment === comment("wide"))).toEqual([
      // The new IPv4 block starts at the count of the one it replaced; the IPv6 element was not touched.
      { map: "egress4_ports", comment: comment("wide"), packets: 9, bytes: 900 },
      { map: "egress6_ports", comment: comment("wide"), packets: 4, bytes: 400 },
    ]);
    // Its own 5 and the lost block's 2.
    expect(counts.filter((e) => e.comment === comment("narrow"))).toEqual([{ map: "egress4_ports", comment: comment("narrow"), packets: 7, bytes: 700 }]);
  });

  test.each([
    ["nft -j list map", "json"],
    ["netlink", "netlink"],
  ] as const)("a patch keeps every owner's count exactly, carried ones too (counts read by the applier over %s), and is refused back to replacement when the kernel was edited", async (_how, how) => {
    await runCommand(["ip", "netns", "exec", patched, "nft", "flush", "ruleset"]);
    const nl = how === "netlink" ? openNetlink({ netns: patched }) : null;
    const nft = nl ? nftClient("nft", inPatched, nl) : nftPatched;
    try {
      const keep = egress("keep", ["192.0.2.0/24"], 443);
      const split = egress("split", ["198.51.100.0/24", "2001:db8:80::/48"], 80);
      const a = renderRuleset(state({ policies: [keep, split, egress("change", ["203.0.113.0/24"], 22), egress("gone", ["198.18.0.0/24"], 53)] }));
      // keep: untouched. split: its IPv4 element moves to the next layer (overlap). change: its element is replaced. gone: goes. more: comes.
      const b = renderRuleset(state({ policies: [keep, split, egress("overlap", ["198.51.100.64/26"], 80), egress("change", ["203.0.113.0/25"], 22), egress("more", ["198.18.1.0/24"], 8080)] }));
      expect(carriedOwners(a, b).owners).toEqual(new Set(["np.eg.tcp.split", "np.eg.tcp.change"]));
      await applyRuleset(a, { nft, table: "firewall" });
      await seedElements(inPatched, a, {
        "192.0.2.0/24 . tcp . 443": { packets: 5, bytes: 300 },
        "198.51.100.0/24 . tcp . 80": { packets: 7, bytes: 700 },
        "2001:db8:80::/48 . tcp . 80": { packets: 3, bytes: 300 },
        "203.0.113.0/24 . tcp . 22": { packets: 9, bytes: 900 },
        "198.18.0.0/24 . tcp . 53": { packets: 2, bytes: 200 },
      });
      await seedNamed(inPatched, ["external_in", "accept_established", "drop_total"]);
      // Seeding was a transaction: by the fingerprint (which leaves counter values out) the table is
      // still as applied; by the generation it is not, and the repair carries the counts over.
      expect((await applyRuleset(a, { nft, table: "firewall" })).mode).toBe(how === "json" ? "unchanged" : "repaired");
      const comment = (p: string) => `accept traffic for np ${p} tcp`;
      expect(await ownerSums(inPatched, a)).toEqual(
        new Map([
          [comment("keep"), { packets: 5, bytes: 300 }],
          [comment("split"), { packets: 10, bytes: 1000 }],
          [comment("change"), { packets: 9, bytes: 900 }],
          [comment("gone"), { packets: 2, bytes: 200 }],
        ]),
      );
      const named = await namedCounters(inPatched);
      for (const n of ["external_in", "accept_established", "drop_total"]) expect(named.get(n)?.packets).toBe(1);

      const r = await applyRuleset(b, { nft, table: "firewall", previous: a });
      expect(r.mode).toBe("patched");
      expect(await ownerSums(inPatched, b)).toEqual(
        new Map([
          [comment("keep"), { packets: 5, bytes: 300 }],
          [comment("more"), { packets: 0, bytes: 0 }],
          [comment("overlap"), { packets: 0, bytes: 0 }],
          [comment("change"), { packets: 9, bytes: 900 }],
          [comment("split"), { packets: 10, bytes: 1000 }],
        ]),
      );
      // The carried count is in the owner's first element alone; the others start at zero.
      expect((await elementCounts(inPatched, b)).filter((e) => e.comment === comment("split"))).toEqual([
        { map: "egress4_ports_1", comment: comment("split"), packets: 10, bytes: 1000 },
        { map: "egress6_ports", comment: comment("split"), packets: 0, bytes: 0 },
      ]);
      expect(await namedCounters(inPatched)).toEqual(named);

      // Someone flushes a map by hand: the table is no longer proven, so no patch; the replacement repairs.
      await inPatched(["nft", "flush", "map", "inet", "firewall", "egress4_ports"]);
      const c = renderRuleset(state({ policies: [keep] }));
      const r2 = await applyRuleset(c, { nft, table: "firewall", previous: b });
      expect(r2.mode).toBe("repaired");
      expect(await namedCounters(inPatched)).toEqual(named);
      await runCommand(["ip", "netns", "exec", replaced, "nft", "flush", "ruleset"]);
      await applyRuleset(c, { nft: nftReplaced, table: "firewall" });
      expect(await normalized(inPatched)).toEqual(await normalized(inReplaced));
    } finally {
      nl?.close();
    }
  }, 60_000);
});
