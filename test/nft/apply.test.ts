import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import type { Policy } from "../../lib/api/policy.ts";
import { type Executor, runCommand } from "../../lib/exec.ts";
import { applyRuleset, removeRuleset } from "../../lib/nft/apply.ts";
import { type NftClient, nftClient } from "../../lib/nft/client.ts";
import { netlinkAvailable, type NftNetlink, openNetlink } from "../../lib/nft/netlink.ts";
import { renderRuleset, type Ruleset } from "../../lib/ruleset/render.ts";
import { needs, netnsExecutor } from "../netns/topology.ts";
import { elementCounts, ownerSums } from "../owners.ts";
import { seedElements, seedNamed } from "./seed.ts";
import { policy, state } from "../ruleset/helpers.ts";

const skip = needs(["ip", "nft"]).skip;

/** A policy allowing egress to `cidr` on the TCP ports given. */
const allow = (name: string, cidr: string, ...ports: number[]): Policy => policy(name, { egress: [{ to: [{ cidr }], ports: ports.map((port) => ({ protocol: "TCP", port })) }] });
const rendered = (...policies: Policy[]): Ruleset => renderRuleset(state({ policies }));

const BASE = `table inet metal {
\tcounter ssh {
\t}
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\ttcp dport 22 counter name "ssh" accept comment "SSH incoming connections"
\t}
}
`;


const GARBAGE = "table inet firewall {\n\tchain forward {\n\t\tthis is not nft\n\t}\n}";



