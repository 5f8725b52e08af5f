/**
 * A test droptailer server: gRPC unary `proto.Droptailer/Push` over mutual TLS (client
 * certificates required), on grpc-js with the generated protobuf code, loopback only. Plus
 * `makePki`, which writes a CA, a server certificate for `droptailer`, a client certificate and a
 * second, unrelated CA (with its own client certificate) with the real `openssl`.
 *
 * @example
 * ```ts
 * import { makePki, DroptailerTestServer } from "./server.ts";
 * const pki = await makePki("/tmp/pki");
 * const server = await DroptailerTestServer.start(pki);
 * // ... push to 127.0.0.1:server.port ...
 * await server.stop();
 * ```
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { fromBinary, toBinary, create } from "@bufbuild/protobuf";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { runCommand } from "../../lib/exec.ts";
import { DropSchema, VoidSchema, type Drop } from "../../lib/droptailer/gen/droptailer_pb.ts";

export interface Pki {
  readonly dir: string;
  /** The cluster's CA (signs the server and the client certificate). */
  readonly ca: Buffer;
  readonly serverCert: Buffer;
  readonly serverKey: Buffer;
  readonly clientCert: Buffer;
  readonly clientKey: Buffer;
  /** An unrelated CA, and a client certificate it signed. */
  readonly wrongCa: Buffer;
  readonly wrongClientCert: Buffer;
  readonly wrongClientKey: Buffer;
}

async function openssl(args: string[]): Promise<void> {
  const r = await runCommand(["openssl", ...args]);
  if (r.code !== 0) throw new Error(`openssl ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
}

/** Writes the test PKI into `dir` (created) with openssl and returns the PEM buffers. */
export async function makePki(dir: string): Promise<Pki> {
  await mkdir(dir, { recursive: true });
  const p = (n: string) => join(dir, n);
  const ca = async (name: string, cn: string) => {
    await openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", p(`${name}.key`), "-out", p(`${name}.crt`), "-days", "2", "-subj", `/CN=${cn}`,
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  };
  const leaf = async (name: string, caName: string, cn: string, ext: string) => {
    await openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", p(`${name}.key`), "-out", p(`${name}.csr`), "-subj", `/CN=${cn}`]);
    await Bun.write(p(`${name}.ext`), ext);
    await openssl(["x509", "-req", "-in", p(`${name}.csr`), "-CA", p(`${caName}.crt`), "-CAkey", p(`${caName}.key`),
      "-CAcreateserial", "-out", p(`${name}.crt`), "-days", "2", "-extfile", p(`${name}.ext`)]);
  };
  await ca("ca", "droptailer-test-ca");
  await ca("wrong-ca", "some-other-ca");
  await leaf("server", "ca", "droptailer",
    "subjectAltName=DNS:droptailer\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n");
  await leaf("client", "ca", "droptailer-client",
    "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n");
  await leaf("wrong-client", "wrong-ca", "droptailer-client",
    "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n");
  const r = (n: string) => readFile(p(n));
  return {
    dir,
    ca: await r("ca.crt"), serverCert: await r("server.crt"), serverKey: await r("server.key"),
    clientCert: await r("client.crt"), clientKey: await r("client.key"),
    wrongCa: await r("wrong-ca.crt"), wrongClientCert: await r("wrong-client.crt"), wrongClientKey: await r("wrong-client.key"),
  };
}

/** One drop as the server decoded it. */
export interface ReceivedDrop {
  /** Microseconds since the Unix epoch. */
  readonly timestampUs: bigint;
  readonly fields: Record<string, string>;
}

const serviceDefinition: grpc.ServiceDefinition = {
  push: {
    path: "/proto.Droptailer/Push",
    requestStream: false,
    responseStream: false,
    requestSerialize: (d: Drop) => Buffer.from(toBinary(DropSchema, d)),
    requestDeserialize: (b: Buffer) => fromBinary(DropSchema, b),
    responseSerialize: () => Buffer.from(toBinary(VoidSchema, create(VoidSchema))),
    responseDeserialize: (b: Buffer) => fromBinary(VoidSchema, b),
  },
};

export class DroptailerTestServer {
  /** Every drop received, across restarts, in arrival order. */
  readonly received: ReceivedDrop[] = [];
  /** Holds each answer this long after the drop was received (a slow server, answers on their way). */
  answerDelayMs = 0;
  #server: grpc.Server | undefined;
  #port = 0;

  private constructor(
    private readonly pki: Pki,
    private readonly host: string,
  ) {}

  /** Starts on `host` (default 127.0.0.1; `port` 0: any free port). */
  static async start(pki: Pki, port = 0, host = "127.0.0.1"): Promise<DroptailerTestServer> {
    const s = new DroptailerTestServer(pki, host);
    await s.restart(port);
    return s;
  }

  get port(): number {
    return this.#port;
  }

  get running(): boolean {
    return this.#server !== undefined;
  }

  /** (Re)binds, by default on the port it had, keeping what it received. */
  async restart(port = this.#port): Promise<void> {
    if (this.#server) throw new Error("server already running");
    const server = new grpc.Server();
    server.addService(serviceDefinition, {
      push: (call: grpc.ServerUnaryCall<Drop, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        const d = call.request;
        const ts = d.timestamp;
        const timestampUs = ts ? ts.seconds * 1_000_000n + BigInt(Math.floor(ts.nanos / 1000)) : -1n;
        this.received.push({ timestampUs, fields: { ...d.fields } });
        if (this.answerDelayMs > 0) setTimeout(() => callback(null, {}), this.answerDelayMs);
        else callback(null, {});
      },
    });
    const creds = grpc.ServerCredentials.createSsl(this.pki.ca,
      [{ private_key: this.pki.serverKey, cert_chain: this.pki.serverCert }], true);
    this.#port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${this.host}:${port}`, creds, (err, p) => (err ? reject(err) : resolve(p))));
    this.#server = server;
  }

  /** Stops at once (open connections are closed). */
  async stop(): Promise<void> {
    const s = this.#server;
    this.#server = undefined;
    if (!s) return;
    s.forceShutdown();
  }
}
