/**
 * Test helpers that give our table's counters values, as traffic would have: map elements by key,
 * named counters by one real packet each. Shared by the applier's real-kernel tests.
 * @module
 */
import { expect } from "bun:test";
import type { Executor } from "../../lib/exec.ts";
import { elementText, type Ruleset } from "../../lib/ruleset/render.ts";

export type Count = { packets: number; bytes: number };

/**
 * Gives elements of `ruleset` (by key) counts, as traffic would have: every element of the maps
 * concerned is deleted and re-added in the ruleset's order (so that the listing, and with it the
 * fingerprint, stays the same), the seeded ones with their counters.
 */
export async function seedElements(exec: Executor, ruleset: Ruleset, counts: Record<string, Count>): Promise<void> {
  const lines: string[] = [];
  for (const key of Object.keys(counts)) if (![...ruleset.elements.values()].some((els) => els.has(key))) throw new Error(`test setup: no element ${key}`);
  for (const [map, elements] of ruleset.elements) {
    if (![...elements.keys()].some((key) => key in counts)) continue;
    const texts = [...elements].map(([key, owner]) => elementText(key, ruleset.owners.get(owner) as string, ruleset.verdict, counts[key]));
    lines.push(`delete element inet firewall ${map} { ${[...elements.keys()].join(", ")} }`, `add element inet firewall ${map} { ${texts.join(", ")} }`);
  }
  expect(await exec(["nft", "-f", "-"], { stdin: `${lines.join("\n")}\n` })).toMatchObject({ code: 0, stderr: "" });
}

/** Moves named counters of our table by one real packet each, through a chain that is gone again afterwards. */
export async function seedNamed(exec: Executor, names: readonly string[]): Promise<void> {
  const rules = names.map((n) => `\t\tudp dport 9 counter name "${n}"\n`).join("");
  expect((await exec(["nft", "-f", "-"], { stdin: `table inet firewall {\n\tchain seed {\n\t\ttype filter hook output priority 0; policy accept;\n${rules}\t}\n}\n` })).code).toBe(0);
  await exec(["ip", "link", "set", "lo", "up"]);
  await exec([process.execPath, "-e", "const s=require('node:dgram').createSocket('udp4');s.send('x',9,'127.0.0.1',()=>s.close())"]);
  expect((await exec(["nft", "delete", "chain", "inet", "firewall", "seed"])).code).toBe(0);
}
