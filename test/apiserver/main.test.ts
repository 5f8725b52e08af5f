/**
 * The standalone entry point: `bun test/apiserver/main.ts --kubeconfig-out F`
 * writes a kubeconfig for itself, serves kubectl, and stops on SIGTERM.
 */
import { expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KUBECTL, kubectlMissing, ROOT, run, waitFor } from "./harness.ts";

const skip = kubectlMissing("test/apiserver/main.test.ts");

test.skipIf(skip)("bun test/apiserver/main.ts --kubeconfig-out F serves kubectl until SIGTERM", async () => {
  const dir = mkdtempSync(join(tmpdir(), "test-apiserver-main-"));
  const kubeconfig = join(dir, "kubeconfig");
  const child = spawn(process.execPath, [join(ROOT, "test", "apiserver", "main.ts"), "--kubeconfig-out", kubeconfig], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  try {
    await waitFor(() => existsSync(kubeconfig), 10_000, "the kubeconfig");
    const config = readFileSync(kubeconfig, "utf8");
    expect(config).toContain("current-context: test");
    const server = /server: (http:\/\/127\.0\.0\.1:\d+)/.exec(config)?.[1];
    expect(server).toBeDefined();
    await waitFor(() => stdout.includes(server ?? "?"), 5000, "the URL on stdout");
    const r = await run([KUBECTL, "--kubeconfig", kubeconfig, "--cache-dir", join(dir, "cache"), "get", "ns"]);
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(/^NAME\s+STATUS\s+AGE\n/);
    expect(r.stdout).toMatch(/^default\s+Active\s+/m);
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}, 20_000);

test("main.ts without --kubeconfig-out prints its usage and exits 2", async () => {
  const r = await run([process.execPath, join(ROOT, "test", "apiserver", "main.ts")]);
  expect(r.code).toBe(2);
  expect(r.stderr).toContain("usage: bun test/apiserver/main.ts --kubeconfig-out PATH");
});
