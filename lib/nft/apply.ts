/**
 * Applies a rendered table atomically and idempotently (SPEC §4.7).
 *
 * The script replaces everything in `table inet firewall` except the named
 * counters, in one transaction: existing chains, sets and maps are deleted and
 * re-declared, counters that are still wanted are kept as they are (so the
 * accounting counters survive every change exactly), and the per-policy counts,
 * which live in the map elements, are read just before and carried into each
 * owner's first new element. A marker chain `revision.<hash>` records which
 * rendering is active, so an unchanged input applies nothing, also after a
 * restart; a marker `generation.<id>` proves, without listing anything, that
 * nobody changed the kernel's rules since (see {@link GENERATION_PREFIX}).
 * Where the generation cannot be read, a marker `fingerprint.<hash>` records a
 * hash of the listed table instead.
 *
 * When the caller still knows the ruleset it applied last (`previous`) and the
 * kernel still runs it, a change that leaves the skeleton (sets, map types,
 * the elements' verdict) alone is applied as a patch: only the map elements
 * that differ are added or deleted, with their owners' counts carried. The cost
 * of a change is then the size of the change, not of the table. A patch of
 * elements alone goes in as one netlink batch where the client can write one
 * (lib/nft/element-batch.ts: nft would first list every interval map); one that
 * adds or drops layer maps or rewrites the forward chain goes through nft. A
 * refused patch falls back to the full replacement. A table that is not there
 * yet is loaded the same way: nft declares it with empty maps, one batch fills
 * them.
 *
 * @example
 * ```ts
 * import { parseCidr } from "../api/address.ts";
 * import { runCommand } from "../exec.ts";
 * import { renderRuleset } from "../ruleset/render.ts";
 * import { nftClient } from "./client.ts";
 * import { applyRuleset } from "./apply.ts";
 * const cluster = parseCidr("10.0.0.0/8");
 * if (cluster.ok) {
 *   const ruleset = renderRuleset({ policies: [], services: [], clusterPrefixes: [cluster.value], internalPrefixes: [], privateVrf: 42 });
 *   const result = await applyRuleset(ruleset, { nft: nftClient("nft", runCommand), table: "firewall" });
 *   console.log(result.mode);
 * }
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import { FirewallError } from "../errors.ts";
import { elementText, emptyMapsText, type Ruleset, tableText } from "../ruleset/render.ts";
import { ownerCounts, sumByComment } from "../stats/model-snapshot.ts";
import type { NftClient, TableInventory } from "./client.ts";
import type { AddedElement } from "./element-batch.ts";

export interface ApplyResult {
  /** False when the kernel already had this exact rendering. */
  readonly changed: boolean;
  readonly revision: string;
  /** The text persisted for the OS to load at boot (standalone, idempotent). */
  readonly persisted: string;
  /**
   * How it was applied. `repaired`: the revision was running but could no longer be proven
   * untouched (edited by someone else, or, where only the generation proves it, any transaction of
   * anyone since); `replaced` also covers a table left unverified by patches.
   */
  readonly mode: "unchanged" | "replaced" | "patched" | "repaired";
  /** The fingerprint marker chain's hash now in the kernel, null when none; undefined when not known. */
  readonly fingerprint?: string | null;
  /** The generation marker now in the kernel (see {@link GENERATION_PREFIX}), null when none; undefined when not known. */
  readonly generation?: number | null;
}

export const REVISION_PREFIX = "revision.";
export const FINGERPRINT_PREFIX = "fingerprint.";
/**
 * Marker chain `generation.<id>`: the nf_tables ruleset generation our transaction produced
 * (the generation before it, plus one). While the kernel's generation still equals it, no
 * transaction of anyone has run since, in any table: the table is exactly what we applied,
 * proven without listing it. (Had someone committed between our reading and our commit, ours
 * got a later generation and the marker never matches.) Never persisted: a reboot restarts
 * the count.
 */
export const GENERATION_PREFIX = "generation.";

type Counts = ReadonlyMap<string, { packets: number; bytes: number }>;

/** Chains of policies and services of earlier versions (each with a counter of its name): deleted on the first replacement. */
const COUNTED_CHAIN = /^(np|svc)\./;