describe.skipIf(skip)("applying the ruleset to a real kernel", () => {
  const ns = `fct-apply-${randomBytes(3).toString("hex")}`;
  const exec = netnsExecutor(ns);
  let nft: NftClient;
  let runs = 0;

  beforeAll(async () => {
    expect((await runCommand(["ip", "netns", "add", ns])).code).toBe(0);
    const real = nftClient("nft", exec);
    nft = { ...real, run: (s) => { runs++; return real.run(s); } };
    expect((await exec(["nft", "-f", "-"], { stdin: BASE })).code).toBe(0);
  });
  afterAll(async () => {
    await runCommand(["ip", "netns", "del", ns]);
  });

  const list = async (t: string) => (await exec(["nft", "list", "table", "inet", t])).stdout;
  const counter = async (name: string) =>
    (await nft.counters("firewall")).get(name) ?? { packets: -1, bytes: -1 };

  test("first apply creates the table, a second identical apply runs no nft transaction", async () => {
    const before = runs;
    const a = await applyRuleset(rendered(allow("allow-x", "198.18.0.1/32", 443)), { nft, table: "firewall" });
    expect(a.changed).toBe(true);
    const afterFirst = runs;
    expect(afterFirst).toBeGreaterThan(before);
    const b = await applyRuleset(rendered(allow("allow-x", "198.18.0.1/32", 443)), { nft, table: "firewall" });
    expect(b.changed).toBe(false);
    expect(b.mode).toBe("unchanged");
    expect(runs).toBe(afterFirst);
    const text = await list("firewall");
    expect(text).toContain(`revision.${a.revision}`);
    expect(text).toContain('198.18.0.1 . tcp . 443 counter packets 0 bytes 0 comment "accept traffic for np allow-x tcp" : accept');
  });

  test("named counters keep their values across a change; counters and chains of an earlier version are deleted", async () => {
    // Seed values as traffic would have left them, in the shape an earlier version wrote (a chain and counter per policy).
    const seeded = `delete table inet firewall\ntable inet firewall {\n\tcounter external_in {\n\t\tpackets 7 bytes 700\n\t}\n\tcounter np.eg.tcp.gone {\n\t\tpackets 1 bytes 60\n\t}\n\tchain np.eg.tcp.gone {\n\t\tcounter name "np.eg.tcp.gone" accept\n\t}\n\tmap egress4_ports {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t\tflags interval\n\t\telements = { 198.51.100.0/24 . tcp . 443 : jump np.eg.tcp.gone }\n\t}\n}\n`;
    expect((await exec(["nft", "-f", "-"], { stdin: seeded })).code).toBe(0);
    const seededValue = await counter("external_in");
    expect(seededValue).toEqual({ packets: 7, bytes: 700 });

    const next = rendered(allow("allow-x", "192.0.2.1/32", 443));
    const changed = await applyRuleset(next, { nft, table: "firewall" });
    expect(changed.changed).toBe(true);
    const after = await counter("external_in");
    expect(after).toEqual({ packets: 7, bytes: 700 });
    expect((await nft.counters("firewall")).has("np.eg.tcp.gone")).toBe(false);
    expect((await nft.inventory("firewall"))?.chains).not.toContain("np.eg.tcp.gone");
    // Only the fixed named counters are left; the policy counts in its element.
    expect([...(await nft.counters("firewall")).keys()].sort()).toEqual([...next.counters].sort());
    expect(await elementCounts(exec, next)).toEqual([{ map: "egress4_ports", comment: "accept traffic for np allow-x tcp", packets: 0, bytes: 0 }]);
  });

  test("a full replacement of an existing table carries each owner's count into its first element", async () => {
    const a = rendered(allow("allow-x", "192.0.2.0/24", 443, 8443), allow("gone", "198.51.100.0/24", 80), allow("stay", "203.0.113.0/24", 22));
    await applyRuleset(a, { nft, table: "firewall" });
    await seedElements(exec, a, {
      "192.0.2.0/24 . tcp . 443": { packets: 3, bytes: 300 },
      "192.0.2.0/24 . tcp . 8443": { packets: 4, bytes: 400 },
      "198.51.100.0/24 . tcp . 80": { packets: 5, bytes: 500 },
      "203.0.113.0/24 . tcp . 22": { packets: 6, bytes: 600 },
    });
    // allow-x changes (other addresses, one port fewer), gone goes, more comes, stay stays.
    const b = rendered(allow("allow-x", "192.0.2.0/25", 443), allow("more", "198.18.0.0/24", 80), allow("stay", "203.0.113.0/24", 22));
    const r = await applyRuleset(b, { nft, table: "firewall" });
    expect(r.mode).toBe("replaced");
    expect(await elementCounts(exec, b)).toEqual([
      { map: "egress4_ports", comment: "accept traffic for np allow-x tcp", packets: 7, bytes: 700 },
      { map: "egress4_ports", comment: "accept traffic for np more tcp", packets: 0, bytes: 0 },
      { map: "egress4_ports", comment: "accept traffic for np stay tcp", packets: 6, bytes: 600 },
    ]);
    // Carried only at the transaction: the same input applied again is unchanged, counts and all.
    const listed = await list("firewall");
    expect((await applyRuleset(b, { nft, table: "firewall" })).mode).toBe("unchanged");
    expect(await list("firewall")).toBe(listed);
  });

  test("a ruleset nft rejects leaves the previous one active and says why", async () => {
    const good = await applyRuleset(rendered(allow("allow-x", "198.51.100.1/32", 443)), { nft, table: "firewall" });
    const base = rendered(allow("allow-x", "198.51.100.2/32", 443));
    // The text, and the parts the applier rebuilds it from when it carries counts.
    const edit = (t: string) => t.replace("\tchain forward {", "\tchain forward {\n\t\tip daddr 2001:db8::1 accept");
    const bad: Ruleset = { ...base, text: edit(base.text), parts: { head: base.parts.head, tail: edit(base.parts.tail) } };
    const err = await applyRuleset(bad, { nft, table: "firewall" }).catch((e) => e);
    expect(err.code).toBe("nft_check_failed");
    expect(err.message).toContain("previous ruleset stays active");
    const text = await list("firewall");
    expect(text).toContain(`revision.${good.revision}`);
    expect(text).toContain("198.51.100.1");
    expect(text).not.toContain("198.51.100.2");
  });

  // The evidence for running no `nft -c` first: a batch is atomic whoever refuses it, nft's parser
  // (before anything is sent) or the kernel (in the middle of the batch it already received).
  test.each([
    ["nft's parser: a syntax error appended to an otherwise valid full replacement", "parser"],
    ["the kernel: an element jumping to a chain that does not exist (patch, then the full replacement)", "kernel"],
  ] as const)("a batch refused by %s leaves the previous ruleset exactly intact", async (_what, kind) => {
    await removeRuleset({ nft, table: "firewall" });
    const previous = rendered(allow("allow-x", "192.0.2.0/24", 443), allow("other", "203.0.113.0/24", 22));
    const good = await applyRuleset(previous, { nft, table: "firewall" });
    expect(good.changed).toBe(true);
    // Counts in the elements and in named counters, so that "intact" covers their values too.
    await seedElements(exec, previous, { "192.0.2.0/24 . tcp . 443": { packets: 3, bytes: 300 }, "203.0.113.0/24 . tcp . 22": { packets: 4, bytes: 400 } });
    await seedNamed(exec, ["external_in", "accept_established"]);
    const before = await list("firewall");
    expect(before).toContain(`revision.${good.revision}`);
    expect(before).toContain("counter packets 3 bytes 300");
    const generation = netlinkAvailable() ? openNetlink({ netns: ns }) : null;
    const genBefore = generation?.generation();

    const next = rendered(allow("allow-x", "192.0.2.0/24", 443), allow("other", "203.0.113.0/25", 22), allow("more", "198.18.0.0/24", 80));
    const refused: Ruleset =
      kind === "parser"
        ? // In the text, and in the parts the applier rebuilds it from when it carries counts (it does here).
          { ...next, text: `${next.text}${GARBAGE}\n`, parts: { head: next.parts.head, tail: `${next.parts.tail}\n${GARBAGE}` } }
        : // Same skeleton, so the applier patches first; both the patch and the replacement jump to `nowhere`.
          { ...next, verdict: "jump nowhere", text: next.text.replaceAll(": accept", ": jump nowhere") };
    const start = runs;
    const err = await applyRuleset(refused, { nft, table: "firewall", ...(kind === "kernel" ? { previous } : {}) }).catch((e) => e);
    expect(err.code).toBe("nft_check_failed");
    expect(err.message).toContain("previous ruleset stays active");
    expect(err.message).toContain(kind === "parser" ? "syntax error" : "No such file or directory");
    // Every attempt was sent (no check pass), and every one was refused whole.
    expect(runs - start).toBe(kind === "parser" ? 1 : 2);
    const after = await list("firewall");
    expect(after).toBe(before);
    expect(after).toContain(`revision.${good.revision}`);
    // Nothing was committed at all, not even in part: the kernel's generation did not move.
    if (generation) {
      expect(generation.generation()).toBe(genBefore as number);
      generation.close();
    }
    // And the previous ruleset is still recognised as ours, untouched.
    expect((await applyRuleset(previous, { nft, table: "firewall" })).mode).toBe("unchanged");
  });

  test("a rule added to our table by hand is found and removed by the next apply of the same input", async () => {
    const r = await applyRuleset(rendered(allow("allow-x", "198.51.100.7/32", 443)), { nft, table: "firewall" });
    const clean = await list("firewall");
    expect((await exec(["nft", "insert", "rule", "inet", "firewall", "forward", "accept"])).code).toBe(0);
    expect(await list("firewall")).not.toBe(clean);
    const again = await applyRuleset(rendered(allow("allow-x", "198.51.100.7/32", 443)), { nft, table: "firewall" });
    expect(again.mode).toBe("repaired");
    expect(again.revision).toBe(r.revision);
    const zero = (s: string) => s.replace(/fingerprint\.[0-9a-f]+/, "fingerprint.X");
    expect(zero(await list("firewall"))).toBe(zero(clean));
    expect((await applyRuleset(rendered(allow("allow-x", "198.51.100.7/32", 443)), { nft, table: "firewall" })).mode).toBe("unchanged");
  });

  test("the base table of the OS is never changed", async () => {
    const before = await list("metal");
    await applyRuleset(rendered(allow("allow-x", "203.0.113.1/32", 443)), { nft, table: "firewall" });
    await applyRuleset(rendered(allow("allow-x", "203.0.113.2/32", 443)), { nft, table: "firewall" });
    expect(await list("metal")).toBe(before);
    expect(await removeRuleset({ nft, table: "firewall" })).toBe(true);
    expect(await list("metal")).toBe(before);
    expect(await nft.inventory("firewall")).toBeNull();
    expect(await removeRuleset({ nft, table: "firewall" })).toBe(false);
  });

  test("the persisted file loads on its own, twice, as at boot", async () => {
    const r = await applyRuleset(rendered(allow("allow-x", "203.0.113.9/32", 443)), { nft, table: "firewall" });
    const boot = `fct-boot-${randomBytes(3).toString("hex")}`;
    await runCommand(["ip", "netns", "add", boot]);
    try {
      const inBoot = netnsExecutor(boot);
      expect((await inBoot(["nft", "-f", "-"], { stdin: r.persisted })).code).toBe(0);
      expect((await inBoot(["nft", "-f", "-"], { stdin: r.persisted })).code).toBe(0);
      const text = (await inBoot(["nft", "list", "table", "inet", "firewall"])).stdout;
      expect(text).toContain('203.0.113.9 . tcp . 443 counter packets 0 bytes 0 comment "accept traffic for np allow-x tcp" : accept');
      expect(text).toContain(`revision.${r.revision}`);
    } finally {
      await runCommand(["ip", "netns", "del", boot]);
    }
  });
});

