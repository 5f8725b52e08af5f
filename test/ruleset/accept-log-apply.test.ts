// Accept logging in a real kernel (SPEC §4.7): with the flag flipping between steps and policies
// coming and going, the applier (patching where the skeleton allows) leaves the same table as a
// full replacement — the owner chains' log jumps are never lost to a patch.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { parsePolicy } from "../../lib/api/policy.ts";
import { parseService } from "../../lib/api/service.ts";
import { runCommand } from "../../lib/exec.ts";
import { applyRuleset } from "../../lib/nft/apply.ts";
import { type NftClient, nftClient } from "../../lib/nft/client.ts";
import { ACCEPT_LOG_JUMP, renderRuleset, type Ruleset } from "../../lib/ruleset/render.ts";
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
            // and the kernel holds the jump in every owner chain exactly when the flag is on
            const listing = (await inPatched(["nft", "list", "table", "inet", "firewall"])).stdout;
            expect(listing.split("\n").filter((l) => l.trim() === ACCEPT_LOG_JUMP).length).toBe(step.log ? next.chains.size : 0);
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
