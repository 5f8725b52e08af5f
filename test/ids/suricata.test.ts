import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import type { Socket } from "node:net";
import { runCommand } from "../../lib/exec.ts";
import { SuricataClient } from "../../lib/ids/suricata.ts";
import { HARNESS_TOOLS, needs } from "../netns/topology.ts";
import { waitUntil } from "../wait-until.ts";
import { type FakeCounters, type FakeSuricata, type Handler, startFakeSuricata, suricataLike } from "./fake-suricata.ts";

const send = (socket: Socket, o: unknown) => socket.write(`${JSON.stringify(o)}\n`);

/** suricataLike, except for `command` (or the handshake, "version"), which `override` answers. */
function except(command: string, override: Handler, counters: FakeCounters = { eth0: { pkts: 5 } }): Handler {
  const normal = suricataLike(counters);
  return (req, socket, line) => {
    const r = req as { version?: string; command?: string };
    if ((command === "version" && r.version !== undefined) || r.command === command) override(req, socket, line);
    else normal(req, socket, line);
  };
}

describe("SuricataClient against a fake command socket", () => {
  let dir: string;
  let path: string;
  let fake: FakeSuricata | undefined;
  const clients: SuricataClient[] = [];
  const client = (options: ConstructorParameters<typeof SuricataClient>[0] = {}) => {
    const c = new SuricataClient({ socketPath: path, ...options });
    clients.push(c);
    return c;
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "fct-ids-fake-"));
    path = join(dir, "command.socket");
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await fake?.stop();
    fake = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  test("maps every interface's counters and speaks the protocol exactly", async () => {
    fake = await startFakeSuricata(path, suricataLike({ eth0: { pkts: 12, drop: 3, "invalid-checksums": 1 }, vlan42: { pkts: 7 } }));
    expect(await client().collect()).toEqual({
      ok: true,
      stats: { eth0: { packets: 12, drop: 3, invalidchecksums: 1 }, vlan42: { packets: 7, drop: 0, invalidchecksums: 0 } },
    });
    expect(fake.requests).toEqual([
      '{"version":"0.2"}',
      '{"command":"iface-list"}',
      '{"command":"iface-stat","arguments":{"iface":"eth0"}}',
      '{"command":"iface-stat","arguments":{"iface":"vlan42"}}',
    ]);
  });

  test("no interfaces is an empty map, not a failure", async () => {
    fake = await startFakeSuricata(path, suricataLike({}));
    expect(await client().collect()).toEqual({ ok: true, stats: {} });
  });

  test("keeps one connection across collections and shares a collection in flight", async () => {
    fake = await startFakeSuricata(path, suricataLike({ eth0: { pkts: 1 } }));
    const c = client();
    const [a, b] = await Promise.all([c.collect(), c.collect()]);
    expect(a).toBe(b);
    expect(await c.collect()).toEqual({ ok: true, stats: { eth0: { packets: 1, drop: 0, invalidchecksums: 0 } } });
    expect(fake.connections()).toBe(1);
    expect(fake.requests.filter((l) => l.includes("version"))).toHaveLength(1);
    expect(fake.requests).toHaveLength(5); // handshake + 2 × (iface-list, iface-stat)
  });

  test("reconnects after suricata restarts", async () => {
    fake = await startFakeSuricata(path, suricataLike({ eth0: { pkts: 1 } }));
    const c = client();
    expect((await c.collect()).ok).toBe(true);
    await fake.stop();
    fake = await startFakeSuricata(path, suricataLike({ eth0: { pkts: 2 } }));
    // Whether or not the client has seen the close yet, the next collection must succeed.
    expect(await c.collect()).toEqual({ ok: true, stats: { eth0: { packets: 2, drop: 0, invalidchecksums: 0 } } });
    expect(fake.connections()).toBe(1);
  });

  test("reconnects on the next call after a failed one", async () => {
    let first = true;
    fake = await startFakeSuricata(path, except("iface-list", (req, socket) => {
      if (first) {
        first = false;
        socket.write("garbage\n");
      } else suricataLike({ eth0: { pkts: 9 } })(req, socket, "");
    }));
    const c = client();
    expect(await c.collect()).toEqual({ ok: false, reason: `suricata socket ${path}: iface-list: answer is not JSON (7 characters)` });
    expect(c.connected).toBe(false);
    expect(await c.collect()).toEqual({ ok: true, stats: { eth0: { packets: 5, drop: 0, invalidchecksums: 0 } } });
    expect(fake.connections()).toBe(2);
  });

  test("absent socket: ENOENT with a hint", async () => {
    expect(await client().collect()).toEqual({
      ok: false,
      reason: `suricata socket ${path}: ENOENT (is suricata running with unix-command enabled?)`,
    });
  });

  const MiB = 1024 * 1024;
  // Protocol table: what the server does wrong, and the exact reason the client gives.
  const table: { name: string; handler: Handler; options?: ConstructorParameters<typeof SuricataClient>[0]; reason: string | RegExp }[] = [
    { name: "handshake refused (suricata just closes)", handler: except("version", (_r, s) => s.destroy()), reason: "handshake: connection closed by suricata" },
    { name: "handshake NOK", handler: except("version", (_r, s) => send(s, { return: "NOK", message: "bad version" })), reason: "handshake refused: bad version" },
    { name: "garbage handshake answer", handler: except("version", (_r, s) => s.write("\x1b[2Jhello\n")), reason: "handshake: answer is not JSON (9 characters)" },
    {
      name: "oversized line (more than 1 MiB without a newline)",
      handler: except("iface-list", (_r, s) => s.write("x".repeat(MiB + 10))),
      reason: /^iface-list: answer line exceeds 1048576 bytes \(got at least \d+\)$/,
    },
    {
      name: "oversized line (complete, but over the bound)",
      handler: except("iface-list", (_r, s) => s.write(`${"y".repeat(2000)}\n`)),
      options: { maxLineBytes: 1000 },
      reason: "iface-list: answer line exceeds 1000 bytes (got at least 2000)",
    },
    { name: "slow server: no answer", handler: except("iface-list", () => {}), options: { exchangeTimeoutMs: 100 }, reason: "no answer to iface-list within 100 ms" },
    {
      name: "slow server: every answer late, total bound",
      handler: except("iface-stat", (r, s) => setTimeout(() => suricataLike({ a: {}, b: {}, c: {}, d: {}, e: {} })(r, s, ""), 60), { a: {}, b: {}, c: {}, d: {}, e: {} }),
      options: { exchangeTimeoutMs: 1000, totalTimeoutMs: 150 },
      reason: "no complete answer within 150 ms in total",
    },
    {
      name: "server closes mid-answer",
      handler: except("iface-list", (_r, s) => s.end('{"message":{"count":1,')),
      reason: "iface-list: connection closed by suricata in the middle of an answer (22 bytes of it received)",
    },
    { name: "unknown interface (NOK)", handler: except("iface-stat", (_r, s) => send(s, { message: "Iface does not exist", return: "NOK" })), reason: "iface-stat eth0 refused: Iface does not exist" },
    {
      name: "hostile interface name is escaped in the reason",
      handler: (req, s) => {
        const r = req as { version?: string; command?: string };
        if (r.version) send(s, { return: "OK" });
        else if (r.command === "iface-list") send(s, { message: { count: 1, ifaces: ["ev\x1b[2Jil\n"] }, return: "OK" });
        else send(s, { message: "no\u202eway", return: "NOK" });
      },
      reason: "iface-stat ev\\x1b[2Jil\\n refused: no\\u202eway",
    },
    {
      name: "too many interfaces",
      handler: except("iface-list", (_r, s) => send(s, { message: { count: 65, ifaces: Array.from({ length: 65 }, (_, i) => `e${i}`) }, return: "OK" })),
      reason: "iface-list: unexpected answer at message.count: more than 64 interfaces",
    },
    {
      name: "count disagrees with the list",
      handler: except("iface-list", (_r, s) => send(s, { message: { count: 2, ifaces: ["eth0"] }, return: "OK" })),
      reason: "iface-list: unexpected answer at message: count does not match the number of interfaces",
    },
    {
      name: "counter of the wrong type",
      handler: except("iface-stat", (_r, s) => send(s, { message: { pkts: "10", "invalid-checksums": 0, drop: 0 }, return: "OK" })),
      reason: 'iface-stat eth0: unexpected answer at message.pkts: Invalid type: Expected number but received "10"',
    },
    {
      name: "negative counter",
      handler: except("iface-stat", (_r, s) => send(s, { message: { pkts: 1, "invalid-checksums": 0, drop: -1 }, return: "OK" })),
      reason: "iface-stat eth0: unexpected answer at message.drop: Invalid value: Expected >=0 but received -1",
    },
    {
      name: "two lines for one request",
      handler: except("iface-list", (_r, s) => s.write('{"message":{"count":1,"ifaces":["eth0"]},"return":"OK"}\n{"return":"OK"}\n')),
      reason: "iface-stat eth0: suricata sent a line nobody asked for",
    },
  ];

  for (const row of table) {
    test(`protocol: ${row.name}`, async () => {
      fake = await startFakeSuricata(path, row.handler);
      const t0 = performance.now();
      const r = await client(row.options).collect();
      const elapsed = performance.now() - t0;
      expect(r.ok).toBe(false);
      if (r.ok) return;
      const prefix = `suricata socket ${path}: `;
      expect(r.reason.startsWith(prefix)).toBe(true);
      const rest = r.reason.slice(prefix.length);
      if (typeof row.reason === "string") expect(rest).toBe(row.reason);
      else expect(rest).toMatch(row.reason);
      expect(elapsed).toBeLessThan(1500);
    });
  }

  test("a hostile __proto__ interface stays a plain key", async () => {
    fake = await startFakeSuricata(path, suricataLike(JSON.parse('{"__proto__": {"pkts": 4}}')));
    const r = await client().collect();
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(Object.keys(r.stats)).toEqual(["__proto__"]);
    expect(Object.getPrototypeOf(r.stats)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(r.stats, "__proto__")?.value).toEqual({ packets: 4, drop: 0, invalidchecksums: 0 });
  });

  test("shutdown signal ends a pending collection at once and later ones too", async () => {
    fake = await startFakeSuricata(path, except("iface-list", () => {}));
    const shutdown = new AbortController();
    const c = client({ signal: shutdown.signal, exchangeTimeoutMs: 5000 });
    const pending = c.collect();
    await waitUntil("the iface-list request", async () => fake!.requests.length === 2);
    shutdown.abort();
    expect(await pending).toEqual({ ok: false, reason: `suricata socket ${path}: iface-list: client shut down` });
    expect(await c.collect()).toEqual({ ok: false, reason: `suricata socket ${path}: client shut down` });
    expect(fake.connections()).toBe(1);
  });
});

