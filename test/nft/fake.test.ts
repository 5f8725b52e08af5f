// The in-memory nft (lib/nft/fake.ts): it takes what the renderer and the applier write, refuses
// what nft would refuse (a whole batch at a time), and lets the applier's logic run without root:
// patches from the incremental renderer's deltas leave the same table as replacing it whole, a
// refused batch changes nothing, someone else's commit makes the next verifying apply replace.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { parsePolicy } from "../../lib/api/policy.ts";
import { parseService } from "../../lib/api/service.ts";
import { applyRuleset } from "../../lib/nft/apply.ts";
import { Applier } from "../../lib/nft/applier.ts";
import { FakeNft } from "../../lib/nft/fake.ts";
import { IncrementalRenderer } from "../../lib/ruleset/incremental.ts";
import { renderRuleset } from "../../lib/ruleset/render.ts";
import { policiesArb, servicesArb } from "../ruleset/arbitraries.ts";
import { policy, state } from "../ruleset/helpers.ts";

const MARKERS = /^chain (revision|generation|fingerprint)\.\S+$/;
/** The dump without marker chains (a generation marker counts transactions, which differ between two fakes). */
const contents = (nft: FakeNft) => nft.dump("firewall").split("\n").filter((l) => !MARKERS.test(l)).join("\n");

describe("FakeNft", () => {
  test("a rendered ruleset goes in whole: its maps, elements (with comments and verdicts), sets, counters and chains", async () => {
    const nft = new FakeNft();
    const r = renderRuleset(state({ policies: [policy("web", { egress: [{ to: [{ cidr: "203.0.113.7/32" }], ports: [{ port: 443 }] }] })] }));
    const applied = await applyRuleset(r, { nft, table: "firewall" });
    expect(applied.mode).toBe("replaced");
    const dump = nft.dump("firewall");
    expect(dump).toContain('  203.0.113.7 . tcp . 443 comment "accept traffic for np web tcp" : accept\n');
    expect(dump).toContain("counter drop_total packets 0 bytes 0\n");
    expect(dump).toContain(`chain revision.${applied.revision}\n`);
    expect(dump).toMatch(/\nchain forward\n {2}type filter hook forward priority filter; policy drop;\n/);
    expect((await nft.inventory("firewall"))?.maps).toEqual([...r.maps.keys()]);
    // The same again: the generation marker proves it, nothing runs.
    const before = nft.scripts.length;
    expect((await applyRuleset(r, { nft, table: "firewall", previous: r, previousGeneration: applied.generation ?? null })).mode).toBe("unchanged");
    expect(nft.scripts.length).toBe(before);
  });

  test("a batch it refuses changes nothing: same tables, same generation", async () => {
    const nft = new FakeNft();
    await applyRuleset(renderRuleset(state({ policies: [policy("a", { egress: [{ ports: [{ port: 22 }] }] })] })), { nft, table: "firewall" });
    const dump = nft.dump("firewall");
    const generation = await nft.generation();
    for (const bad of [
      "add element inet firewall egress4_ports { 198.51.100.1 . tcp . 80 comment \"x\" : accept }\ndelete chain inet firewall nosuch\n",
      "delete counter inet firewall drop_total\n", // still counted by a rule
      "delete map inet firewall egress4_ports\n", // still looked up by the forward chain
      "add rule inet firewall forward counter name \"nosuch\"\n",
      "table inet firewall {\n\tchain x {\n",
    ]) {
      const r = await nft.run(bad);
      expect(r.code).toBe(1);
      expect(r.stderr).toStartWith("Error: ");
      expect(nft.dump("firewall")).toBe(dump);
      expect(await nft.generation()).toBe(generation);
    }
  });

  test("property: patches from the incremental renderer's deltas leave the same table as replacing it whole", async () => {
    let patched = 0;
    await fc.assert(
      fc.asyncProperty(policiesArb(8), policiesArb(8), servicesArb(3), fc.array(fc.tuple(fc.array(fc.nat(15), { maxLength: 10 }), fc.array(fc.nat(2), { maxLength: 3 }), fc.boolean()), { minLength: 2, maxLength: 6 }), async (p1, p2, s1, steps) => {
        // Objects drawn from a pool keep their identity between steps, as the controller's caches hand them on.
        const pool = [...p1, ...p2].map((p) => parsePolicy(p)).flatMap((r) => (r.ok ? [r.value] : []));
        const svcs = s1.map((x) => parseService(x)).flatMap((r) => (r.ok ? [r.value] : []));
        const renderer = new IncrementalRenderer();
        const a = new FakeNft();
        const applier = new Applier({ nft: a, table: "firewall" });
        for (const [pi, si, verify] of steps) {
          const seen = new Set<string>();
          const policies = pi.flatMap((i) => (pool.length > 0 ? [pool[i % pool.length] as (typeof pool)[number]] : [])).filter((p) => !seen.has(p.name) && seen.add(p.name) !== undefined);
          const seenSvc = new Set<string>();
          const services = si.flatMap((i) => (svcs.length > 0 ? [svcs[i % svcs.length] as (typeof svcs)[number]] : [])).filter((x) => !seenSvc.has(`${x.namespace}/${x.name}`) && seenSvc.add(`${x.namespace}/${x.name}`) !== undefined);
          const next = renderer.render(state({ policies, services }));
          const r = await applier.apply(next, { verify });
          if (r.mode === "patched") patched++;
          const b = new FakeNft();
          await applyRuleset(next, { nft: b, table: "firewall" });
          expect(contents(a)).toBe(contents(b));
        }
      }),
      { numRuns: 150 },
    );
    expect(patched).toBeGreaterThan(100);
  });

  test("someone else's commit is evidence: the next verifying apply of the same ruleset replaces the table (repaired)", async () => {
    const nft = new FakeNft();
    const applier = new Applier({ nft, table: "firewall" });
    const r = renderRuleset(state({ policies: [policy("a", { egress: [{ ports: [{ port: 22 }] }] })] }));
    expect((await applier.apply(r, { verify: true })).mode).toBe("replaced");
    expect((await applier.apply(r, { verify: true })).mode).toBe("unchanged");
    nft.commitElsewhere();
    expect((await applier.apply(r, { verify: true })).mode).toBe("repaired");
    expect((await applier.apply(r, { verify: true })).mode).toBe("unchanged");
  });

  test("an owner's count survives its own change: the elements it keeps are re-added starting at its count", async () => {
    const nft = new FakeNft();
    const renderer = new IncrementalRenderer();
    const applier = new Applier({ nft, table: "firewall" });
    const two = policy("web", { egress: [{ to: [{ cidr: "203.0.113.7/32" }, { cidr: "203.0.113.9/32" }], ports: [{ port: 443 }] }] });
    await applier.apply(renderer.render(state({ policies: [two] })), { verify: true });
    nft.count("firewall", "egress4_ports", "203.0.113.7 . tcp . 443", 3, 180);
    nft.count("firewall", "egress4_ports", "203.0.113.9 . tcp . 443", 2, 120);
    const one = policy("web", { egress: [{ to: [{ cidr: "203.0.113.7/32" }], ports: [{ port: 443 }] }] });
    expect((await applier.apply(renderer.render(state({ policies: [one] })), { verify: false })).mode).toBe("patched");
    const sum = (await nft.elementCounters("firewall", "egress4_ports")).filter((e) => e.comment === "accept traffic for np web tcp").reduce((s, e) => ({ packets: s.packets + e.packets, bytes: s.bytes + e.bytes }), { packets: 0, bytes: 0 });
    expect(sum).toEqual({ packets: 5, bytes: 300 });
  });
});
