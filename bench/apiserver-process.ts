/**
 * The test API server in a process of its own, for benches that measure the controller: in
 * production the API server runs elsewhere, so its work (storing, validating, fanning out watch
 * events, its garbage collection) must not be charged to the controller's event loop.
 * Prints one line, the kubeconfig as JSON, once it listens; stops when stdin closes.
 *
 *   const child = Bun.spawn(["./node_modules/.bin/bun", "bench/apiserver-process.ts"], { stdin: "pipe", stdout: "pipe" });
 *
 * @module
 */
import { TestApiServer } from "../test/apiserver/server.ts";

const server = await new TestApiServer().start();
process.stdout.write(`${JSON.stringify(server.kubeconfig())}\n`);
for await (const _ of process.stdin) {
  // nothing is read; the loop ends when the parent closes stdin (or dies)
}
await server.stop();
process.exit(0);