// ---------------------------------------------------------------------------------------------
// Real suricata 7 in a network namespace, capturing with af-packet on one end of a veth pair.

const env = needs([...HARNESS_TOOLS, "suricata"]);

describe.skipIf(env.skip)("SuricataClient against real suricata 7", () => {
  const suffix = randomBytes(3).toString("hex");
  const nsIds = `fct-ids-${suffix}-a`;
  const nsPeer = `fct-ids-${suffix}-b`;
  const iface = "ids0";
  let dir: string;
  let socketPath: string;
  let suricata: ChildProcess | undefined;
  let exited: Promise<number | null> | undefined;

  const must = async (argv: string[], stdin?: string) => {
    const r = await runCommand(argv, stdin === undefined ? {} : { stdin });
    if (r.code !== 0) throw new Error(`\`${argv.join(" ")}\` failed (${r.code}): ${r.stderr}`);
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "fct-ids-"));
    socketPath = join(dir, "command.socket");
    const config = readFileSync(new URL("../fixtures/suricata/suricata.yaml.in", import.meta.url), "utf8")
      .replaceAll("@DIR@", dir)
      .replaceAll("@IFACE@", iface);
    writeFileSync(join(dir, "suricata.yaml"), config);
    writeFileSync(join(dir, "empty.rules"), "");
    // Probe: a burst of UDP datagrams to the discard port; no listener needed, suricata sees them anyway.
    writeFileSync(
      join(dir, "udp-burst.mjs"),
      `import dgram from "node:dgram";
const s = dgram.createSocket("udp4");
let n = 0;
const next = () => (n++ < 20 ? s.send("fct-ids-probe", 9, "10.0.9.1", next) : s.close());
next();
`,
    );
    await must(["ip", "netns", "add", nsIds]);
    await must(["ip", "netns", "add", nsPeer]);
    await must(["ip", "-n", nsIds, "-batch", "-"], [
      `link add ${iface} type veth peer name ids1 netns ${nsPeer}`,
      `address add 10.0.9.1/24 dev ${iface}`,
      "link set lo up",
      `link set ${iface} up`,
    ].join("\n") + "\n");
    await must(["ip", "-n", nsPeer, "-batch", "-"], "address add 10.0.9.2/24 dev ids1\nlink set lo up\nlink set ids1 up\n");
  }, 30_000);

  afterAll(async () => {
    if (suricata && suricata.exitCode === null && suricata.signalCode === null) {
      suricata.kill("SIGKILL");
      await exited;
    }
    for (const ns of [nsIds, nsPeer]) {
      const pids = await runCommand(["ip", "netns", "pids", ns]);
      for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) {
        try {
          process.kill(Number(pid), "SIGKILL");
        } catch {
          // gone already
        }
      }
      await runCommand(["ip", "netns", "del", ns]);
    }
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  const burst = () => {
    const runtime = basename(process.execPath).startsWith("deno") ? [process.execPath, "run", "-A"] : [process.execPath];
    return must(["ip", "netns", "exec", nsPeer, ...runtime, join(dir, "udp-burst.mjs")]);
  };

  test("reports packets on the captured interface, then a clear reason once suricata stops", async () => {
    // `ip netns exec` execs suricata, so the child's pid is suricata's own.
    suricata = spawn("ip", [
      "netns", "exec", nsIds, "suricata", "-c", join(dir, "suricata.yaml"), "--af-packet", "-S", join(dir, "empty.rules"), "-l", dir,
    ], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    suricata.stderr?.on("data", (b: Buffer) => (stderr += b.toString()));
    const child = suricata;
    exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
    const logs = () => `stderr: ${stderr}\nlog: ${existsSync(join(dir, "suricata.log")) ? readFileSync(join(dir, "suricata.log"), "utf8") : "(none)"}`;

    const c = new SuricataClient({ socketPath });
    try {
      await waitUntil("suricata's command socket", async () => {
        if (child.exitCode !== null) throw new Error(`suricata exited with ${child.exitCode}\n${logs()}`);
        return existsSync(socketPath);
      }, 30_000, 50);

      let last: Awaited<ReturnType<SuricataClient["collect"]>> | undefined;
      await waitUntil("packets counted on ids0", async () => {
        await burst();
        last = await c.collect();
        return last.ok && (last.stats[iface]?.packets ?? 0) > 0;
      }, 30_000, 100).catch((e) => {
        throw new Error(`${e}; last result ${JSON.stringify(last)}\n${logs()}`);
      });
      expect(last?.ok).toBe(true);
      if (!last?.ok) return;
      expect(Object.keys(last.stats)).toEqual([iface]);
      const s = last.stats[iface]!;
      expect(s.packets).toBeGreaterThan(0);
      expect(s.drop).toBe(0);
      expect(Number.isInteger(s.invalidchecksums) && s.invalidchecksums >= 0).toBe(true);

      // Counters move with traffic on the same, kept connection.
      const before = s.packets;
      await waitUntil("the packet counter to move", async () => {
        await burst();
        const r = await c.collect();
        return r.ok && (r.stats[iface]?.packets ?? 0) > before;
      }, 30_000, 100);
      expect(c.connected).toBe(true);

      child.kill("SIGTERM");
      expect(await exited).toBe(0);
      // suricata leaves the socket file behind: nobody listens on it any more.
      expect(await c.collect()).toEqual({
        ok: false,
        reason: `suricata socket ${socketPath}: ECONNREFUSED (is suricata running with unix-command enabled?)`,
      });
      rmSync(socketPath, { force: true });
      expect(await c.collect()).toEqual({
        ok: false,
        reason: `suricata socket ${socketPath}: ENOENT (is suricata running with unix-command enabled?)`,
      });
    } finally {
      c.close();
    }
  }, 90_000);
});
