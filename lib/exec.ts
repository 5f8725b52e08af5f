/**
 * Running external programs (`nft`, `tc`, `ip`) behind one small injectable
 * function, so callers can be tested with a fake and run under Bun or Deno.
 *
 * @example
 * ```ts
 * import { runCommand } from "./exec.ts";
 * const r = await runCommand(["nft", "--version"]);
 * console.log(r.code, r.stdout);
 * ```
 * @module
 */
import { spawn } from "node:child_process";

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface ExecOptions {
  readonly stdin?: string;
  /** Kill the command after this long; default {@link DEFAULT_TIMEOUT_MS}; `Infinity` for a long-running process. */
  readonly timeoutMs?: number;
}

/** Runs argv[0] with the rest as arguments; never throws for a non-zero exit (only `code` says). */
export type Executor = (argv: readonly string[], options?: ExecOptions) => Promise<CommandResult>;

/**
 * No external command may stall the controller: a hung `nft` (a kernel busy
 * with a huge transaction, a stuck netlink socket) must fail the step, not
 * freeze every later update. Generous, since the element budget keeps a
 * full apply far below it.
 */
export const DEFAULT_TIMEOUT_MS = 60_000;

/** Exit code reported for a command killed by its timeout (as coreutils' `timeout`). */
export const TIMED_OUT = 124;

/** The real executor, on `node:child_process` so that Bun and Deno both run it. */
export const runCommand: Executor = (argv, options = {}) =>
  new Promise((resolve) => {
    const [cmd, ...args] = argv;
    if (cmd === undefined) {
      resolve({ code: 127, stdout: "", stderr: "empty command" });
      return;
    }
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = Number.isFinite(timeoutMs)
      ? setTimeout(() => {
        timedOut = true;
        child.kill("SIGKILL");
      }, timeoutMs)
      : undefined;
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", (e) => {
      clearTimeout(timer);
      resolve({ code: 127, stdout: "", stderr: `cannot run ${cmd}: ${e.message}` });
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      const stderr = Buffer.concat(err).toString("utf8");
      if (timedOut) resolve({ code: TIMED_OUT, stdout: "", stderr: `${cmd} did not finish within ${timeoutMs / 1000} s and was killed${stderr ? `: ${stderr}` : ""}` });
      else resolve({ code: code ?? 1, stdout: Buffer.concat(out).toString("utf8"), stderr });
    });
    child.stdin.on("error", () => {}); // the child may exit before reading everything; its exit code tells
    child.stdin.end(options.stdin ?? "");
  });