/** The last texts hashed: an apply asks for the revision of the same (multi-MB) texts several times. */
const recentRevisions: { text: string; revision: string }[] = [];

export function revisionOf(text: string): string {
  // The same string object compares by identity at once; another of equal length by content.
  for (const r of recentRevisions) if (r.text === text) return r.revision;
  const revision = createHash("sha256").update(text).digest("hex").slice(0, 16);
  recentRevisions.unshift({ text, revision });
  if (recentRevisions.length > 2) recentRevisions.pop();
  return revision;
}

/** The table text with its revision marker chain. */
function withMarker(text: string, table: string, revision: string): string {
  return `${text}table inet ${table} {\n\tchain ${REVISION_PREFIX}${revision} {\n\t}\n}\n`;
}

/** The first line of every ruleset file we write: how a file of ours is told from someone else's. */
export const PERSISTED_HEADER = "# written by firewall-controller; load with nft -f\n";

/** A file `nft -f` can load on its own at boot: create-if-missing, delete, declare. */
export const persistedForm = (marked: string, table: string): string =>
  `${PERSISTED_HEADER}table inet ${table}\ndelete table inet ${table}\n${marked}`;

/** The transaction that turns the inventory into the marked table, keeping wanted counters (per-owner counts: see {@link tableText}). */
export function replacementScript(inv: TableInventory | null, ruleset: Ruleset, table: string, marked: string): string {
  // add + flush also covers a table that exists but holds nothing nft listed (only counters, say).
  if (inv === null) return `add table inet ${table}\nflush table inet ${table}\n${marked}`;
  const wanted = new Set(ruleset.counters);
  const lines = [`add table inet ${table}`, `flush table inet ${table}`];
  // Maps hold jumps to chains; they go first so that the chains are free to delete.
  for (const m of inv.maps) lines.push(`delete map inet ${table} ${m}`);
  for (const s of inv.sets) lines.push(`delete set inet ${table} ${s}`);
  for (const c of inv.chains) lines.push(`delete chain inet ${table} ${c}`);
  // Every per-policy or per-service counter was created with a chain of its name: the chains say which exist.
  // (Listing the counters themselves costs a full cache fill in nft, seconds at 10,000 policies.)
  for (const c of inv.chains) if (COUNTED_CHAIN.test(c) && !wanted.has(c)) lines.push(`delete counter inet ${table} ${c}`);
  return `${lines.join("\n")}\n${marked}`;
}

/**
 * Owners (by name) that stay but lose map elements in the change from `previous` to `next`,
 * and the maps that hold their elements now: their counts live in those elements and must be
 * read before the patch and carried (see {@link patchScript}).
 */
export function carriedOwners(previous: Ruleset, next: Ruleset): { owners: Set<string>; maps: Set<string> } {
  const owners = losingOwners(previous, next);
  const maps = new Set<string>();
  if (owners.size > 0) for (const [map, old] of previous.elements) for (const owner of old.values()) if (owners.has(owner)) maps.add(map);
  return { owners, maps };
}

/** The owners of {@link carriedOwners}: from the renderer's delta alone when it has one (it is exact), else by comparing the maps. */
function losingOwners(previous: Ruleset, next: Ruleset): Set<string> {
  // An owner stays when its name stays with the same comment (the comment is what the kernel keeps).
  const staying = (owner: string) => next.owners.get(owner) === previous.owners.get(owner) && next.owners.has(owner);
  const owners = new Set<string>();
  const delta = next.delta?.from.deref() === previous ? next.delta : undefined;
  if (delta) {
    for (const [map, d] of delta.maps) for (const [key, owner] of d.removed) if (staying(owner) && next.elements.get(map)?.get(key) !== owner) owners.add(owner);
    return owners;
  }
  for (const [map, old] of previous.elements) {
    const now = next.elements.get(map);
    if (now === old) continue; // handed on unchanged by the incremental renderer
    for (const [key, owner] of old) if (staying(owner) && now?.get(key) !== owner) owners.add(owner);
  }
  return owners;
}

