/**
 * The small set of error kinds this program reports. The `code` is stable: it
 * is the `code` field of log lines and the `code` label of metrics.
 *
 * @example
 * ```ts
 * import { FirewallError } from "./errors.ts";
 * const e = new FirewallError("nft_check_failed", "nft rejected the ruleset: ...; the previous ruleset stays active");
 * console.log(e.code); // "nft_check_failed"
 * ```
 * @module
 */
export type ErrorCode =
  /** A flag or its value is wrong. */
  | "bad_flag"
  /** An input file or directory cannot be read or parsed. */
  | "input_unreadable"
  /** An object failed validation (it is rejected; others still apply). */
  | "invalid_object"
  /** The rendering would exceed the element budget (overlaps too deep to layer): nothing applied. */
  | "over_budget"
  /** `nft -c` rejected the rendered ruleset. */
  | "nft_check_failed"
  /** `nft -f` failed to apply a ruleset that passed the check. */
  | "nft_apply_failed"
  /** Reading the kernel's nftables state failed. */
  | "nft_unavailable"
  /** A `tc`/`ip` command for rate limiting failed. */
  | "shaping_failed"
  /** Writing the ruleset file failed. */
  | "ruleset_file_failed"
  /** A call to the Kubernetes API failed (unreachable, refused, or an error status). */
  | "api_failed";

export class FirewallError extends Error {
  override readonly name = "FirewallError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
