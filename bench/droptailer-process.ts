/**
 * The test droptailer server in a process of its own, for bench/drop-log.ts: in production the
 * server runs in the cluster, so its work (TLS, gRPC, decoding) must not be charged to the
 * controller. Makes its PKI in the directory given, prints one line of JSON (port and the client's
 * CA, certificate and key, base64) once it listens, then answers every line `count` on stdin with
 * `{"received":N,"distinct":N}`; stops when stdin closes.
 *
 *   bun bench/droptailer-process.ts /tmp/pki-dir
 *
 * @module
 */
import { DroptailerTestServer, makePki } from "../test/droptailer/server.ts";

const pki = await makePki(process.argv[2] ?? "/tmp/fct-droptailer-pki");
const server = await DroptailerTestServer.start(pki);
process.stdout.write(`${JSON.stringify({ port: server.port, ca: pki.ca.toString("base64"), cert: pki.clientCert.toString("base64"), key: pki.clientKey.toString("base64") })}\n`);
const distinct = new Set<string>();
let counted = 0;
for await (const line of console) {
  if (line.trim() !== "count") continue;
  for (; counted < server.received.length; counted++) {
    const f = (server.received[counted] as { fields: Record<string, string> }).fields;
    distinct.add(`${f.ID}:${f.SPT}:${f.SRC}`);
  }
  process.stdout.write(`${JSON.stringify({ received: server.received.length, distinct: distinct.size })}\n`);
}
await server.stop();
process.exit(0);