/**
 * Where the counts of `owners` ({@link carriedOwners}) go when elements can be read by key: only
 * their lost elements' counts are read and carried, onto the owner's first new element; an owner
 * that gains none has one of its kept elements (its `keeper`) re-added with its own count plus the
 * lost ones. Its other elements stay untouched in the kernel — deleting an element from a big
 * concatenated map costs milliseconds per thousand elements before it (the kernel walks to it),
 * so re-adding all of an edited policy's elements made an edit at 1,000 policies ~35 ms.
 * `reads`: the keys to read, per map.
 */
export function carryReads(previous: Ruleset, next: Ruleset, owners: ReadonlySet<string>): { reads: Map<string, string[]>; keepers: Map<string, { map: string; key: string }> } {
  const reads = new Map<string, string[]>();
  const keepers = new Map<string, { map: string; key: string }>();
  if (owners.size === 0) return { reads, keepers };
  const read = (map: string, key: string) => {
    const keys = reads.get(map);
    if (keys) keys.push(key);
    else reads.set(map, [key]);
  };
  const gaining = new Set<string>();
  const delta = next.delta?.from.deref() === previous ? next.delta : undefined;
  if (delta) {
    for (const [map, d] of delta.maps) {
      for (const [key, owner] of d.removed) if (owners.has(owner) && next.elements.get(map)?.get(key) !== owner) read(map, key);
      for (const [key, owner] of d.added) if (owners.has(owner) && previous.elements.get(map)?.get(key) !== owner) gaining.add(owner);
    }
  } else {
    for (const [map, old] of previous.elements) {
      const now = next.elements.get(map);
      for (const [key, owner] of old) if (owners.has(owner) && now?.get(key) !== owner) read(map, key);
    }
    for (const [map, now] of next.elements) {
      const old = previous.elements.get(map);
      for (const [key, owner] of now) if (owners.has(owner) && old?.get(key) !== owner) gaining.add(owner);
    }
  }
  // Owners that gain nothing: the first of their kept elements, in the maps' order, takes the count.
  const needing = new Set([...owners].filter((o) => !gaining.has(o)));
  if (needing.size > 0) {
    for (const map of next.maps.keys()) {
      const old = previous.elements.get(map);
      if (!old) continue;
      for (const [key, owner] of next.elements.get(map) ?? []) {
        if (!needing.has(owner) || old.get(key) !== owner) continue;
        keepers.set(owner, { map, key });
        read(map, key);
        needing.delete(owner);
      }
      if (needing.size === 0) break;
    }
  }
  return { reads, keepers };
}

/**
 * What a patch from `previous` to `next` changes, in the order it is applied: new layer maps,
 * then per map the element deletions and additions, the forward chain's rules when its lookups
 * changed (null: unchanged), maps nothing refers to any more.
 */
export interface PatchPlan {
  readonly newMaps: readonly (readonly [name: string, type: string])[];
  readonly elements: readonly { readonly map: string; readonly type: string; readonly removed: readonly string[]; readonly added: readonly AddedElement[] }[];
  readonly forwardRules: readonly string[] | null;
  readonly droppedMaps: readonly string[];
}

/**
 * The plan of the transaction that turns `previous` (running, same skeleton) into `next`, so that
 * a policy's count survives its own change and any re-split by an overlapping one. Without
 * `keepers`, every element of an owner in `carried` (by name) is re-added, its first one starting
 * at the owner's count (read just before, for clients that cannot read elements by key). With
 * them ({@link carryReads}), `carried` holds the counts of an owner's lost elements (and its
 * keeper's): its first new element starts at that count, or else its keeper is re-added with it.
 */
