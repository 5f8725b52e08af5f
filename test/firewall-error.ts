/**
 * Awaits a promise that must reject with a {@link FirewallError}, and returns
 * the error for assertions on its code and message.
 *
 * @example
 * ```ts
 * import { expectFirewallError } from "./firewall-error.ts";
 * // const e = await expectFirewallError(loadManifests("/nonexistent"));
 * // expect(e.code).toBe("input_unreadable");
 * ```
 * @module
 */
import { expect } from "bun:test";
import { FirewallError } from "../lib/errors.ts";

export async function expectFirewallError(p: Promise<unknown>): Promise<FirewallError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(FirewallError);
    return e as FirewallError;
  }
  throw new Error("expected a FirewallError");
}
