import { expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { runCommand } from "../lib/exec.ts";
import { ROOT } from "./cli-binary.ts";

const DENO = join(ROOT, "node_modules", ".bin", "deno");
const missing = !existsSync(DENO);
if (missing && process.env.CI === "true") throw new Error(`${DENO} missing: npm ci installs deno`);
if (missing) console.warn(`SKIPPING: ${DENO} not installed (npm ci)`);

test.skipIf(missing)("the same sources run under Deno and print the same ruleset as under Bun", async () => {
  const args = ["main.ts", "--once", "--dry-run", "--manifests", "examples/"];
  const deno = await runCommand([DENO, "run", "-A", ...args], {});
  const bun = await runCommand([process.execPath, ...args]);
  expect(deno.stderr).not.toContain("error");
  expect(deno.code).toBe(0);
  expect(bun.code).toBe(0);
  expect(deno.stdout).toBe(bun.stdout);
  expect(deno.stdout).toContain("table inet firewall {");
}, 60_000);
