/**
 * Test helpers: which policies and services are in force in the kernel, and their counts. Since
 * an owner is no chain but the map elements carrying its comment, tests ask the maps.
 * @module
 */
import type { CommandResult } from "../lib/exec.ts";
import type { Ruleset } from "../lib/ruleset/render.ts";
import { policyComment, type ProtocolLabel } from "../lib/ruleset/names.ts";

type Exec = (argv: readonly string[]) => Promise<CommandResult>;

/** The comment of a policy owner named like `np.eg.tcp.<policy>` / `np.in.any.<policy>`. */
export function ownerComment(owner: string): string {
  const m = /^np\.(eg|in)\.(tcp|udp|sctp|any)\.(.+)$/.exec(owner);
  if (!m) throw new Error(`not a policy owner name: ${owner}`);
  return policyComment(m[1] === "eg" ? "egress" : "ingress", m[2] as ProtocolLabel, m[3] as string);
}

/** Element counts summed by comment over every map of `inet firewall` (empty when the table is missing). */
export async function ownerCounts(exec: Exec): Promise<Map<string, { packets: number; bytes: number }>> {
  const r = await exec(["nft", "-j", "list", "table", "inet", "firewall"]);
  const out = new Map<string, { packets: number; bytes: number }>();
  if (r.code !== 0) return out;
  const doc = JSON.parse(r.stdout) as { nftables: { map?: { elem?: unknown[] } }[] };
  for (const o of doc.nftables) {
    for (const e of o.map?.elem ?? []) {
      const key = Array.isArray(e) ? (e[0] as { elem?: { comment?: string; counter?: { packets: number; bytes: number } } }) : undefined;
      const c = key?.elem;
      if (!c?.comment) continue;
      const t = out.get(c.comment) ?? { packets: 0, bytes: 0 };
      out.set(c.comment, { packets: t.packets + (c.counter?.packets ?? 0), bytes: t.bytes + (c.counter?.bytes ?? 0) });
    }
  }
  return out;
}

/** Is the policy owner (`np.eg.tcp.<policy>`) in force: does any map element carry its comment? */
export async function hasOwner(exec: Exec, owner: string): Promise<boolean> {
  const r = await exec(["nft", "list", "table", "inet", "firewall"]);
  return r.code === 0 && r.stdout.includes(`comment "${ownerComment(owner)}"`);
}

/** The owner's count: the sum of its elements' counters (zero when it has none). */
export async function ownerCount(exec: Exec, owner: string): Promise<{ packets: number; bytes: number }> {
  return (await ownerCounts(exec)).get(ownerComment(owner)) ?? { packets: 0, bytes: 0 };
}

type Count = { packets: number; bytes: number };

/** Element counters of every map of `ruleset`, read with `nft -j list map`, in the order of the ruleset's maps and the kernel's. */
export async function elementCounts(exec: Exec, ruleset: Ruleset): Promise<{ map: string; comment: string | null; packets: number; bytes: number }[]> {
  const out: { map: string; comment: string | null; packets: number; bytes: number }[] = [];
  for (const map of ruleset.maps.keys()) {
    const r = await exec(["nft", "-j", "list", "map", "inet", "firewall", map]);
    if (r.code !== 0) continue;
    const doc = JSON.parse(r.stdout) as { nftables: { map?: { elem?: unknown[] } }[] };
    for (const e of doc.nftables.find((o) => o.map)?.map?.elem ?? []) {
      const key = (Array.isArray(e) ? e[0] : undefined) as { elem?: { comment?: string; counter?: Count } } | undefined;
      out.push({ map, comment: key?.elem?.comment ?? null, packets: key?.elem?.counter?.packets ?? 0, bytes: key?.elem?.counter?.bytes ?? 0 });
    }
  }
  return out;
}

/** Per-owner counts over `ruleset`'s maps: the element counters summed by the comment each element carries. */
export async function ownerSums(exec: Exec, ruleset: Ruleset): Promise<Map<string, Count>> {
  const out = new Map<string, Count>();
  for (const e of await elementCounts(exec, ruleset)) {
    if (e.comment === null) continue;
    const t = out.get(e.comment) ?? { packets: 0, bytes: 0 };
    out.set(e.comment, { packets: t.packets + e.packets, bytes: t.bytes + e.bytes });
  }
  return out;
}