export function patchPlan(previous: Ruleset, next: Ruleset, carried: Counts = new Map(), keepers?: ReadonlyMap<string, { readonly map: string; readonly key: string }>): PatchPlan {
  // Layer maps above 0 come and go with the overlaps (render.ts): new ones first, so elements can go in.
  const newMaps = [...next.maps].filter(([map]) => !previous.elements.has(map));
  const elements: { map: string; type: string; removed: string[]; added: AddedElement[] }[] = [];
  const pending = new Map(carried);
  const added = (key: string, owner: string): AddedElement => {
    const comment = next.owners.get(owner) as string;
    const c = pending.get(owner);
    if (c) pending.delete(owner);
    return c && (c.packets > 0 || c.bytes > 0) ? { key, comment, counter: c } : { key, comment };
  };
  const delta = next.delta?.from.deref() === previous ? next.delta : undefined;
  if (delta) {
    // The renderer's delta: exactly the elements that changed, without diffing whole maps; owners
    // whose counts are carried have all their elements re-added (found by one pass over each side).
    const changes = new Map<string, { removed: string[]; added: (readonly [string, string])[] }>();
    for (const [map, d] of delta.maps) {
      if (!next.elements.has(map)) continue; // a layer map that is gone: deleted whole below
      changes.set(map, { removed: previous.elements.has(map) ? d.removed.map(([key]) => key) : [], added: [...d.added] });
    }
    if (carried.size > 0 && keepers === undefined) {
      for (const [map, old] of previous.elements) {
        if (!next.elements.has(map)) continue;
        let c = changes.get(map);
        let listed: Set<string> | undefined;
        for (const [key, owner] of old) {
          if (!carried.has(owner)) continue;
          if (!c) changes.set(map, (c = { removed: [], added: [] }));
          listed ??= new Set(c.removed);
          if (!listed.has(key)) c.removed.push(key);
        }
      }
      for (const [map, now] of next.elements) {
        let c = changes.get(map);
        let listed: Set<string> | undefined;
        for (const [key, owner] of now) {
          if (!carried.has(owner)) continue;
          if (!c) changes.set(map, (c = { removed: [], added: [] }));
          listed ??= new Set(c.added.map(([k]) => k));
          if (!listed.has(key)) c.added.push([key, owner]);
        }
      }
    }
    for (const [owner, k] of keepers ?? []) {
      if (!carried.has(owner)) continue;
      let c = changes.get(k.map);
      if (!c) changes.set(k.map, (c = { removed: [], added: [] }));
      c.removed.push(k.key);
      c.added.push([k.key, owner]);
    }
    // In the maps' order, so that the carried count lands on the same element as without the delta.
    for (const map of next.maps.keys()) {
      const c = changes.get(map);
      if (!c || c.removed.length + c.added.length === 0) continue;
      elements.push({ map, type: next.maps.get(map) as string, removed: c.removed, added: c.added.map(([key, owner]) => added(key, owner)) });
    }
  }
  for (const [map, now] of delta ? [] : next.elements) {
    const old = previous.elements.get(map) ?? new Map<string, string>();
    if (old === now && (carried.size === 0 || (keepers !== undefined && ![...keepers.values()].some((k) => k.map === map)))) continue; // handed on unchanged by the incremental renderer
    // An owner whose comment changed (a name shortened differently) is a different owner.
    const same = (key: string, owner: string | undefined, other: ReadonlyMap<string, string>, rs: Ruleset) =>
      owner !== undefined && other.get(key) === owner && next.owners.get(owner) === previous.owners.get(owner) && rs.owners.has(owner);
    // Re-added although unchanged: every element of a carried owner (without keepers), or its keeper.
    const again = (key: string, owner: string) => keepers === undefined ? carried.has(owner) : carried.has(owner) && keepers.get(owner)?.map === map && keepers.get(owner)?.key === key;
    const removed = [...old].filter(([key, owner]) => !same(key, owner, now, next) || again(key, owner)).map(([key]) => key);
    const adds = [...now].filter(([key, owner]) => !same(key, owner, old, previous) || again(key, owner)).map(([key, owner]) => added(key, owner));
    if (removed.length + adds.length > 0) elements.push({ map, type: next.maps.get(map) as string, removed, added: adds });
  }
  // The forward chain's lookups follow the layers; its counters are all named, so rewriting it resets nothing.
  const forwardRules = next.forwardRules.join("\n") !== previous.forwardRules.join("\n") ? next.forwardRules : null;
  const droppedMaps = [...previous.elements.keys()].filter((map) => !next.elements.has(map));
  return { newMaps, elements, forwardRules, droppedMaps };
}

/** Whether a plan changes map elements only (no map comes or goes, the forward rules stay): then it can go in over netlink. */
export const elementsOnly = (plan: PatchPlan): boolean => plan.newMaps.length === 0 && plan.droppedMaps.length === 0 && plan.forwardRules === null;

