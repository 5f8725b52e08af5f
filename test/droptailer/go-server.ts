/**
 * The grpc-go droptailer server (test/droptailer/go-server/main.go) as a child process: built
 * with Debian's golang-go and golang-google-grpc-dev in GOPATH mode (no network), started on a
 * free loopback port with a PKI from `makePki`, asked over its stdin what it received.
 *
 * @example
 * ```ts
 * import { GoDroptailer } from "./go-server.ts";
 * const server = await GoDroptailer.start(pki.dir);
 * // ... push to 127.0.0.1:server.port ...
 * console.log(await server.count()); // { received: 1, distinct: 1, malformed: 0 }
 * await server.stop();
 * ```
 * @module
 */
import { join } from "node:path";
import { tmpdir } from "node:os";

/** Whether the Go toolchain and the grpc-go sources are installed. */
export const goAvailable = (): boolean =>
  Bun.which("go") !== null && Bun.spawnSync(["test", "-d", "/usr/share/gocode/src/google.golang.org/grpc"]).exitCode === 0;

export interface GoDrop {
  readonly seconds: number;
  readonly nanos: number;
  readonly fields: Record<string, string>;
}

export class GoDroptailer {
  readonly #child: Bun.Subprocess<"pipe", "pipe", "inherit">;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  #buffered = "";
  private constructor(child: Bun.Subprocess<"pipe", "pipe", "inherit">, readonly port: number, reader: ReadableStreamDefaultReader<Uint8Array>, rest: string) {
    this.#child = child;
    this.#reader = reader;
    this.#buffered = rest;
  }

  /** Builds (into `outDir`, default the temp directory) and starts the server with the PKI in `pkiDir`. */
  static async start(pkiDir: string, outDir = tmpdir()): Promise<GoDroptailer> {
    const binary = join(outDir, `fct-droptailer-go-${process.pid}`);
    const built = Bun.spawnSync(["go", "build", "-o", binary, "."], {
      cwd: join(import.meta.dir, "go-server"),
      env: { ...process.env, GO111MODULE: "off", GOPATH: "/usr/share/gocode", GOCACHE: join(tmpdir(), "fct-gocache"), GOFLAGS: "" },
    });
    if (built.exitCode !== 0) throw new Error(`go build failed: ${built.stderr.toString()}`);
    const child = Bun.spawn([binary, pkiDir], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
    const reader = child.stdout.getReader();
    let buffered = "";
    for (;;) {
      const nl = buffered.indexOf("\n");
      if (nl >= 0) {
        const hello = JSON.parse(buffered.slice(0, nl)) as { port: number };
        return new GoDroptailer(child, hello.port, reader, buffered.slice(nl + 1));
      }
      const { done, value } = await reader.read();
      if (done) throw new Error("the grpc-go server ended before it listened");
      buffered += new TextDecoder().decode(value);
    }
  }

  async #line(): Promise<string> {
    for (;;) {
      const nl = this.#buffered.indexOf("\n");
      if (nl >= 0) {
        const line = this.#buffered.slice(0, nl);
        this.#buffered = this.#buffered.slice(nl + 1);
        return line;
      }
      const { done, value } = await this.#reader.read();
      if (done) throw new Error("the grpc-go server ended");
      this.#buffered += new TextDecoder().decode(value);
    }
  }

  #ask(what: string): void {
    this.#child.stdin.write(`${what}\n`);
    this.#child.stdin.flush();
  }

  /** How many drops it received (and how many distinct by ID, SPT and SRC; undecodable ones). */
  async count(): Promise<{ received: number; distinct: number; malformed: number }> {
    this.#ask("count");
    return JSON.parse(await this.#line()) as { received: number; distinct: number; malformed: number };
  }

  /** The first 1,000 drops it received, in arrival order. */
  async dump(): Promise<GoDrop[]> {
    this.#ask("dump");
    const out: GoDrop[] = [];
    for (let line = await this.#line(); line !== "end"; line = await this.#line()) out.push(JSON.parse(line) as GoDrop);
    return out;
  }

  async stop(): Promise<void> {
    this.#child.stdin.end();
    await this.#child.exited;
    await Bun.file(join(tmpdir(), `fct-droptailer-go-${process.pid}`)).delete().catch(() => undefined);
  }
}
