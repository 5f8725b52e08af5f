/**
 * A scripted stand-in for suricata's command socket: a unix-socket server that
 * reads newline-ended JSON and answers through a handler, so protocol failures
 * (refused handshake, garbage, huge lines, silence, a close mid-answer) can be
 * produced on demand.
 *
 * @example
 * ```ts
 * import { startFakeSuricata, suricataLike } from "./fake-suricata.ts";
 * const fake = await startFakeSuricata("/tmp/x/command.socket", suricataLike({ eth0: { pkts: 1 } }));
 * await fake.stop();
 * ```
 * @module
 */
import { createServer, type Server, type Socket } from "node:net";

/** Called per received line; write answers to `socket` (or do not). */
export type Handler = (request: unknown, socket: Socket, line: string) => void;

export interface FakeSuricata {
  /** Connections accepted so far. */
  readonly connections: () => number;
  /** Every request line received, in order, over all connections. */
  readonly requests: string[];
  /** Closes the server and every open connection. */
  stop(): Promise<void>;
}

export async function startFakeSuricata(path: string, handler: Handler): Promise<FakeSuricata> {
  let connections = 0;
  const requests: string[] = [];
  const open = new Set<Socket>();
  const server: Server = createServer((socket) => {
    connections++;
    open.add(socket);
    socket.on("close", () => open.delete(socket));
    socket.on("error", () => {});
    let buffered = "";
    socket.on("data", (chunk) => {
      buffered += chunk.toString("utf8");
      for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        requests.push(line);
        handler(JSON.parse(line), socket, line);
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  return {
    connections: () => connections,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Counters per interface as suricata names them; missing ones are 0. */
export type FakeCounters = Record<string, { pkts?: number; "invalid-checksums"?: number; drop?: number }>;

/** A handler that answers like suricata 7 does (key order and `bypassed` included). */
export function suricataLike(counters: FakeCounters): Handler {
  return (request, socket) => {
    const r = request as { version?: string; command?: string; arguments?: { iface?: string } };
    const send = (o: unknown) => socket.write(`${JSON.stringify(o)}\n`);
    if (r.version !== undefined) return void send({ return: "OK" });
    if (r.command === "iface-list") {
      const ifaces = Object.keys(counters);
      return void send({ message: { count: ifaces.length, ifaces }, return: "OK" });
    }
    if (r.command === "iface-stat") {
      const c = counters[r.arguments?.iface ?? ""];
      if (!c) return void send({ message: "Iface does not exist", return: "NOK" });
      return void send({
        message: { pkts: c.pkts ?? 0, "invalid-checksums": c["invalid-checksums"] ?? 0, drop: c.drop ?? 0, bypassed: 0 },
        return: "OK",
      });
    }
    send({ message: "Unknown command", return: "NOK" });
  };
}
