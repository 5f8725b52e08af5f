import { describe, expect, test } from "bun:test";
import { runCommand, TIMED_OUT } from "../lib/exec.ts";

describe("runCommand", () => {
  test("a command that does not finish in time is killed and reported, not waited for", async () => {
    // The code and message only come from the timer firing and killing it (sleep itself exits 0).
    const r = await runCommand(["sleep", "30"], { timeoutMs: 200 });
    expect(r.code).toBe(TIMED_OUT);
    expect(r.stderr).toBe("sleep did not finish within 0.2 s and was killed");
  });

  test("a command within its time runs normally: exit code, stdout and stdin pass through", async () => {
    const r = await runCommand(["sh", "-c", "cat; exit 3"], { stdin: "hello", timeoutMs: 10_000 });
    expect(r).toEqual({ code: 3, stdout: "hello", stderr: "" });
  });

  test("a missing binary is exit 127 with the reason", async () => {
    const r = await runCommand(["/nonexistent/fct-nft"]);
    expect(r.code).toBe(127);
    expect(r.stderr).toStartWith("cannot run /nonexistent/fct-nft:");
  });
});
