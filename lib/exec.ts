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

/** Runs argv[0] with the rest as arguments; never throws for a non-zero exit (only `code` says). */
export type Executor = (argv: readonly string[], options?: { stdin?: string }) => Promise<CommandResult>;

/** The real executor, on `node:child_process` so that Bun and Deno both run it. */
export const runCommand: Executor = (argv, options = {}) =>
  new Promise((resolve) => {
    const [cmd, ...args] = argv;
    if (cmd === undefined) {
      resolve({ code: 127, stdout: "", stderr: "empty command" });
      return;
    }
    const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", (e) => resolve({ code: 127, stdout: "", stderr: `cannot run ${cmd}: ${e.message}` }));
    child.on("close", (code) =>
      resolve({ code: code ?? 1, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") }),
    );
    child.stdin.on("error", () => {}); // the child may exit before reading everything; its exit code tells
    child.stdin.end(options.stdin ?? "");
  });
