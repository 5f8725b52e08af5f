/**
 * Standalone test API server:
 * `bun test/apiserver/main.ts --kubeconfig-out PATH [--port N] [--host H]`
 * writes a kubeconfig for itself to PATH (cluster/user/context `test`),
 * prints its URL and serves until SIGTERM or SIGINT.
 *
 * @example
 * ```sh
 * bun test/apiserver/main.ts --kubeconfig-out /tmp/kc &
 * kubectl --kubeconfig /tmp/kc apply -f crds/
 * curl -X POST "$(kubectl --kubeconfig /tmp/kc config view -o jsonpath='{.clusters[0].cluster.server}')/__test/down-for?ms=2000"
 * ```
 * @module
 */
import { renameSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { TestApiServer } from "./server.ts";

const USAGE = "usage: bun test/apiserver/main.ts --kubeconfig-out PATH [--port N] [--host 127.0.0.1]";

const { values } = parseArgs({
  options: {
    "kubeconfig-out": { type: "string" },
    port: { type: "string", default: "0" },
    host: { type: "string", default: "127.0.0.1" },
    help: { type: "boolean", default: false },
  },
});

if (values.help || !values["kubeconfig-out"]) {
  console.error(USAGE);
  process.exit(values.help ? 0 : 2);
}
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`--port: not a port number: ${values.port}\n${USAGE}`);
  process.exit(2);
}

const server = await new TestApiServer().start({ port, host: values.host });
const out = values["kubeconfig-out"];
// Written under a temporary name and renamed, so a process waiting for the file never reads half of it.
writeFileSync(`${out}.tmp`, server.kubeconfig(), { mode: 0o600 });
renameSync(`${out}.tmp`, out);
console.log(server.url);

const shutdown = () => {
  void server.stop().then(() => process.exit(0));
};
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
