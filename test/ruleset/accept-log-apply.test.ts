// Accept logging in a real kernel (SPEC §4.7): with the flag flipping between steps and policies
// coming and going, the applier (patching where the skeleton allows) leaves the same table as a
// full replacement — every map element goes to the log chain exactly when the flag is on, also
// the elements a patch adds.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { parsePolicy } from "../../lib/api/policy.ts";
import { parseService } from "../../lib/api/service.ts";
import { runCommand } from "../../lib/exec.ts";
import { applyRuleset } from "../../lib/nft/apply.ts";
import { type NftClient, nftClient } from "../../lib/nft/client.ts";
import { ACCEPT_LOG_CHAIN, renderRuleset, type Ruleset } from "../../lib/ruleset/render.ts";
import { needs, netnsExecutor } from "../netns/topology.ts";
import { policiesArb, servicesArb } from "./arbitraries.ts";
import { state } from "./helpers.ts";

const skip = needs(["ip", "nft"]).skip;

/** The table as JSON with handles and counter values left out (as test/nft/patch.test.ts). */
async function normalized(exec: ReturnType<typeof netnsExecutor>): Promise<Record<string, unknown>> {
  const r = await exec(["nft", "-j", "list", "table", "inet", "firewall"]);
  const doc = JSON.parse(r.stdout) as { nftables: Record<string, Record<string, unknown>>[] };
  const out: Record<string, unknown> = {};
  const chains: Record<string, unknown[]> = {};
  for (const o of doc.nftables) {
    const [kind, body] = Object.entries(o)[0] as [string, Record<string, unknown>];
    if (kind === "metainfo" || kind === "table") continue;
    if (String(body.name ?? body.chain).startsWith("fingerprint.")) continue;
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

interface KernelElement {
  readonly comment: string | undefined;
  readonly counter: { packets: number; bytes: number } | undefined;
  /** `accept`, `goto <chain>`, `jump <chain>`, ... */
  readonly verdict: string;
}

/** The elements of one map as the kernel holds them (`nft -j list map`): comment, counter, verdict. */
async function kernelElements(exec: ReturnType<typeof netnsExecutor>, map: string): Promise<KernelElement[]> {
  const r = await exec(["nft", "-j", "list", "map", "inet", "firewall", map]);
  expect(r.code).toBe(0);
  const doc = JSON.parse(r.stdout) as { nftables: { map?: { elem?: [unknown, Record<string, { target?: string } | null>][] } }[] };
  const body = doc.nftables.find((o) => o.map)?.map;
  return (body?.elem ?? []).map(([key, verdict]) => {
    const e = (key as { elem?: { comment?: string; counter?: { packets: number; bytes: number } } }).elem;
    const [kind, arg] = Object.entries(verdict)[0] as [string, { target?: string } | null];
    return { comment: e?.comment, counter: e?.counter, verdict: arg?.target ? `${kind} ${arg.target}` : kind };
  });
}

/** Owner comment → number of its elements, as rendered. */
function renderedOwners(r: Ruleset): Map<string, number> {
  const out = new Map<string, number>();
  for (const elements of r.elements.values()) for (const owner of elements.values()) {
    const c = r.owners.get(owner) as string;
    out.set(c, (out.get(c) ?? 0) + 1);
  }
  return out;
}

function render(raw: { policies: unknown[]; services: unknown[]; log: boolean }): Ruleset {
  const policies = raw.policies.map((p) => parsePolicy(p)).flatMap((r) => (r.ok ? [r.value] : []));
  const services = raw.services.map((s) => parseService(s)).flatMap((r) => (r.ok ? [r.value] : []));
  return renderRuleset(state({ policies, services, logAcceptedConnections: raw.log }));
}

describe.skipIf(skip)("accept logging: patched equals replaced in a real kernel", () => {
  const patched = `fct-alp-${randomBytes(3).toString("hex")}`;
  const replaced = `fct-alr-${randomBytes(3).toString("hex")}`;
  const inPatched = netnsExecutor(patched);
  const inReplaced = netnsExecutor(replaced);
  let nftPatched: NftClient;
  let nftReplaced: NftClient;

  beforeAll(async () => {
    for (const ns of [patched, replaced]) expect((await runCommand(["ip", "netns", "add", ns])).code).toBe(0);
    nftPatched = nftClient("nft", inPatched);
    nftReplaced = nftClient("nft", inReplaced);
  });
  afterAll(async () => {
    for (const ns of [patched, replaced]) await runCommand(["ip", "netns", "del", ns]);
  });

  for (const verify of [true, false]) {
    test(`any sequence of changes with the flag flipping (verify: ${verify}) leaves the same table as replacing it whole`, async () => {
      await runCommand(["ip", "netns", "exec", patched, "nft", "flush", "ruleset"]);
      let previous: Ruleset | undefined;
      let fingerprint: string | null | undefined;
      const modes = new Set<string>();
      await fc.assert(
        fc.asyncProperty(fc.array(fc.record({ policies: policiesArb(5), services: servicesArb(3), log: fc.boolean() }), { minLength: 2, maxLength: 4 }), async (steps) => {
          for (const step of steps) {
            const next = render(step as { policies: unknown[]; services: unknown[]; log: boolean });
            const p = await applyRuleset(next, {
              nft: nftPatched,
              table: "firewall",
              ...(previous ? { previous } : {}),
              ...(verify ? {} : { verify: false, ...(fingerprint === undefined ? {} : { previousFingerprint: fingerprint }) }),
            });
            modes.add(p.mode);
            fingerprint = p.fingerprint;
            await runCommand(["ip", "netns", "exec", replaced, "nft", "flush", "ruleset"]);
            await applyRuleset(next, { nft: nftReplaced, table: "firewall" });
            const got = await normalized(inPatched);
            expect(got).toEqual(await normalized(inReplaced));
            // and every element the kernel holds counts, carries its owner's comment and goes to the
            // log chain exactly when the flag is on; the log chain exists exactly then
            const verdict = step.log ? `goto ${ACCEPT_LOG_CHAIN}` : "accept";
            const owners = new Map<string, number>();
            for (const [map, elements] of next.elements) {
              const got = await kernelElements(inPatched, map);
              expect(got).toHaveLength(elements.size);
              for (const e of got) {
                expect(e.verdict).toBe(verdict);
                expect(e.counter).toEqual({ packets: 0, bytes: 0 });
                expect(typeof e.comment).toBe("string");
                owners.set(e.comment as string, (owners.get(e.comment as string) ?? 0) + 1);
              }
            }
            expect(owners).toEqual(renderedOwners(next));
            const chains = Object.keys(got)
              .filter((k) => k.startsWith("chain "))
              .map((k) => k.slice("chain ".length))
              .filter((c) => !/^(revision|generation)\./.test(c));
            expect(chains.toSorted()).toEqual(step.log ? [ACCEPT_LOG_CHAIN, "forward"] : ["forward"]);
            expect(Object.keys(got.rules as Record<string, unknown>).toSorted()).toEqual(chains.toSorted());
            previous = next;
          }
        }),
        { numRuns: Number(process.env.FCT_PATCH_RUNS ?? 12) },
      );
      expect(modes.has("patched")).toBe(true);
      expect(modes.has("replaced")).toBe(true);
    }, 120_000);
  }
});
