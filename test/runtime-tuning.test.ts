import { describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { type AddressInfo, createServer } from "node:net";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GC_TIMER_INTERVAL_MS, tunedEnvironment } from "../lib/runtime-tuning.ts";
import { BINARY } from "./cli-binary.ts";
import { waitUntil } from "./wait-until.ts";

describe("the runtime's environment", () => {
  test("Bun's idle GC timer is set to 10 s and mimalloc's scavenger thread off; everything else is kept", () => {
    expect(GC_TIMER_INTERVAL_MS).toBe(10_000);
    expect(tunedEnvironment({ PATH: "/usr/bin", X: "", GONE: undefined })).toEqual({ PATH: "/usr/bin", X: "", BUN_GC_TIMER_INTERVAL: "10000", MIMALLOC_SCAVENGER: "0" });
  });

  test("what the operator set is left as it is, setting by setting", () => {
    expect(tunedEnvironment({ BUN_GC_TIMER_INTERVAL: "1000", MIMALLOC_SCAVENGER: "1" })).toBeUndefined();
    expect(tunedEnvironment({ BUN_GC_TIMER_DISABLE: "1", MIMALLOC_SCAVENGER: "1" })).toBeUndefined();
    expect(tunedEnvironment({ BUN_GC_TIMER_INTERVAL: "1000" })).toEqual({ BUN_GC_TIMER_INTERVAL: "1000", MIMALLOC_SCAVENGER: "0" });
    expect(tunedEnvironment({ MIMALLOC_SCAVENGER: "1" })).toEqual({ MIMALLOC_SCAVENGER: "1", BUN_GC_TIMER_INTERVAL: "10000" });
  });
});

const noBinary = !existsSync(BINARY);
if (noBinary) {
  if (process.env.CI === "true") throw new Error(`${BINARY} is missing; CI builds it with ./build.sh before the tests`);
  console.warn(`SKIP test/runtime-tuning.test.ts (the compiled binary): ${BINARY} not built`);
}

/** A port nothing listens on right now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

describe.skipIf(noBinary)("the compiled binary", () => {
  /** Starts the long-running controller against an API server that is not there (it waits and retries, changing nothing). */
  async function started(env: Record<string, string | undefined>, fn: (pid: number, args: string[]) => Promise<void>): Promise<void> {
    const dir = mkdtempSync(join(tmpdir(), "fct-tuning-"));
    const kubeconfig = join(dir, "kubeconfig");
    writeFileSync(kubeconfig, "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'http://127.0.0.1:1'}\nusers:\n- name: u\n  user: {token: x}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n");
    const health = await freePort();
    const args = ["--kubeconfig", kubeconfig, "--state-dir", join(dir, "state"), "--ruleset-file", join(dir, "r.v4"), "--health-addr", `127.0.0.1:${health}`, "--nftables-metrics-addr", "127.0.0.1:0", "--node-metrics-addr", "127.0.0.1:0", "--drop-log=false", "--enable-ids=false", "--log-level", "error"];
    const { BUN_GC_TIMER_INTERVAL: _i, BUN_GC_TIMER_DISABLE: _d, MIMALLOC_SCAVENGER: _s, ...rest } = process.env;
    const child = spawn(BINARY, args, { env: { ...rest, ...env } as Record<string, string>, stdio: "ignore" });
    const exited = new Promise((resolve) => child.once("exit", resolve));
    try {
      // Serving its health endpoint: past the tuning, whichever way it went.
      await waitUntil("health endpoint up", async () => fetch(`http://127.0.0.1:${health}/healthz`).then(() => true, () => false), 10_000);
      await fn(child.pid as number, args);
    } finally {
      child.kill("SIGTERM");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const environ = (pid: number) => readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
  const cmdline = (pid: number) => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").slice(0, -1);

  test("replaces itself once with the tuned environment: the same process, the same arguments", async () => {
    await started({}, async (pid, args) => {
      expect(environ(pid).filter((e) => /^(BUN_GC_TIMER_|MIMALLOC_)/.test(e)).sort()).toEqual(["BUN_GC_TIMER_INTERVAL=10000", "MIMALLOC_SCAVENGER=0"]);
      expect(cmdline(pid)).toEqual([BINARY, ...args]);
    });
  }, 20_000);

  test("keeps the operator's setting", async () => {
    await started({ BUN_GC_TIMER_INTERVAL: "1000", MIMALLOC_SCAVENGER: "1" }, async (pid, args) => {
      expect(environ(pid).filter((e) => /^(BUN_GC_TIMER_|MIMALLOC_)/.test(e)).sort()).toEqual(["BUN_GC_TIMER_INTERVAL=1000", "MIMALLOC_SCAVENGER=1"]);
      expect(cmdline(pid)).toEqual([BINARY, ...args]);
    });
  }, 20_000);
});