/**
 * The transaction that turns `previous` (running, same skeleton) into `next` as nft reads it
 * ({@link patchPlan}), then the marker: the previous revision's deleted, the next one's added.
 */
export function patchScript(previous: Ruleset, next: Ruleset, table: string, revisions: { from: string; to: string }, carried: Counts = new Map()): string {
  return planScript(patchPlan(previous, next, carried), next.verdict, table, revisions);
}

function planScript(plan: PatchPlan, verdict: string, table: string, revisions: { from: string; to: string }): string {
  const t = `inet ${table}`;
  const lines: string[] = [];
  for (const [map, type] of plan.newMaps) lines.push(`add map ${t} ${map} { type ${type} : verdict; flags interval; counter; }`);
  for (const e of plan.elements) {
    if (e.removed.length > 0) lines.push(`delete element ${t} ${e.map} { ${e.removed.join(", ")} }`);
    if (e.added.length > 0) lines.push(`add element ${t} ${e.map} { ${e.added.map((x) => elementText(x.key, x.comment, verdict, x.counter)).join(", ")} }`);
  }
  if (plan.forwardRules) lines.push(`flush chain ${t} forward`, ...plan.forwardRules.map((r) => `add rule ${t} forward ${r}`));
  for (const map of plan.droppedMaps) lines.push(`delete map ${t} ${map}`);
  lines.push(`delete chain ${t} ${REVISION_PREFIX}${revisions.from}`, `add chain ${t} ${REVISION_PREFIX}${revisions.to}`);
  return `${lines.join("\n")}\n`;
}

/** The counts (summed by comment) of the elements `reads` names, per map, as `previous` has them, read by key. */
async function countsByKey(nft: NftClient, table: string, previous: Ruleset, reads: ReadonlyMap<string, readonly string[]>): Promise<Map<string, { packets: number; bytes: number }>> {
  const out = new Map<string, { packets: number; bytes: number }>();
  const byKey = nft.elementCountersByKey as NonNullable<NftClient["elementCountersByKey"]>;
  for (const [map, keys] of reads) sumByComment(await byKey(table, map, previous.maps.get(map) as string, keys), out);
  return out;
}

/**
 * Runs a transaction. No separate `nft -c` pass first: a batch is atomic, so a batch nft or the
 * kernel refuses changes nothing (test/nft/apply.test.ts proves it for both kinds of refusal), and
 * the check cost as much as the load itself.
 */
async function run(nft: NftClient, script: string): Promise<void> {
  const r = await nft.run(script);
  if (r.code !== 0) {
    throw new FirewallError("nft_check_failed", `nft refused the rendered ruleset; the transaction is atomic, so nothing of it was applied and the previous ruleset stays active: ${r.stderr.trim().slice(0, 2000)}`);
  }
}

/**
 * Loads a table that is not there yet in two transactions: `nft` declares it with every map empty,
 * then one netlink batch adds the maps' elements with the revision and generation markers, pinned
 * to the generation the first left (so it lands only on exactly that table). nft's parser never
 * sees the elements, a third of a cold load at 10,000 policies. In between, the table passes less
 * than it will (its maps are empty) and more than nothing only where no table stood before: it
 * never opens more than the ruleset. The generation it returns is the one of its marker; null when
 * the batch did not apply (the caller replaces the table then, which is there now).
 */
async function loadCold(nft: NftClient, ruleset: Ruleset, table: string, revision: string): Promise<number | null> {
  await run(nft, `add table inet ${table}\nflush table inet ${table}\n${emptyMapsText(ruleset)}`);
  const generation = (await (nft.generation as () => Promise<number>)());
  const maps = [...ruleset.maps.keys()].map((name) => ({
    name,
    type: ruleset.maps.get(name) as string,
    added: [...(ruleset.elements.get(name) ?? [])].map(([key, owner]) => ({ key, comment: ruleset.owners.get(owner) as string })),
  }));
  try {
    await (nft.applyElements as NonNullable<NftClient["applyElements"]>)({ table, generation, verdict: ruleset.verdict, maps, chains: [`${REVISION_PREFIX}${revision}`, `${GENERATION_PREFIX}${generation + 1}`] });
    return generation + 1;
  } catch {
    return null;
  }
}

