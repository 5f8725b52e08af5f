/**
 * Runtime settings the long-running controller needs, which Bun reads only from the environment
 * when it starts: so the compiled binary replaces itself (execve: the same process, PID and open
 * files) once with them set, unless they are set already.
 *
 * The settings, each measured with `bench/steady-state.ts` at 10,000 policies (README
 * "Benchmarks"), each left as it is when the environment sets it:
 * - **Bun's idle GC timer at 10 s instead of 1 s** (`BUN_GC_TIMER_INTERVAL`; `BUN_GC_TIMER_DISABLE`
 *   also counts as set). Bun adds a young-generation collection every second to any process whose
 *   heap changed at all, and on a ~150 MB heap each costs ~15 ms: 1.5 % of a core for nothing.
 *   JavaScriptCore's own collections, paced by allocation, are unchanged.
 * - **No allocator scavenger thread** (`MIMALLOC_SCAVENGER=0`): Bun's mimalloc sweeps the heap of a
 *   thread that goes idle on a thread of its own, ~0.45 % of a core here; without it, mimalloc
 *   purges on the allocating thread, as upstream mimalloc does (the main thread's share rises by
 *   less than the scavenger's, RSS is the same).
 *
 * @example
 * ```ts
 * import { tunedEnvironment } from "./runtime-tuning.ts";
 * console.log(tunedEnvironment({})); // { BUN_GC_TIMER_INTERVAL: "10000", MIMALLOC_SCAVENGER: "0" }
 * console.log(tunedEnvironment({ BUN_GC_TIMER_INTERVAL: "1000", MIMALLOC_SCAVENGER: "1" })); // undefined: as set
 * ```
 * @module
 */

/** What Bun's idle GC timer is set to, in ms, when the environment does not say. */
export const GC_TIMER_INTERVAL_MS = 10_000;

/** Each setting: its variable, its value, and the variables that count as the operator's own choice. */
const SETTINGS: readonly { readonly name: string; readonly value: string; readonly setBy: readonly string[] }[] = [
  { name: "BUN_GC_TIMER_INTERVAL", value: String(GC_TIMER_INTERVAL_MS), setBy: ["BUN_GC_TIMER_INTERVAL", "BUN_GC_TIMER_DISABLE"] },
  { name: "MIMALLOC_SCAVENGER", value: "0", setBy: ["MIMALLOC_SCAVENGER"] },
];

/** The environment to run with, or undefined when it already is (nothing to change). */
export function tunedEnvironment(env: Readonly<Record<string, string | undefined>>): Record<string, string> | undefined {
  const missing = SETTINGS.filter((s) => s.setBy.every((n) => env[n] === undefined));
  if (missing.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  for (const s of missing) out[s.name] = s.value;
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
