/**
 * One level-based reconcile: desired state in, kernel brought in line, a
 * result out. It never asks why it runs; callers decide when (once, on
 * events, on the interval) and what to do with failures.
 *
 * @example
 * ```ts
 * import { reconcile } from "./reconcile.ts";
 * // const result = await reconcile(classified, { mode: "apply", table: "firewall", rulesetFile }, deps);
 * ```
 * @module
 */
import type { RateLimit } from "./api/firewall.ts";
import type { Classified } from "./desired-state.ts";
import { FirewallError } from "./errors.ts";
import type { WriteOptions } from "./atomic-file.ts";
import { PERSISTED_HEADER } from "./nft/apply.ts";
import { Applier } from "./nft/applier.ts";
import type { NftClient } from "./nft/client.ts";
import { ELEMENT_BUDGET } from "./ruleset/budget.ts";
import { type RenderedRuleset, renderRuleset, type Ruleset } from "./ruleset/render.ts";

/** Rate limiting, as the reconciler needs it (implemented in `lib/tc/`). */
export interface Shaper {
  /** Comment lines describing the shaping, for `--dry-run`. */
  describe(limits: readonly RateLimit[]): string[];
  reconcile(limits: readonly RateLimit[]): Promise<{ changed: boolean; problems: readonly { interface: string; message: string }[] }>;
}

export interface ReconcileDeps {
  readonly nft: NftClient;
  readonly shaper: Shaper;
  readonly writeFile: (path: string, content: string, options?: WriteOptions) => Promise<boolean>;
}

export interface ReconcileOptions {
  /** `render`: validate and render only; `apply`: also bring the kernel in line. */
  readonly mode: "render" | "apply";
  readonly table: string;
  /** Default path of the ruleset file; the Firewall's `ipv4rulefile` wins. */
  readonly rulesetFile: string;
  /**
   * The applier that knows what this process applied (the controller keeps one, so changes are
   * patched); default a fresh one over `deps.nft`, as `--once` has it.
   */
  readonly applier?: Applier;
  /** Check the kernel's table is untouched: always (default), never, or when due (see {@link Applier.apply}). */
  readonly verify?: boolean | "periodic";
  /** Renders the desired state; default {@link renderRuleset} (the controller passes its incremental renderer). */
  readonly render?: (state: Classified["state"]) => RenderedRuleset;
}

export type Outcome = "changed" | "unchanged" | "skipped" | "failed";

export interface ReconcileResult {
  readonly ruleset: RenderedRuleset;
  /** How the rules reached the kernel (`unchanged`, `patched`, `replaced`, `repaired`), when they did. */
  readonly applyMode?: string;
  /** The fingerprint marker left in the kernel (null: none), when known. */
  readonly fingerprint?: string | null;
  /** The generation marker left in the kernel (null: none), when known. */
  readonly generation?: number | null;
  readonly shapingPlan: readonly string[];
  readonly rules: Outcome;
  readonly shaping: Outcome;
  readonly shapingProblems: readonly { interface: string; message: string }[];
  readonly errors: readonly FirewallError[];
  /** Where the time went (milliseconds), when the kernel was asked. */
  readonly timings?: { readonly renderMs: number; readonly applyMs: number; readonly shapingMs: number };
  /** Why nothing was applied although asked to, if so. */
  readonly skippedReason?: string;
}

const asFirewallError = (e: unknown, code: FirewallError["code"]): FirewallError =>
  e instanceof FirewallError ? e : new FirewallError(code, e instanceof Error ? e.message : String(e), { cause: e });

export async function reconcile(desired: Classified, options: ReconcileOptions, deps: ReconcileDeps): Promise<ReconcileResult> {
  const t0 = performance.now();
  const ruleset = (options.render ?? renderRuleset)(desired.state);
  const renderMs = performance.now() - t0;
  const limits = desired.firewall?.rateLimits ?? [];
  const shapingPlan = desired.firewall ? deps.shaper.describe(limits) : ["# shaping: no valid Firewall object; shaping is left as it is"];
  const base = { ruleset, shapingPlan, shapingProblems: [] as { interface: string; message: string }[], errors: [] as FirewallError[] };
  if (ruleset.overflow.length > 0) {
    // A backstop behind the per-object budget: overlaps deeper than the map layers, split beyond the
    // total budget, were left out of the rendering. An incomplete ruleset is never applied.
    base.errors.push(new FirewallError("over_budget", `overlapping policies in ${ruleset.overflow.join(", ")} are nested too deeply to render within ${ELEMENT_BUDGET.total.toLocaleString("en-US")} map elements; nothing applied, the previous ruleset stays active — merge or simplify the overlapping policies`));
    return { ...base, rules: "failed", shaping: "skipped" };
  }
  if (options.mode === "render") return { ...base, rules: "skipped", shaping: "skipped" };
  if (desired.firewall?.dryrun) {
    return { ...base, rules: "skipped", shaping: "skipped", skippedReason: "Firewall spec.dryrun is true: rendered and validated, nothing applied" };
  }

  let rules: Outcome;
  let applyMode: string | undefined;
  let fingerprint: string | null | undefined;
  let generation: number | null | undefined;
  try {
    const applier = options.applier ?? new Applier({ nft: deps.nft, table: options.table });
    const r = await applier.apply(ruleset, { verify: options.verify ?? true });
    rules = r.changed ? "changed" : "unchanged";
    applyMode = r.mode;
    fingerprint = r.fingerprint;
    generation = r.generation;
    const fromCluster = desired.firewall?.rulesetFile;
    const path = fromCluster ?? options.rulesetFile;
    try {
      // A path from the Firewall object (cluster input) may only replace a file we wrote.
      await deps.writeFile(path, r.persisted, fromCluster === undefined ? {} : { replaceOnlyIfStartsWith: PERSISTED_HEADER });
    } catch (e) {
      base.errors.push(new FirewallError("ruleset_file_failed", `ruleset applied, but writing ${path} failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e }));
    }
  } catch (e) {
    rules = "failed";
    base.errors.push(asFirewallError(e, "nft_apply_failed"));
  }

  // Shaping is reconciled only against a valid Firewall (without one we do not know the intended
  // limits), and only once the rules are in force: a failed apply changes nothing at all.
  const applyMs = performance.now() - t0 - renderMs;
  let shaping: Outcome = "skipped";
  if (desired.firewall && rules !== "failed") {
    try {
      const s = await deps.shaper.reconcile(limits);
      shaping = s.changed ? "changed" : "unchanged";
      base.shapingProblems.push(...s.problems);
    } catch (e) {
      shaping = "failed";
      base.errors.push(asFirewallError(e, "shaping_failed"));
    }
  }
  const timings = { renderMs: Math.round(renderMs), applyMs: Math.round(applyMs), shapingMs: Math.round(performance.now() - t0 - renderMs - applyMs) };
  return { ...base, rules, shaping, timings, ...(applyMode ? { applyMode } : {}), ...(fingerprint === undefined ? {} : { fingerprint }), ...(generation === undefined ? {} : { generation }) };
}