/** Records the kernel's fingerprint of our table in a marker chain (its own small transaction). */
async function stampFingerprint(nft: NftClient, table: string, old: readonly string[]): Promise<string> {
  const fp = await nft.fingerprint(table, FINGERPRINT_PREFIX);
  const lines = old.map((c) => `delete chain inet ${table} ${c}`);
  lines.push(`add chain inet ${table} ${FINGERPRINT_PREFIX}${fp}`);
  const r = await nft.run(`${lines.join("\n")}\n`);
  if (r.code !== 0) throw new FirewallError("nft_apply_failed", `recording the ruleset fingerprint failed: ${r.stderr.trim()}`);
  return fp;
}

/**
 * Applies the ruleset unless the kernel already runs this exact revision, untouched; patches
 * instead of replacing when `previous` allows it.
 *
 * Untouched is proven, cheapest first: by the generation marker (the kernel's generation still
 * the one our last transaction produced: no listing at all), by a fingerprint marker (a full
 * listing; only where the client cannot read the generation), or by the caller vouching for its
 * own unverified patch. `verify: false` trusts the revision marker alone. With `verify: false`
 * and the markers the previous apply left (`previousFingerprint`, `previousGeneration`, from its
 * result), not even the names are listed: the patch transaction itself deletes the previous
 * revision and markers, so it applies only onto exactly that state (else it falls back).
 */
