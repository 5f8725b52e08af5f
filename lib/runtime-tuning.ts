/**
 * Runtime settings the long-running controller needs, which Bun reads only from the environment
 * when it starts: so the compiled binary replaces itself (execve: the same process, PID and open
 * files) once with them set, unless they are set already.
 *
 * The one setting: **Bun's idle GC timer at 10 s instead of 1 s** (`BUN_GC_TIMER_INTERVAL`). Bun
 * adds a young-generation collection every second to any process whose heap changed at all, and
 * at 10,000 policies (a ~150 MB heap) each costs ~15 ms: 1.5 % of a core for nothing, half of the
 * steady state (measured with `bench/steady-state.ts`, README "Benchmarks"). JavaScriptCore's own
 * collections, paced by allocation, are unchanged. An operator who sets the variable (to `1000`
 * for Bun's default, say) gets what they set.
 *
 * @example
 * ```ts
 * import { tunedEnvironment } from "./runtime-tuning.ts";
 * console.log(tunedEnvironment({})); // { BUN_GC_TIMER_INTERVAL: "10000" }
 * console.log(tunedEnvironment({ BUN_GC_TIMER_INTERVAL: "1000" })); // undefined: as set
 * ```
 * @module
 */

/** What Bun's idle GC timer is set to, in ms, when the environment does not say. */
export const GC_TIMER_INTERVAL_MS = 10_000;

/** The environment to run with, or undefined when it already is (nothing to change). */
export function tunedEnvironment(env: Readonly<Record<string, string | undefined>>): Record<string, string> | undefined {
  if (env.BUN_GC_TIMER_INTERVAL !== undefined || env.BUN_GC_TIMER_DISABLE !== undefined) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  out.BUN_GC_TIMER_INTERVAL = String(GC_TIMER_INTERVAL_MS);
  return out;
}

/** Whether this process is the compiled binary (its entry point is in Bun's embedded file system). */
const compiled = (): boolean => typeof Bun !== "undefined" && Bun.main.startsWith("/$bunfs/");

/**
 * In the compiled binary, replaces this process by itself with {@link tunedEnvironment} when
 * that differs from the environment. Returns only when there is nothing to change (undefined) or
 * the replacement failed (the reason): it then runs as it is, as the settings cost CPU, not
 * correctness.
 */
export function runTuned(): string | undefined {
  if (!compiled()) return undefined;
  const env = tunedEnvironment(process.env);
  if (env === undefined) return undefined;
  if (typeof process.execve !== "function") return "this runtime has no process.execve";
  try {
    // argv as the binary got it: its own name, then the arguments (Bun inserts the entry point at 1).
    process.execve(process.execPath, [process.argv0, ...process.argv.slice(2)], env);
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
  return "execve returned";
}
