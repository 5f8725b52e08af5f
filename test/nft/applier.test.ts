// The applier as an object: it remembers what it applied and the markers it left, patches from
// there without listing, verifies on periodic runs when due (after its own unverified patch, or
// once a minute by its clock), and forgets everything after a failure. Real nft in a namespace.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { runCommand } from "../../lib/exec.ts";
import { Applier, VERIFY_EVERY_MS } from "../../lib/nft/applier.ts";
import { type NftClient, nftClient } from "../../lib/nft/client.ts";
import { renderRuleset } from "../../lib/ruleset/render.ts";
import { needs } from "../netns/topology.ts";
import { policy, state } from "../ruleset/helpers.ts";

const env = needs(["ip", "nft"]);

describe.skipIf(env.skip)("Applier", () => {
  const ns = `fct-applier-${randomBytes(3).toString("hex")}`;
  const exec = (argv: readonly string[], o?: { stdin?: string }) => runCommand(["ip", "netns", "exec", ns, ...argv], o);
  const calls: string[] = [];
  let refuse = false;
  const real = nftClient("nft", exec);
  const nft: NftClient = {
    ...real,
    inventory: (t) => (calls.push("inventory"), real.inventory(t)),
    fingerprint: (t, p) => (calls.push("fingerprint"), real.fingerprint(t, p)),
    run: (s) => (calls.push("run"), refuse ? Promise.resolve({ code: 1, stdout: "", stderr: "Error: refused by the test" }) : real.run(s)),
  };
  const a = renderRuleset(state({ policies: [policy("one", { egress: [{ ports: [{ port: 443 }] }] })] }));
  const b = renderRuleset(state({ policies: [policy("one", { egress: [{ ports: [{ port: 443 }] }] }), policy("two", { egress: [{ ports: [{ port: 80 }] }] })] }));
  const c = renderRuleset(state({ policies: [policy("two", { egress: [{ ports: [{ port: 80 }] }] })] }));

  beforeAll(async () => {
    expect((await runCommand(["ip", "netns", "add", ns])).code).toBe(0);
  });
  afterAll(async () => {
    await runCommand(["ip", "netns", "del", ns]);
  });

  test("remembers, patches without listing, verifies when due by its own clock, and forgets after a failure", async () => {
    let clock = 0;
    const applier = new Applier({ nft, table: "firewall", now: () => clock });
    expect(applier.applied).toBeUndefined();

    // Periodic, nothing known: lists, replaces, fingerprints.
    expect((await applier.apply(a, { verify: "periodic" })).mode).toBe("replaced");
    expect(applier.applied).toBe(a);

    // An event: patched from the known state, nothing listed first.
    calls.length = 0;
    clock += 1000;
    expect((await applier.apply(b, { verify: false })).mode).toBe("patched");
    expect(calls).toEqual(["run"]);

    // The next periodic run is due at once (its own patch stands unstamped): vouched for, fingerprinted in place.
    calls.length = 0;
    clock += 1000;
    expect((await applier.apply(b, { verify: "periodic" })).mode).toBe("unchanged");
    expect(calls).toEqual(["inventory", "fingerprint", "run"]);

    // Stamped and verified a moment ago: a periodic run trusts the revision marker.
    calls.length = 0;
    clock += 1000;
    expect((await applier.apply(b, { verify: "periodic" })).mode).toBe("unchanged");
    expect(calls).not.toContain("fingerprint");

    // A minute later it verifies again: a listing, no transaction.
    calls.length = 0;
    clock += VERIFY_EVERY_MS;
    expect((await applier.apply(b, { verify: "periodic" })).mode).toBe("unchanged");
    expect(calls).toContain("fingerprint");
    expect(calls).not.toContain("run");

    // A refused transaction: thrown, and nothing is remembered.
    refuse = true;
    await expect(applier.apply(c, { verify: false })).rejects.toThrow(/refused by the test/);
    expect(applier.applied).toBeUndefined();
    refuse = false;

    // So the next apply looks first (inventory) and, knowing no previous ruleset, replaces the table.
    calls.length = 0;
    expect((await applier.apply(c, { verify: false })).mode).toBe("replaced");
    expect(calls[0]).toBe("inventory");
    expect(applier.applied).toBe(c);

    // Removal forgets too.
    expect(await applier.remove()).toBe(true);
    expect(applier.applied).toBeUndefined();
  });
});
