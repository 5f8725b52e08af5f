/**
 * A droptailer server for the throughput bench on Node.js's own HTTP/2 (nghttp2, C): mutual TLS
 * with client certificates required, `proto.Droptailer/Push` answered as gRPC does (a trailers-only
 * answer with `grpc-status: 0`), each request decoded with the generated protobuf
 * code. The test server (test/droptailer/server.ts, grpc-js on Bun) tops out near 8,000 pushes a
 * second on this machine, below the rate the bench must show, so the bench measures against this
 * one: like the real droptailer (Go), it is not written in JavaScript's HTTP/2. Bundled by
 * bench/drop-log.ts with `bun build --target=node` and run under `node`.
 *
 * Protocol on stdio, as bench/droptailer-process.ts: argv[2] is a directory with ca.crt,
 * server.crt and server.key; prints `{"port":N}` once it listens, then answers every `count`
 * line on stdin with `{"received":N,"distinct":N}`.
 * @module
 */
import { readFileSync } from "node:fs";
import { createSecureServer, type ServerHttp2Stream } from "node:http2";
import { createInterface } from "node:readline";
import { fromBinary } from "@bufbuild/protobuf";
import { DropSchema } from "../lib/droptailer/gen/droptailer_pb.ts";

const dir = process.argv[2] ?? ".";
const file = (n: string) => readFileSync(`${dir}/${n}`);
const distinct = new Set<string>();
let received = 0;
let malformed = 0;

const server = createSecureServer({
  ca: file("ca.crt"), cert: file("server.crt"), key: file("server.key"), requestCert: true, rejectUnauthorized: true,
  settings: { maxConcurrentStreams: 1000 },
});
server.on("stream", (stream: ServerHttp2Stream, headers) => {
  const chunks: Buffer[] = [];
  stream.on("data", (c: Buffer) => chunks.push(c));
  stream.on("end", () => {
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    const ok = headers[":path"] === "/proto.Droptailer/Push" && body.length >= 5 && body.readUInt32BE(1) === body.length - 5;
    if (ok) {
      try {
        const d = fromBinary(DropSchema, body.subarray(5));
        received++;
        distinct.add(`${d.fields.ID}:${d.fields.SPT}:${d.fields.SRC}`);
      } catch {
        malformed++;
      }
    } else malformed++;
    // A trailers-only answer (one HEADERS frame): gRPC's form for a call with nothing to return
    // but its status, and the cheapest for nghttp2.
    stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": ok ? "0" : "3", ...(ok ? {} : { "grpc-message": "bad request" }) }, { endStream: true });
  });
});
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  process.stdout.write(`${JSON.stringify({ port: typeof address === "object" && address ? address.port : 0 })}\n`);
});
const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (line.trim() === "count") process.stdout.write(`${JSON.stringify({ received, distinct: distinct.size, malformed })}\n`);
});
lines.on("close", () => {
  server.close();
  process.exit(0);
});
