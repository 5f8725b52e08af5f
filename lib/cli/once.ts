/**
 * `--once --manifests PATH`: read objects from files, reconcile once, report,
 * and return the exit code of SPEC §5 (see {@link ../exit-code.ts}).
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
import { exitCodeOf } from "../exit-code.ts";
import type { Logger } from "../log.ts";
import { loadManifests } from "../manifests/load.ts";
import { reconcile, type ReconcileDeps } from "../reconcile.ts";
import type { Flags } from "./flags.ts";
import { rejectionLine, stderrLine } from "./report.ts";

export interface OnceDeps extends ReconcileDeps {
  readonly log: Logger;
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

export async function runOnce(flags: Flags, deps: OnceDeps): Promise<number> {
  const { log } = deps;
  // The output gate: every line may carry names, paths and values from the input.
  const say = (line: string) => deps.stderr(stderrLine(line));
  if (flags.manifests === undefined) {
    // main.ts sends `--once` without `--manifests` to the cluster; this is the manifest path only.
    say("error: reading manifests needs --manifests PATH");
    return 1;
  }
  let objects;
  try {
    objects = await loadManifests(flags.manifests);
  } catch (e) {
    const err = e instanceof FirewallError ? e : new FirewallError("input_unreadable", String(e));
    log.error({ code: err.code }, err.message);
    say(`error: ${err.message}; nothing applied`);
    return 1;
  }

  const desired = buildDesiredState(objects, { firewallName: flags.firewallName, clusterPrefixes: flags.clusterPrefixes, privateVrf: flags.privateVrf, rulesetDir: flags.rulesetDir });
  for (const i of desired.ignored) log.info({ object: formatRef(i.ref) }, `ignored: ${i.reason}`);
  for (const n of desired.notes) log.warn({ object: formatRef(n.ref) }, formatProblems(n.problems));
  for (const r of desired.rejected) {
    log.error({ code: "invalid_object", object: formatRef(r.ref), problems: r.problems }, `rejected ${formatRef(r.ref)}`);
    deps.stderr(rejectionLine(r));
  }
  if (!desired.firewallPresent) log.info({}, "no Firewall object: no internal prefixes, shaping left as it is");

  const result = await reconcile(desired, { mode: flags.dryRun ? "render" : "apply", table: "firewall", rulesetFile: flags.rulesetFile }, deps);
  if (flags.dryRun) deps.stdout(`${result.ruleset.text}${result.shapingPlan.map((l) => `${l}\n`).join("")}`);
  if (result.skippedReason) log.info({}, result.skippedReason);
  for (const p of result.shapingProblems) {
    log.warn({ code: "shaping_failed", interface: p.interface }, p.message);
    say(`warning: rate limit on ${p.interface}: ${p.message}`);
  }
  for (const e of result.errors) {
    log.error({ code: e.code }, e.message);
    say(`error: ${e.message}`);
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
  return exitCodeOf({ rules: result.rules, shaping: result.shaping, errors: result.errors.length }, desired.rejected.length);
}
