/**
 * Applies a rendered table atomically and idempotently (SPEC §4.7).
 *
 * The script replaces everything in `table inet firewall` except the named
 * counters, in one transaction: existing chains, sets and maps are deleted and
 * re-declared, counters that are still wanted are kept as they are (so
 * accounting and per-policy counters survive every change exactly), and
 * counters no longer wanted are deleted. A marker chain `revision.<hash>`
 * records which rendering is active, so an unchanged input applies nothing,
 * also after a restart. After every apply a second marker,
 * `fingerprint.<hash>`, records a hash of what the kernel then holds (rules,
 * set and map elements; not counter values); when the revision matches but the
 * kernel's hash no longer does, someone changed our table by hand, and the
 * full replacement repairs it.
 *
 * When the caller still knows the ruleset it applied last (`previous`) and the
 * kernel still runs it, a change that leaves the skeleton (sets, forward
 * chain, map types) alone is applied as a patch: only the per-policy chains
 * and map elements that differ are added or deleted. The cost of a change is
 * then the size of the change, not of the table. A patch nft refuses falls
 * back to the full replacement.
 *
 * @example
 * ```ts
 * import { runCommand } from "../exec.ts";
 * import { nftClient } from "./client.ts";
 * import { applyRuleset } from "./apply.ts";
 * const text = "table inet firewall {\n}\n";
 * const result = await applyRuleset(
 *   { text, counters: [], skeleton: text, chains: new Map(), elements: new Map() },
 *   { nft: nftClient("nft", runCommand), table: "firewall" },
 * );
 * console.log(result.changed);
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import { FirewallError } from "../errors.ts";
import { ownerRule, type Ruleset } from "../ruleset/render.ts";
import type { NftClient, TableInventory } from "./client.ts";

export interface ApplyResult {
  /** False when the kernel already had this exact rendering. */
  readonly changed: boolean;
  readonly revision: string;
  /** The text persisted for the OS to load at boot (standalone, idempotent). */
  readonly persisted: string;
  /**
   * How it was applied. `repaired`: the revision was running but the table no longer matched its
   * fingerprint (edited by someone else); `replaced` also covers a table left unverified by patches.
   */
  readonly mode: "unchanged" | "replaced" | "patched" | "repaired";
  /** The fingerprint marker chain's hash now in the kernel, null when none; undefined when not known. */
  readonly fingerprint?: string | null;
}

export const REVISION_PREFIX = "revision.";
export const FINGERPRINT_PREFIX = "fingerprint.";

const COUNTED_CHAIN = /^(np|svc)\./;

export const revisionOf = (text: string): string => createHash("sha256").update(text).digest("hex").slice(0, 16);

/** The table text with its revision marker chain. */
function withMarker(text: string, table: string, revision: string): string {
  return `${text}table inet ${table} {\n\tchain ${REVISION_PREFIX}${revision} {\n\t}\n}\n`;
}

/** The first line of every ruleset file we write: how a file of ours is told from someone else's. */
export const PERSISTED_HEADER = "# written by firewall-controller; load with nft -f\n";

/** A file `nft -f` can load on its own at boot: create-if-missing, delete, declare. */
export const persistedForm = (marked: string, table: string): string =>
  `${PERSISTED_HEADER}table inet ${table}\ndelete table inet ${table}\n${marked}`;

/** The transaction that turns the inventory into the marked table, keeping wanted counters. */
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
 * The transaction that turns `previous` (running, same skeleton) into `next`:
 * new chains and counters first, new layer maps, then element deletions and
 * additions, the forward chain's rules when its lookups changed, then maps and
 * chains nothing refers to any more, then the marker.
 */
export function patchScript(previous: Ruleset, next: Ruleset, table: string, revisions: { from: string; to: string }): string {
  const t = `inet ${table}`;
  const lines: string[] = [];
  for (const [chain, comment] of next.chains) {
    const before = previous.chains.get(chain);
    if (before === comment) continue;
    if (before === undefined) lines.push(`add counter ${t} ${chain}`, `add chain ${t} ${chain}`);
    else lines.push(`flush chain ${t} ${chain}`);
    lines.push(`add rule ${t} ${chain} ${ownerRule(chain, comment)}`);
  }
  // Layer maps above 0 come and go with the overlaps (render.ts): new ones first, so elements can go in.
  for (const [map, type] of next.maps ?? []) {
    if (!previous.elements.has(map)) lines.push(`add map ${t} ${map} { type ${type} : verdict; flags interval; }`);
  }
  for (const [map, elements] of next.elements) {
    const old = previous.elements.get(map) ?? new Map<string, string>();
    const removed = [...old].filter(([key, chain]) => elements.get(key) !== chain).map(([key]) => key);
    const added = [...elements].filter(([key, chain]) => old.get(key) !== chain);
    if (removed.length > 0) lines.push(`delete element ${t} ${map} { ${removed.join(", ")} }`);
    if (added.length > 0) lines.push(`add element ${t} ${map} { ${added.map(([key, chain]) => `${key} : jump ${chain}`).join(", ")} }`);
  }
  // The forward chain's lookups follow the layers; its counters are all named, so rewriting it resets nothing.
  const rules = next.forwardRules;
  if (rules && previous.forwardRules && rules.join("\n") !== previous.forwardRules.join("\n")) {
    lines.push(`flush chain ${t} forward`, ...rules.map((r) => `add rule ${t} forward ${r}`));
  }
  for (const map of previous.elements.keys()) if (!next.elements.has(map)) lines.push(`delete map ${t} ${map}`);
  for (const chain of previous.chains.keys()) {
    if (!next.chains.has(chain)) lines.push(`delete chain ${t} ${chain}`, `delete counter ${t} ${chain}`);
  }
  lines.push(`delete chain ${t} ${REVISION_PREFIX}${revisions.from}`, `add chain ${t} ${REVISION_PREFIX}${revisions.to}`);
  return `${lines.join("\n")}\n`;
}