const noNetlink = skip || !netlinkAvailable();
if (!skip && noNetlink) console.warn("SKIPPING: the generation tests need nf_tables netlink (lib/nft/netlink.ts: bun:ffi and glibc)");

describe.skipIf(noNetlink)("applying with the kernel's generation (netlink reader)", () => {
  const ns = `fct-gen-${randomBytes(3).toString("hex")}`;
  const inNs = netnsExecutor(ns);
  const calls: string[] = [];
  let runs = 0;
  let nl: NftNetlink;
  let nft: NftClient;

  beforeAll(async () => {
    expect((await runCommand(["ip", "netns", "add", ns])).code).toBe(0);
    nl = openNetlink({ netns: ns });
    const recording: Executor = (argv, o) => {
      calls.push(argv.join(" "));
      return inNs(argv, o);
    };
    const real = nftClient("nft", recording, nl);
    nft = { ...real, run: (s) => { runs++; return real.run(s); } };
  });
  afterAll(async () => {
    nl?.close();
    await runCommand(["ip", "netns", "del", ns]);
  });

  const INVENTORY = ["nft -j -t list chains inet", "nft -j -t list maps inet", "nft -j -t list sets inet"];
  const list = async () => (await inNs(["nft", "list", "table", "inet", "firewall"])).stdout;

  test("an unchanged re-apply lists nothing but the inventory and runs no transaction; any other transaction since makes it a repair", async () => {
    const a = rendered(allow("allow-x", "198.18.0.1/32", 443));
    const first = await applyRuleset(a, { nft, table: "firewall" });
    expect(first).toMatchObject({ changed: true, mode: "replaced", fingerprint: null, generation: nl.generation() });
    const text = await list();
    expect(text).toContain(`chain generation.${first.generation} {`);
    expect(text).not.toContain("fingerprint.");

    calls.length = 0;
    runs = 0;
    const again = await applyRuleset(a, { nft, table: "firewall" });
    expect(again).toMatchObject({ changed: false, mode: "unchanged", generation: first.generation });
    expect(calls.toSorted()).toEqual(INVENTORY);
    expect(runs).toBe(0);

    // Anyone's transaction, in any table, moves the generation: the table can no longer be proven untouched.
    expect((await inNs(["nft", "add", "table", "inet", "other"])).code).toBe(0);
    const repaired = await applyRuleset(a, { nft, table: "firewall" });
    expect(repaired).toMatchObject({ changed: true, mode: "repaired", generation: nl.generation() });
    expect(await list()).toBe(text.replace(`generation.${first.generation}`, `generation.${repaired.generation}`));

    calls.length = 0;
    runs = 0;
    expect(await applyRuleset(a, { nft, table: "firewall" })).toMatchObject({ changed: false, mode: "unchanged", generation: repaired.generation });
    expect(calls.toSorted()).toEqual(INVENTORY);
    expect(runs).toBe(0);
  });

  test("a hand edit after a proven state is never patched over on trust, nor vouched for: the next event's apply repairs it", async () => {
    const a = rendered(allow("allow-x", "198.18.0.1/32", 443));
    const b = rendered(allow("allow-x", "198.18.0.1/32", 443), allow("more", "198.18.0.2/32", 80));
    const first = await applyRuleset(a, { nft, table: "firewall" });
    expect(first.generation).toBe(nl.generation());
    // Someone opens everything in our table.
    expect((await inNs(["nft", "insert", "rule", "inet", "firewall", "forward", "accept"])).code).toBe(0);
    // An event: unverified, with the markers we left, and vouching for our own revision as the controller would.
    const r = await applyRuleset(b, { nft, table: "firewall", previous: a, previousFingerprint: first.fingerprint ?? null, previousGeneration: first.generation ?? null, verify: false, vouchedRevision: first.revision });
    expect(r.mode).toBe("repaired");
    const chain = (await inNs(["nft", "list", "chain", "inet", "firewall", "forward"])).stdout;
    expect(chain).not.toMatch(/^\t\taccept$/m);
    expect(r.generation).toBe(nl.generation());
  });

  test("a patch keeps the table proven: the next unchanged apply again lists only the inventory", async () => {
    const a = rendered(allow("allow-x", "198.18.0.1/32", 443));
    const b = rendered(allow("allow-x", "198.18.0.1/32", 443), allow("more", "198.18.0.2/32", 80));
    await applyRuleset(a, { nft, table: "firewall" });
    const p = await applyRuleset(b, { nft, table: "firewall", previous: a });
    expect(p).toMatchObject({ changed: true, mode: "patched", generation: nl.generation() });
    calls.length = 0;
    runs = 0;
    expect(await applyRuleset(b, { nft, table: "firewall", previous: b })).toMatchObject({ mode: "unchanged", generation: p.generation });
    expect(calls.toSorted()).toEqual(INVENTORY);
    expect(runs).toBe(0);
    // Knowing the generation it left, a verifying run of the same ruleset asks the kernel for nothing but the generation.
    calls.length = 0;
    expect(await applyRuleset(b, { nft, table: "firewall", previous: b, previousGeneration: p.generation ?? null })).toMatchObject({ mode: "unchanged", generation: p.generation });
    expect(calls).toEqual([]);
    expect(runs).toBe(0);
    // Once anyone committed anything, it looks again (and repairs).
    expect((await inNs(["nft", "add", "table", "inet", "another"])).code).toBe(0);
    expect(await applyRuleset(b, { nft, table: "firewall", previous: b, previousGeneration: p.generation ?? null })).toMatchObject({ mode: "repaired" });
  });

  test("a full replacement carries each owner's count read over netlink", async () => {
    const a = rendered(allow("allow-x", "192.0.2.0/24", 443, 8443));
    await applyRuleset(a, { nft, table: "firewall" });
    await seedElements(inNs, a, { "192.0.2.0/24 . tcp . 443": { packets: 3, bytes: 300 }, "192.0.2.0/24 . tcp . 8443": { packets: 4, bytes: 400 } });
    const b = rendered(allow("allow-x", "192.0.2.0/25", 443));
    calls.length = 0;
    // Seeding was a transaction of someone else's: not provable, so a replacement (and a repair of a's revision would be too).
    expect((await applyRuleset(b, { nft, table: "firewall" })).mode).toBe("replaced");
    expect(calls.filter((c) => c.includes("list map "))).toEqual([]);
    expect(await ownerSums(inNs, b)).toEqual(new Map([["accept traffic for np allow-x tcp", { packets: 7, bytes: 700 }]]));
  });
});
