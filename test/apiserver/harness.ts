/**
 * Test harness for the test API server: start it on a random port with a
 * kubeconfig in a temporary directory, run the real `kubectl` against it,
 * and build `@kubernetes/client-node` clients for it.
 *
 * kubectl is required in CI (`CI=true`: a missing kubectl fails the files
 * that need it); elsewhere their tests are skipped with a loud warning.
 *
 * @example
 * ```ts
 * import { startTestServer, kubectl } from "./harness.ts";
 * const t = await startTestServer();
 * const r = await kubectl(t, ["get", "ns"]);
 * console.log(r.stdout);
 * await t.close();
 * ```
 * @module
 */
import { KubeConfig } from "@kubernetes/client-node";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { TestApiServer, type TestApiServerOptions } from "./server.ts";
import type { KubeObject } from "./types.ts";

/** The repository root (for `crds/` and `examples/`). */
export const ROOT = join(import.meta.dir, "..", "..");

export const KUBECTL = "/usr/bin/kubectl";

/**
 * For test files that need kubectl: true when it is missing and their tests
 * are to be skipped (with a warning). In CI (`CI=true`) a missing kubectl
 * throws instead, failing the file: a skipped check there is one that did not run.
 */
export function kubectlMissing(file: string): boolean {
  if (existsSync(KUBECTL)) return false;
  if (process.env.CI === "true") throw new Error(`${KUBECTL} is missing: CI must provide kubectl (SPEC §12)`);
  console.warn(`SKIPPING ${file}: ${KUBECTL} is not installed`);
  return true;
}

export interface TestServer {
  readonly server: TestApiServer;
  /** Temporary directory holding the kubeconfig and kubectl's discovery cache. */
  readonly dir: string;
  readonly kubeconfigPath: string;
  /** A client-node KubeConfig for the server. */
  readonly kubeConfig: KubeConfig;
  close(): Promise<void>;
}

/** Starts a server on a random port and writes its kubeconfig into a fresh temporary directory. */
export async function startTestServer(options: TestApiServerOptions = {}): Promise<TestServer> {
  const server = await new TestApiServer(options).start();
  const dir = mkdtempSync(join(tmpdir(), "test-apiserver-"));
  const kubeconfigPath = join(dir, "kubeconfig");
  writeFileSync(kubeconfigPath, server.kubeconfig());
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromString(server.kubeconfig());
  return {
    server,
    dir,
    kubeconfigPath,
    kubeConfig,
    async close() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program; never throws for a non-zero exit. */
export function run(argv: readonly string[], options: { stdin?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const [cmd, ...args] = argv;
    const child = spawn(cmd ?? "", args, { stdio: ["pipe", "pipe", "pipe"], env: options.env ?? process.env });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", (e) => resolve({ code: 127, stdout: "", stderr: String(e) }));
    child.on("close", (code) => resolve({ code: code ?? 1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }));
    child.stdin.on("error", () => {});
    child.stdin.end(options.stdin ?? "");
  });
}

/**
 * Runs the real kubectl against the server, with a discovery cache private to
 * this server (kubectl caches discovery per host:port for hours otherwise).
 */
export function kubectl(t: TestServer, args: readonly string[], stdin?: string): Promise<RunResult> {
  return run([KUBECTL, "--kubeconfig", t.kubeconfigPath, "--cache-dir", join(t.dir, "cache"), ...args], stdin !== undefined ? { stdin } : {});
}

/** Runs kubectl and fails with its stderr unless it exits 0; returns stdout. */
export async function kubectlOk(t: TestServer, args: readonly string[], stdin?: string): Promise<string> {
  const r = await kubectl(t, args, stdin);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** Splits kubectl's table output into rows of cells (columns are separated by 2+ spaces). */
export function tableRows(text: string): string[][] {
  return text
    .trimEnd()
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => l.trim().split(/\s{2,}/));
}

/** Resolves when `check` is true, polling; rejects after `timeoutMs`. */
export async function waitFor(check: () => boolean, timeoutMs = 5000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Writes a file in the server's temporary directory and returns its path. */
export function tempFile(t: TestServer, name: string, content: string): string {
  const p = join(t.dir, name);
  writeFileSync(p, content);
  return p;
}

/** The repository's CRDs (`crds/*.yaml`), parsed. */
export function repoCrds(): KubeObject[] {
  const dir = join(ROOT, "crds");
  return readdirSync(dir)
    .filter((f) => f.endsWith(".yaml"))
    .sort()
    .map((f) => parse(readFileSync(join(dir, f), "utf8")) as KubeObject);
}

/** POSTs raw JSON (no client-side serializer in between) and fails unless the answer is 2xx. */
export async function post(t: TestServer, path: string, body: unknown): Promise<KubeObject> {
  const r = await fetch(`${t.server.url}${path}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const text = await r.text();
  if (!r.ok) throw new Error(`POST ${path}: ${r.status} ${text}`);
  return JSON.parse(text) as KubeObject;
}

/**
 * Installs the repository's CRDs and creates the namespaces. The CRDs go in as
 * raw JSON, as kubectl sends them: client-node's typed serializer would drop
 * `default` and `x-kubernetes-*` keys of top-level schema properties (it maps
 * them to `_default`, `xKubernetesPreserveUnknownFields`, ...).
 */
export async function seed(t: TestServer, namespaces: readonly string[] = ["firewall"]): Promise<void> {
  for (const crd of repoCrds()) await post(t, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd);
  for (const name of namespaces) await post(t, "/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name } });
}
