/**
 * `--once --manifests PATH`: read objects from files, reconcile once, report,
 * and return the exit code of SPEC §5 (0 all valid and applied or printed;
 * 2 applied or printed with some objects rejected; 1 nothing applied).
 *
 * @example
 * ```ts
 * import { runOnce } from "./once.ts";
 * // const code = await runOnce(flags, { nft, shaper, writeFile, log, stdout, stderr });
 * ```
 * @module
 */
import { formatProblems } from "../api/problem.ts";
import { buildDesiredState, formatRef } from "../desired-state.ts";
import { FirewallError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { loadManifests } from "../manifests/load.ts";
import { reconcile, type ReconcileDeps } from "../reconcile.ts";
import type { Flags } from "./flags.ts";

export interface OnceDeps extends ReconcileDeps {
  readonly log: Logger;
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

export async function runOnce(flags: Flags, deps: OnceDeps): Promise<number> {
  const { log } = deps;
  if (flags.manifests === undefined) {
    // main.ts sends `--once` without `--manifests` to the cluster; this is the manifest path only.
    deps.stderr("error: reading manifests needs --manifests PATH\n");
    return 1;
  }
  let objects;
  try {
    objects = await loadManifests(flags.manifests);
  } catch (e) {
    const err = e instanceof FirewallError ? e : new FirewallError("input_unreadable", String(e));
    log.error({ code: err.code }, err.message);
    deps.stderr(`error: ${err.message}; nothing applied\n`);
    return 1;
  }

  const desired = buildDesiredState(objects, { firewallName: flags.firewallName, clusterPrefixes: flags.clusterPrefixes, privateVrf: flags.privateVrf });
  for (const i of desired.ignored) log.info({ object: formatRef(i.ref) }, `ignored: ${i.reason}`);
  for (const n of desired.notes) log.warn({ object: formatRef(n.ref) }, formatProblems(n.problems));
  for (const r of desired.rejected) {
    log.error({ code: "invalid_object", object: formatRef(r.ref), problems: r.problems }, `rejected ${formatRef(r.ref)}`);
    deps.stderr(`rejected ${formatRef(r.ref)}: ${formatProblems(r.problems)}\n`);
  }
  if (!desired.firewallPresent) log.info({}, "no Firewall object: no internal prefixes, shaping left as it is");

  const result = await reconcile(desired, { mode: flags.dryRun ? "render" : "apply", table: "firewall", rulesetFile: flags.rulesetFile }, deps);
  if (flags.dryRun) deps.stdout(`${result.ruleset.text}${result.shapingPlan.map((l) => `${l}\n`).join("")}`);
  if (result.skippedReason) log.info({}, result.skippedReason);
  for (const p of result.shapingProblems) {
    log.warn({ code: "shaping_failed", interface: p.interface }, p.message);
    deps.stderr(`warning: rate limit on ${p.interface}: ${p.message}\n`);
  }
  for (const e of result.errors) {
    log.error({ code: e.code }, e.message);
    deps.stderr(`error: ${e.message}\n`);
  }
  const summary = {
    policies: desired.state.policies.length,
    services: desired.state.services.length,
    rejected: desired.rejected.length,
    ignored: desired.ignored.length,
    rules: result.rules,
    shaping: result.shaping,
  };
  log.info(summary, "reconciled once");
  if (result.rules === "failed") return 1;
  if (result.errors.length > 0) return 1;
  return desired.rejected.length > 0 ? 2 : 0;
}
