/**
 * Structured JSON logs (pino) on stderr. Every error log carries the stable
 * `code` of {@link ../errors.ts}; levels are names (`"level":"warn"`), so a
 * reader needs no table of pino's numbers. Log lines carry names and messages
 * that came from the cluster: every string passes the one output gate
 * ({@link ../escape.ts}) before it is written, so no line can be forged or a
 * terminal steered from input.
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
import { escapeText } from "./escape.ts";

export type Logger = pino.Logger;

/** Escapes every string inside a log field, bounded in depth so a hostile structure cannot blow up. */
function escapeDeep(x: unknown, depth = 0): unknown {
  if (typeof x === "string") return escapeText(x, { max: 4096 });
  if (depth > 6 || x === null || typeof x !== "object") return x;
  if (Array.isArray(x)) {
    const kept = x.slice(0, 100).map((e) => escapeDeep(e, depth + 1));
    return x.length > 100 ? [...kept, `…(${x.length - 100} more)`] : kept;
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(x as Record<string, unknown>)) out[escapeText(k, { max: 128 })] = escapeDeep(v, depth + 1);
  return out;
}

export function createLogger(level: string): Logger {
  // Synchronous writes: a --once run exits right after its last line and must not lose it.
  return pino(
    {
      level,
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ level: label }),
        log: (fields) => escapeDeep(fields) as Record<string, unknown>,
      },
      hooks: {
        logMethod(args, method) {
          // The message is the last string argument (pino's `(fields, msg)` or `(msg)` forms).
          const i = args.findLastIndex((a) => typeof a === "string");
          if (i >= 0) args[i] = escapeText(args[i] as string, { max: 4096 });
          return method.apply(this, args as Parameters<typeof method>);
        },
      },
    },
    pino.destination({ dest: 2, sync: true }),
  );
}
