/**
 * Structured JSON logs (pino) on stderr. Every error log carries the stable
 * `code` of {@link ../errors.ts}.
 *
 * @example
 * ```ts
 * import { createLogger } from "./log.ts";
 * const log = createLogger("info");
 * log.info({ policies: 3 }, "ruleset applied");
 * ```
 * @module
 */
import pino from "pino";

export type Logger = pino.Logger;

export function createLogger(level: string): Logger {
  // Synchronous writes: a --once run exits right after its last line and must not lose it.
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 2, sync: true }));
}
