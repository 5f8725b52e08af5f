/**
 * How tests run the product: the compiled `dist/firewall-controller` (the
 * artifact operators get), or under CI-less development `bun main.ts`.
 * In CI the binary must exist: `.ci/run` builds it before the tests.
 * @module
 */
import { existsSync } from "node:fs";
import { join } from "node:path";

export const ROOT = join(import.meta.dir, "..");
export const BINARY = join(ROOT, "dist", "firewall-controller");

/** argv prefix that starts the controller. */
export function controllerCommand(): string[] {
  if (existsSync(BINARY)) return [BINARY];
  if (process.env.CI === "true") throw new Error(`${BINARY} is missing; CI builds it with ./build.sh before the tests`);
  console.warn(`NOTE: ${BINARY} not built; running main.ts with ${process.execPath}`);
  return [process.execPath, join(ROOT, "main.ts")];
}
