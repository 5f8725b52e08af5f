import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { runCommand } from "../../lib/exec.ts";
import { applyRuleset, removeRuleset } from "../../lib/nft/apply.ts";
import { type NftClient, nftClient } from "../../lib/nft/client.ts";
import type { Ruleset } from "../../lib/ruleset/render.ts";
import { needs, netnsExecutor } from "../netns/topology.ts";

const skip = needs(["ip", "nft"]).skip;

const table = (extra: string, counters: string[] = ["external_in"]): Ruleset => {
  const text = `table inet firewall {\n${counters.map((c) => `\tcounter ${c} {\n\t}\n`).join("")}\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n${extra}\t}\n}\n`;
  return { text, counters, skeleton: text, chains: new Map(), elements: new Map() };
};

const BASE = `table inet metal {
\tcounter ssh {
\t}
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\ttcp dport 22 counter name "ssh" accept comment "SSH incoming connections"
\t}
}
`;

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
    const a = await applyRuleset(table(""), { nft, table: "firewall" });
    expect(a.changed).toBe(true);
    const afterFirst = runs;
    expect(afterFirst).toBeGreaterThan(before);
    const b = await applyRuleset(table(""), { nft, table: "firewall" });
    expect(b.changed).toBe(false);
    expect(b.mode).toBe("unchanged");
    expect(runs).toBe(afterFirst);
    expect(await list("firewall")).toContain(`revision.${a.revision}`);
  });

  test("named counters keep their values across a change; unwanted ones are deleted", async () => {
    // Seed values as traffic would have left them: recreate the table with counters that already counted.
    const seeded = `delete table inet firewall\ntable inet firewall {\n\tcounter external_in {\n\t\tpackets 7 bytes 700\n\t}\n\tcounter np.eg.tcp.gone {\n\t\tpackets 1 bytes 60\n\t}\n\tchain np.eg.tcp.gone {\n\t\tcounter name "np.eg.tcp.gone" accept\n\t}\n}\n`;
    expect((await exec(["nft", "-f", "-"], { stdin: seeded })).code).toBe(0);
    const seededValue = await counter("external_in");
    expect(seededValue).toEqual({ packets: 7, bytes: 700 });

    const changed = await applyRuleset(table("\t\tip daddr 192.0.2.1 accept\n"), { nft, table: "firewall" });
    expect(changed.changed).toBe(true);
    const after = await counter("external_in");
    expect(after).toEqual({ packets: 7, bytes: 700 });
    expect((await nft.counters("firewall")).has("np.eg.tcp.gone")).toBe(false);
    expect((await nft.inventory("firewall"))?.chains).not.toContain("np.eg.tcp.gone");
  });

  test("a ruleset nft rejects leaves the previous one active and says why", async () => {
    const good = await applyRuleset(table("\t\tip daddr 198.51.100.1 accept\n"), { nft, table: "firewall" });
    const bad: Ruleset = table("\t\tip daddr 2001:db8::1 accept\n");
    const err = await applyRuleset(bad, { nft, table: "firewall" }).catch((e) => e);
    expect(err.code).toBe("nft_check_failed");
    expect(err.message).toContain("previous ruleset stays active");
    const text = await list("firewall");
    expect(text).toContain(`revision.${good.revision}`);
    expect(text).toContain("198.51.100.1");
  });

  test("a rule added to our table by hand is found and removed by the next apply of the same input", async () => {
    const r = await applyRuleset(table("\t\tip daddr 198.51.100.7 accept\n"), { nft, table: "firewall" });
    const clean = await list("firewall");
    expect((await exec(["nft", "insert", "rule", "inet", "firewall", "forward", "accept"])).code).toBe(0);
    expect(await list("firewall")).not.toBe(clean);
    const again = await applyRuleset(table("\t\tip daddr 198.51.100.7 accept\n"), { nft, table: "firewall" });
    expect(again.mode).toBe("repaired");
    expect(again.revision).toBe(r.revision);
    const zero = (s: string) => s.replace(/fingerprint\.[0-9a-f]+/, "fingerprint.X");
    expect(zero(await list("firewall"))).toBe(zero(clean));
    expect((await applyRuleset(table("\t\tip daddr 198.51.100.7 accept\n"), { nft, table: "firewall" })).mode).toBe("unchanged");
  });

  test("the base table of the OS is never changed", async () => {
    const before = await list("metal");
    await applyRuleset(table("\t\tip daddr 203.0.113.1 accept\n"), { nft, table: "firewall" });
    await applyRuleset(table("\t\tip daddr 203.0.113.2 accept\n"), { nft, table: "firewall" });
    expect(await list("metal")).toBe(before);
    expect(await removeRuleset({ nft, table: "firewall" })).toBe(true);
    expect(await list("metal")).toBe(before);
    expect(await nft.inventory("firewall")).toBeNull();
    expect(await removeRuleset({ nft, table: "firewall" })).toBe(false);
  });

  test("the persisted file loads on its own, twice, as at boot", async () => {
    const r = await applyRuleset(table("\t\tip daddr 203.0.113.9 accept\n"), { nft, table: "firewall" });
    const boot = `fct-boot-${randomBytes(3).toString("hex")}`;
    await runCommand(["ip", "netns", "add", boot]);
    try {
      const inBoot = netnsExecutor(boot);
      expect((await inBoot(["nft", "-f", "-"], { stdin: r.persisted })).code).toBe(0);
      expect((await inBoot(["nft", "-f", "-"], { stdin: r.persisted })).code).toBe(0);
      const text = (await inBoot(["nft", "list", "table", "inet", "firewall"])).stdout;
      expect(text).toContain("203.0.113.9");
      expect(text).toContain(`revision.${r.revision}`);
    } finally {
      await runCommand(["ip", "netns", "del", boot]);
    }
  });
});