async function checkAndRun(nft: NftClient, script: string): Promise<void> {
  const check = await nft.check(script);
  if (check.code !== 0) {
    throw new FirewallError("nft_check_failed", `nft -c rejected the rendered ruleset, the previous ruleset stays active: ${check.stderr.trim().slice(0, 2000)}`);
  }
  const run = await nft.run(script);
  if (run.code !== 0) {
    throw new FirewallError("nft_apply_failed", `nft -f failed, the previous ruleset stays active: ${run.stderr.trim().slice(0, 2000)}`);
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
 * Checks, then applies, the ruleset unless the kernel already runs this exact
 * revision, untouched; patches instead of replacing when `previous` allows it.
 * `verify: false` trusts the revision marker alone and records no fingerprint
 * (no full listing of the table: the cost of a patch stays the size of the
 * patch); a later verified run then finds no fingerprint and replaces once.
 * With `verify: false` and the fingerprint the previous apply left
 * (`previousFingerprint`, from its result), not even the names are listed: the
 * patch transaction itself deletes the previous revision and fingerprint
 * markers, so it applies only onto exactly that state (else it falls back).
 */
export async function applyRuleset(
  ruleset: Ruleset,
  deps: {
    nft: NftClient;
    table: string;
    previous?: Ruleset;
    previousFingerprint?: string | null;
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
  if (deps.verify === false && previous && deps.previousFingerprint !== undefined && previous.skeleton === ruleset.skeleton) {
    const from = revisionOf(previous.text);
    if (from === revision) return { changed: false, revision, persisted, mode: "unchanged", fingerprint: deps.previousFingerprint };
    const dropFingerprint = deps.previousFingerprint ? `delete chain inet ${table} ${FINGERPRINT_PREFIX}${deps.previousFingerprint}\n` : "";
    try {
      await checkAndRun(nft, `${patchScript(previous, ruleset, table, { from, to: revision })}${dropFingerprint}`);
      return { changed: true, revision, persisted, mode: "patched", fingerprint: null };
    } catch {
      // Not the state we left (or nft refused): the careful path below looks first.
    }
  }
  const inv = await nft.inventory(table);
  const fingerprints = (inv?.chains ?? []).filter((c) => c.startsWith(FINGERPRINT_PREFIX));
  // Is the table still exactly as we left it? Only asked when verifying: it costs a full listing.
  // A table without a fingerprint that runs the revision the caller vouches for counts as untouched.
  const untouched = async (running: string) =>
    deps.verify === false ||
    (fingerprints.length === 0 && deps.vouchedRevision === running) ||
    (fingerprints.length === 1 && fingerprints[0] === `${FINGERPRINT_PREFIX}${await nft.fingerprint(table, FINGERPRINT_PREFIX)}`);
  let drifted = false;
  const current = () => (fingerprints.length === 1 ? (fingerprints[0] as string).slice(FINGERPRINT_PREFIX.length) : null);
  if (inv?.chains.includes(`${REVISION_PREFIX}${revision}`)) {
    if (await untouched(revision)) {
      if (deps.verify === false) return { changed: false, revision, persisted, mode: "unchanged" };
      // Vouched for but not fingerprinted yet (our own unverified patch put it there): fingerprint it as it is.
      const fingerprint = fingerprints.length === 0 ? await stampFingerprint(nft, table, []) : current();
      return { changed: false, revision, persisted, mode: "unchanged", fingerprint };
    }
    // No fingerprint at all: unverified patches ran since the last check. That is not evidence of a
    // hand edit, but nothing vouches for the table either, so it is replaced all the same.
    drifted = fingerprints.length > 0;
  } else if (previous && previous.skeleton === ruleset.skeleton && inv?.chains.includes(`${REVISION_PREFIX}${revisionOf(previous.text)}`)) {
    if (await untouched(revisionOf(previous.text))) {
      try {
        const patch = patchScript(previous, ruleset, table, { from: revisionOf(previous.text), to: revision });
        if (deps.verify === false) {
          // No stamp: an old fingerprint must not vouch for the patched table.
          await checkAndRun(nft, `${patch}${fingerprints.map((c) => `delete chain inet ${table} ${c}\n`).join("")}`);
          return { changed: true, revision, persisted, mode: "patched", fingerprint: null };
        }
        await checkAndRun(nft, patch);
        const fingerprint = await stampFingerprint(nft, table, fingerprints);
        return { changed: true, revision, persisted, mode: "patched", fingerprint };
      } catch {
        // nft refused the patch: the full replacement below starts from whatever is there.
      }
    } else drifted = fingerprints.length > 0;
  }
  const fresh = await nft.inventory(table);
  await checkAndRun(nft, replacementScript(fresh, ruleset, table, marked));
  const fingerprint = deps.verify === false ? null : await stampFingerprint(nft, table, []);
  return { changed: true, revision, persisted, mode: drifted ? "repaired" : "replaced", fingerprint };
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