export async function applyRuleset(
  ruleset: Ruleset,
  deps: {
    nft: NftClient;
    table: string;
    previous?: Ruleset;
    previousFingerprint?: string | null;
    previousGeneration?: number | null;
    verify?: boolean;
    /**
     * A revision the caller itself applied with an unverified patch, with no fingerprint since: a
     * verifying run that finds it unfingerprinted stamps it instead of replacing the table. The
     * trust spans the time from that patch to this run (the controller's next tick).
     */
    vouchedRevision?: string;
  },
): Promise<ApplyResult> {
  const { nft, table, previous } = deps;
  const revision = revisionOf(ruleset.text);
  const marked = withMarker(ruleset.text, table, revision);
  const persisted = persistedForm(marked, table);
  const sameSkeleton = previous !== undefined && previous.skeleton === ruleset.skeleton;
  const patch = async (from: string, generation: { old: readonly string[]; proven: number | null }, dropFingerprints: readonly string[]): Promise<void> => {
    const prev = previous as Ruleset;
    // By key: only the lost elements' counts (and a keeper's) are read and moved; else every
    // element of the owners, read with the maps that hold them.
    const byKey = nft.elementCountersByKey !== undefined;
    const { owners, maps } = byKey ? { owners: losingOwners(prev, ruleset), maps: undefined } : carriedOwners(prev, ruleset);
    const carry = byKey && owners.size > 0 ? carryReads(prev, ruleset, owners) : undefined;
    // Read just before the transaction: what the replaced elements count in between is lost.
    const counts = owners.size === 0 ? new Map<string, { packets: number; bytes: number }>() : carry ? await countsByKey(nft, table, prev, carry.reads) : await ownerCounts(nft, table, [...(maps ?? [])]);
    const carried = new Map<string, { packets: number; bytes: number }>();
    for (const owner of owners) {
      const c = counts.get(prev.owners.get(owner) as string);
      if (c) carried.set(owner, c);
    }
    const plan = patchPlan(prev, ruleset, carried, carry?.keepers);
    // Element changes and markers alone go over netlink (nft would first list every interval map's
    // elements: ~100 ms at 10,000 policies for a deletion); new or gone maps and forward rules by nft.
    if (nft.applyElements && elementsOnly(plan)) {
      await nft.applyElements({
        table,
        verdict: ruleset.verdict,
        // Proven: onto exactly that generation, else the kernel refuses it.
        ...(generation.proven !== null ? { generation: generation.proven } : {}),
        maps: plan.elements.map((e) => ({ name: e.map, type: e.type, removed: e.removed, added: e.added, wasEmpty: (prev.elements.get(e.map)?.size ?? 0) === 0 })),
        // The previous revision's marker must be there to be deleted: the batch applies onto that table only.
        deleteChains: [`${REVISION_PREFIX}${from}`, ...generation.old, ...dropFingerprints],
        chains: [`${REVISION_PREFIX}${revision}`, ...(generation.proven !== null ? [`${GENERATION_PREFIX}${generation.proven + 1}`] : [])],
      });
      return;
    }
    const lines = [...generation.old, ...dropFingerprints].map((c) => `delete chain inet ${table} ${c}\n`);
    if (generation.proven !== null) lines.push(`add chain inet ${table} ${GENERATION_PREFIX}${generation.proven + 1}\n`);
    await run(nft, `${planScript(plan, ruleset.verdict, table, { from, to: revision })}${lines.join("")}`);
  };

  if (deps.verify === false && previous && sameSkeleton && deps.previousFingerprint !== undefined) {
    const from = revisionOf(previous.text);
    const prevGen = deps.previousGeneration ?? null;
    if (from === revision) return { changed: false, revision, persisted, mode: "unchanged", fingerprint: deps.previousFingerprint, generation: prevGen };
    // Nobody committed anything since our last transaction: the patched table is proven as well.
    // Someone did (the generation moved on): then it is not the state we left, and nothing is
    // patched on trust — the careful path below looks first.
    const now = prevGen !== null && nft.generation ? await nft.generation() : null;
    if (prevGen === null || now === null || now === prevGen) {
      try {
        const proven = now !== null && now === prevGen ? now : null;
        await patch(from, { old: prevGen === null ? [] : [`${GENERATION_PREFIX}${prevGen}`], proven }, deps.previousFingerprint ? [`${FINGERPRINT_PREFIX}${deps.previousFingerprint}`] : []);
        return { changed: true, revision, persisted, mode: "patched", fingerprint: null, generation: proven === null ? null : proven + 1 };
      } catch {
        // Not the state we left (or nft refused): the careful path below looks first.
      }
    }
  }
  // Verifying the very state we left: the generation alone proves it, without listing anything.
  if (previous && deps.previousGeneration !== undefined && deps.previousGeneration !== null && nft.generation && revisionOf(previous.text) === revision) {
    if ((await nft.generation()) === deps.previousGeneration) {
      return { changed: false, revision, persisted, mode: "unchanged", fingerprint: deps.previousFingerprint ?? null, generation: deps.previousGeneration };
    }
  }
  const inv = await nft.inventory(table);
  const chains = inv?.chains ?? [];
  const fingerprints = chains.filter((c) => c.startsWith(FINGERPRINT_PREFIX));
  const generations = chains.filter((c) => c.startsWith(GENERATION_PREFIX));
  const kernelGeneration = nft.generation ? await nft.generation() : null;
  const proven = kernelGeneration !== null && generations.length === 1 && generations[0] === `${GENERATION_PREFIX}${kernelGeneration}`;
  // Is the table still exactly as we left it? Without the generation, asking costs a full listing.
  // A table without any marker that runs the revision the caller vouches for counts as untouched
  // (its own unproven patch removed them); a generation marker the kernel has moved past does not.
  // A generation marker the kernel has moved past is evidence: somebody committed since; nothing is trusted then.
  const moved = kernelGeneration !== null && generations.length > 0 && !proven;
  const untouched = async (running: string) =>
    !moved && (deps.verify === false ||
    proven ||
    (fingerprints.length === 0 && generations.length === 0 && deps.vouchedRevision === running) ||
    (kernelGeneration === null && fingerprints.length === 1 && fingerprints[0] === `${FINGERPRINT_PREFIX}${await nft.fingerprint(table, FINGERPRINT_PREFIX)}`));
  const markers = (): { fingerprint: string | null; generation: number | null } => ({
    fingerprint: fingerprints.length === 1 ? (fingerprints[0] as string).slice(FINGERPRINT_PREFIX.length) : null,
    generation: proven ? kernelGeneration : null,
  });
  // With the generation readable, fingerprints are not kept (they cost a listing each).
  const stamp = async (old: readonly string[]): Promise<string | null> => (deps.verify === false || nft.generation ? null : stampFingerprint(nft, table, old));
  /** Vouches for the table as it is now: a generation marker, or else a fingerprint. */
  const vouch = async (): Promise<{ fingerprint: string | null; generation: number | null }> => {
    if (!nft.generation) return { fingerprint: await stampFingerprint(nft, table, []), generation: null };
    const g = (await nft.generation()) + 1;
    await run(nft, `${generations.map((c) => `delete chain inet ${table} ${c}\n`).join("")}add chain inet ${table} ${GENERATION_PREFIX}${g}\n`);
    return { fingerprint: null, generation: g };
  };
  let drifted = false;
  if (chains.includes(`${REVISION_PREFIX}${revision}`)) {
    if (await untouched(revision)) {
      if (deps.verify === false || proven) return { changed: false, revision, persisted, mode: "unchanged", ...markers() };
      // Vouched for but not marked yet (our own unverified patch put it there): marked as it is.
      if (fingerprints.length === 0) return { changed: false, revision, persisted, mode: "unchanged", ...(await vouch()) };
      return { changed: false, revision, persisted, mode: "unchanged", ...markers() };
    }
    // No marker at all: unverified patches ran since the last check. That is not evidence of a
    // hand edit, but nothing vouches for the table either, so it is replaced all the same.
    drifted = fingerprints.length + generations.length > 0;
  } else if (previous && sameSkeleton && chains.includes(`${REVISION_PREFIX}${revisionOf(previous.text)}`)) {
    if (await untouched(revisionOf(previous.text))) {
      try {
        const from = revisionOf(previous.text);
        if (deps.verify === false) {
          // No stamp: an old fingerprint must not vouch for the patched table.
          await patch(from, { old: generations, proven: null }, fingerprints);
          return { changed: true, revision, persisted, mode: "patched", fingerprint: null, generation: null };
        }
        await patch(from, { old: generations, proven: proven ? kernelGeneration : null }, nft.generation ? fingerprints : []);
        const fingerprint = await stamp(fingerprints);
        return { changed: true, revision, persisted, mode: "patched", fingerprint, generation: proven ? (kernelGeneration as number) + 1 : null };
      } catch {
        // nft refused the patch: the full replacement below starts from whatever is there.
      }
    } else drifted = fingerprints.length + generations.length > 0;
  }
  let fresh = await nft.inventory(table);
  if (fresh === null && nft.applyElements && nft.generation) {
    const generation = await loadCold(nft, ruleset, table, revision);
    if (generation !== null) return { changed: true, revision, persisted, mode: drifted ? "repaired" : "replaced", fingerprint: null, generation };
    fresh = await nft.inventory(table);
  }
  // Per-owner counts live in the map elements: carried into the new table (read just before).
  const carried = fresh && fresh.maps.length > 0 ? await ownerCounts(nft, table, fresh.maps) : undefined;
  const text = withMarker(tableText(ruleset, carried), table, revision);
  // A full replacement defines the whole table: its generation proves it, whoever ran before.
  const generation = nft.generation ? (await nft.generation()) + 1 : null;
  await run(nft, `${replacementScript(fresh, ruleset, table, text)}${generation === null ? "" : `add chain inet ${table} ${GENERATION_PREFIX}${generation}\n`}`);
  const fingerprint = await stamp([]);
  return { changed: true, revision, persisted, mode: drifted ? "repaired" : "replaced", fingerprint, generation };
}

/** Removes our table (Firewall object deleted); other tables are never touched. */
export async function removeRuleset(deps: { nft: NftClient; table: string }): Promise<boolean> {
  const inv = await deps.nft.inventory(deps.table);
  // Nothing listed: nothing of ours to remove (an empty table, if any, matches no packet).
  if (inv === null) return false;
  // "add" first: deleting a table that is not there would fail, and an empty one may still be there.
  const r = await deps.nft.run(`add table inet ${deps.table}\ndelete table inet ${deps.table}\n`);
  if (r.code !== 0) throw new FirewallError("nft_apply_failed", `deleting table inet ${deps.table} failed: ${r.stderr.trim()}`);
  return inv !== null;
}
