/**
 * The applier as one object that owns what it knows about the kernel: the ruleset it applied
 * last, the markers that apply left (fingerprint, generation), when it last verified, and whether
 * its own unverified patch stands unstamped. Callers hand it the next ruleset; it decides whether
 * to patch or replace, and when to verify (at most once a minute on periodic runs, or on the next
 * periodic run after an unverified patch), with {@link applyRuleset} doing the work.
 *
 * @example
 * ```ts
 * import { runCommand } from "../exec.ts";
 * import { Applier } from "./applier.ts";
 * import { nftClient } from "./client.ts";
 * const applier = new Applier({ nft: nftClient("nft", runCommand), table: "firewall" });
 * // const result = await applier.apply(ruleset, { periodic: true });
 * console.log(applier.applied); // undefined until something applied
 * ```
 * @module
 */
import { type ApplyResult, applyRuleset, removeRuleset, revisionOf } from "./apply.ts";
import type { NftClient } from "./client.ts";
import type { Ruleset } from "../ruleset/render.ts";

/**
 * How often a periodic run also verifies the table: free where the generation proves it, a full
 * listing otherwise (0.3 s of nft at 1,000 policies), too much for every 10 s tick of a firewall
 * that should idle at a few per cent of a core.
 */
export const VERIFY_EVERY_MS = 60_000;

export interface ApplierOptions {
  readonly nft: NftClient;
  readonly table: string;
  /** Monotonic clock, ms; default `performance.now`. */
  readonly now?: () => number;
  readonly verifyEveryMs?: number;
}

export class Applier {
  readonly #nft: NftClient;
  readonly #table: string;
  readonly #now: () => number;
  readonly #verifyEveryMs: number;
  #applied: Ruleset | undefined;
  /** The fingerprint marker the last apply left; undefined when unknown (then the next apply lists first). */
  #fingerprint: string | null | undefined;
  /** The generation marker the last apply left. */
  #generation: number | null | undefined;
  #lastVerified = Number.NEGATIVE_INFINITY;

  constructor(options: ApplierOptions) {
    this.#nft = options.nft;
    this.#table = options.table;
    this.#now = options.now ?? (() => performance.now());
    this.#verifyEveryMs = options.verifyEveryMs ?? VERIFY_EVERY_MS;
  }

  /** The ruleset this applier knows is in force; undefined after a failure, a removal, or before the first apply. */
  get applied(): Ruleset | undefined {
    return this.#applied;
  }

  /**
   * Brings the kernel to `ruleset`. `verify`: `true` always checks the table is untouched (what
   * `--once` does), `false` never, `"periodic"` when due: after an unverified patch of its own,
   * or once {@link VERIFY_EVERY_MS} has passed. Throws what {@link applyRuleset} throws; then it
   * forgets what it knew (the kernel is listed again next time).
   */
  async apply(ruleset: Ruleset, options: { verify: boolean | "periodic" }): Promise<ApplyResult> {
    const previous = this.#applied;
    // After its own unproven patch (no marker left) the next periodic run checks the table, vouched
    // for since this applier patched it; a table proven by its generation is checked on every
    // periodic run (that costs one netlink read); otherwise verification comes at most once a minute.
    const unstamped = previous !== undefined && this.#fingerprint === null && this.#generation === null;
    const cheap = previous !== undefined && this.#generation !== null && this.#generation !== undefined;
    const now = this.#now();
    const verify = options.verify === "periodic" ? unstamped || cheap || now - this.#lastVerified >= this.#verifyEveryMs : options.verify;
    if (verify) this.#lastVerified = now;
    try {
      const r = await applyRuleset(ruleset, {
        nft: this.#nft,
        table: this.#table,
        ...(previous ? { previous } : {}),
        ...(this.#fingerprint === undefined ? {} : { previousFingerprint: this.#fingerprint }),
        ...(this.#generation === undefined ? {} : { previousGeneration: this.#generation }),
        ...(unstamped && previous ? { vouchedRevision: revisionOf(previous.text) } : {}),
        verify,
      });
      this.#applied = ruleset;
      this.#fingerprint = r.fingerprint;
      this.#generation = r.generation;
      return r;
    } catch (e) {
      this.forget();
      throw e;
    }
  }

  /** Removes our table (an observed deletion of the Firewall); forgets what it knew. */
  async remove(): Promise<boolean> {
    this.forget();
    return removeRuleset({ nft: this.#nft, table: this.#table });
  }

  /** Forgets what it knew: the next apply lists the kernel first. */
  forget(): void {
    this.#applied = undefined;
    this.#fingerprint = undefined;
    this.#generation = undefined;
  }
}
