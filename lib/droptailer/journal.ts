/**
 * Reads the kernel's packet log from the systemd journal (SPEC §10, the source
 * where journald runs), following it from a journal cursor.
 *
 * **Why `journalctl` and not the files:** the journal file format is complex
 * and versioned (hash tables, entry arrays, compact mode, zstd/xz/lz4 compressed
 * objects, sealing, files rotated and vacuumed under us, new incompatible
 * header flags with every few systemd releases). `journalctl` is on every
 * systemd host, always of the version that wrote the files, and already does
 * the follow (inotify), cursor-seek and rotation logic. A native reader would
 * be a binary parser we would have to keep in step with systemd forever.
 *
 * **Invocation** (one long-running child, spawned directly, killed on abort):
 * ```
 * journalctl --output=json --all --no-pager --follow
 *            [--directory=DIR | --file=F]
 *            (--after-cursor=C | --lines=all)
 *            _TRANSPORT=kernel
 * ```
 * No `--boot`: a cursor spans boots, so drops logged just before a reboot are
 * still shipped after it. `--all` prints every field in full (and a non-UTF-8
 * field as an array of bytes instead of `null`). One JSON object per line.
 *
 * **Start position:** with `after` (a stored cursor), after that entry. Without
 * one, "the current end" is resolved to a concrete cursor first, with a
 * one-shot `journalctl … --lines=1 _TRANSPORT=kernel` (no kernel entry at all:
 * every entry is new, `--lines=all`). So the end is fixed the moment the reader
 * starts: an entry written after that is never missed, however slowly the
 * follower comes up (`--follow --lines=0` would race with it).
 *
 * **Only the kernel counts:** an entry is used only if its `_TRANSPORT` is
 * `kernel` — filtered in the journalctl match AND again here. journald sets
 * the trusted `_`-fields itself; a process writing
 * `logger -t kernel "nftables-firewall-dropped: …"` gets `_TRANSPORT=syslog`
 * and `SYSLOG_IDENTIFIER=kernel`, and is never shipped.
 *
 * **Entries:** each line is bounded ({@link JournalReaderOptions.maxLineBytes},
 * default 64 KiB; a longer one is skipped and counted in
 * {@link JournalReader.skipped}), parsed as JSON and checked with a valibot
 * schema (`__CURSOR`, `__REALTIME_TIMESTAMP` µs as a decimal string,
 * `_TRANSPORT`, `MESSAGE` a string or — journald's way of storing non-UTF-8 —
 * an array of bytes, decoded as UTF-8 with U+FFFD for invalid sequences). The
 * drop/accept lines become `{ cursor, event }` via {@link parseDropLine} with
 * `wallUs = __REALTIME_TIMESTAMP`.
 *
 * **Trouble:**
 * - a cursor journalctl rejects (`Failed to seek to cursor`: not a cursor, a
 *   cursor of another format) → the end is resolved again and reading starts
 *   there; reported through `onProblem`. A well-formed cursor whose entry is
 *   gone (journal rotated/vacuumed) or that names another machine's journal is
 *   NOT rejected by journalctl: it seeks to the nearest entry by sequence
 *   number or timestamp and continues from there (nothing is skipped);
 * - journalctl exiting for any other reason → restarted after the last entry
 *   read, with backoff (100 ms doubling to 5 s, reset once an entry arrives),
 *   each exit reported through `onProblem` with the tail of its stderr.
 *
 * @example
 * ```ts
 * import { JournalReader } from "./journal.ts";
 * const ac = new AbortController();
 * const r = new JournalReader({ signal: ac.signal, after: storedCursor, onProblem: (m) => console.warn(m) });
 * for await (const { cursor, event } of r.events()) console.log(cursor, event.fields.SRC, event.fields.ACTION);
 * ```
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import * as v from "valibot";
import { runCommand } from "../exec.ts";
import { type DropEvent, parseDropLine } from "./parse.ts";

export const DEFAULT_JOURNALCTL = "journalctl";
/** Longest JSON line read; a kernel message is below 1 KiB, a whole entry a few KiB. */
export const DEFAULT_MAX_LINE_BYTES = 64 * 1024;
export const BACKOFF_INITIAL_MS = 100;
export const BACKOFF_MAX_MS = 5_000;
const STDERR_KEEP = 4096;
const PROBE_TIMEOUT_MS = 30_000;

/** A drop or accept line of the kernel, with the cursor of its journal entry. */
export interface JournalItem {
  readonly cursor: string;
  readonly event: DropEvent;
}

export interface JournalReaderOptions {
  /** `--directory`: a journal directory instead of the system's (e.g. a mounted host's `/var/log/journal`). */
  readonly directory?: string;
  /** `--file`: one journal file (or a glob journalctl expands). */
  readonly file?: string;
  /** Path of journalctl; default `journalctl` on PATH. */
  readonly journalctl?: string;
  /** Cursor of the last shipped entry; undefined: start at the current end. */
  readonly after?: string;
  /** Stops {@link JournalReader.events} and kills journalctl. */
  readonly signal?: AbortSignal;
  /** Something went wrong but reading goes on (cursor rejected, journalctl exited, bad lines). */
  readonly onProblem?: (message: string) => void;
  /** Default {@link DEFAULT_MAX_LINE_BYTES}. */
  readonly maxLineBytes?: number;
  /** Restart backoff, default 100 ms doubling to 5 s. */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
}

const Bytes = v.array(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(255)));
/** journalctl's JSON: a field is a string, a byte array (non-UTF-8), or an array of those (multi-valued). */
const FieldValue = v.union([v.string(), Bytes, v.array(v.union([v.string(), Bytes]))]);

const EntrySchema = v.object({
  __CURSOR: v.pipe(v.string(), v.minLength(1), v.maxLength(4096)),
  __REALTIME_TIMESTAMP: v.pipe(v.string(), v.regex(/^\d{1,20}$/, "__REALTIME_TIMESTAMP must be decimal µs")),
  _TRANSPORT: v.optional(FieldValue),
  MESSAGE: v.optional(v.nullable(FieldValue)),
});

/** What one JSON line of journalctl says, or a string with the problem. */
export interface JournalEntry {
  readonly cursor: string;
  readonly realtimeUs: bigint;
  /** undefined when missing or multi-valued (then it is not the kernel's). */
  readonly transport: string | undefined;
  /** undefined when missing, null (too large without --all) or multi-valued. */
  readonly message: string | undefined;
}

function single(value: v.InferOutput<typeof FieldValue> | null | undefined): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return value;
  if (value.length === 0 || typeof value[0] === "number") return Buffer.from(value as number[]).toString("utf8");
  return undefined; // several values of one field
}

/** Parses one line of `journalctl --output=json`. Never throws. */
export function parseJournalLine(line: string): JournalEntry | string {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch (e) {
    return `not JSON (${e instanceof Error ? e.message : String(e)})`;
  }
  const r = v.safeParse(EntrySchema, json);
  if (!r.success) return r.issues.map((i) => `${v.getDotPath(i) ?? "(root)"}: ${i.message}`).join("; ");
  const o = r.output;
  return { cursor: o.__CURSOR, realtimeUs: BigInt(o.__REALTIME_TIMESTAMP), transport: single(o._TRANSPORT), message: single(o.MESSAGE) };
}

type From = { readonly cursor: string } | "all";

const shown = (s: string, max = 512): string => JSON.stringify(s.length > max ? `${s.slice(0, max)}…` : s);

export class JournalReader {
  readonly #options: JournalReaderOptions;
  readonly #journalctl: string;
  readonly #maxLine: number;
  #child: ChildProcess | undefined;
  #cursor: string | undefined;
  #skipped = 0;
  #restarts = 0;
  #closed = false;

  constructor(options: JournalReaderOptions = {}) {
    if (options.directory !== undefined && options.file !== undefined) throw new Error("JournalReader: give directory or file, not both");
    this.#options = options;
    this.#journalctl = options.journalctl ?? DEFAULT_JOURNALCTL;
    this.#maxLine = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    this.#cursor = options.after;
    options.signal?.addEventListener("abort", () => this.close(), { once: true });
  }

  /** Cursor of the last entry read (any kernel entry, not only drops), or where reading starts. */
  get cursor(): string | undefined {
    return this.#cursor;
  }
  /** Lines skipped: too long, not JSON, or not of the schema. */
  get skipped(): number {
    return this.#skipped;
  }
  /** How often journalctl was started again (exit or rejected cursor). */
  get restarts(): number {
    return this.#restarts;
  }

  /** The journalctl arguments (without the program) that follow from `from`. */
  followArgs(from: From): string[] {
    return [...this.#baseArgs(), "--follow", ...(from === "all" ? ["--lines=all"] : [`--after-cursor=${from.cursor}`]), "_TRANSPORT=kernel"];
  }

  #baseArgs(): string[] {
    const o = this.#options;
    return ["--output=json", "--all", "--no-pager", ...(o.directory !== undefined ? [`--directory=${o.directory}`] : []), ...(o.file !== undefined ? [`--file=${o.file}`] : [])];
  }

  #problem(message: string): void {
    try {
      this.#options.onProblem?.(message);
    } catch {
      // a reporting callback must not stop the reader
    }
  }

  /** The current end: the cursor of the last kernel entry, "all" if there is none. Throws if journalctl fails. */
  async #end(): Promise<From> {
    const r = await runCommand([this.#journalctl, ...this.#baseArgs(), "--lines=1", "_TRANSPORT=kernel"], { timeoutMs: PROBE_TIMEOUT_MS });
    if (r.code !== 0) throw new Error(`journalctl exited with ${r.code}: ${shown(r.stderr.trim())}`);
    const lines = r.stdout.split("\n").filter((l) => l.trim() !== "");
    const last = lines.at(-1);
    if (last === undefined) return "all";
    const e = parseJournalLine(last);
    if (typeof e === "string") throw new Error(`journalctl printed an unusable entry: ${e}`);
    return { cursor: e.cursor };
  }

  async #sleep(ms: number): Promise<void> {
    const signal = this.#options.signal;
    if (this.#closed) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener("abort", done, { once: true });
    });
  }

  /** Follows the journal until the signal aborts (or {@link close}). */
  async *events(): AsyncGenerator<JournalItem, void, undefined> {
    const initialMs = this.#options.backoff?.initialMs ?? BACKOFF_INITIAL_MS;
    const maxMs = this.#options.backoff?.maxMs ?? BACKOFF_MAX_MS;
    let backoff = initialMs;
    let from: From | undefined = this.#cursor !== undefined ? { cursor: this.#cursor } : undefined;
    let first = true;
    let rejected: string | undefined; // reported once the new start is known
    while (!this.#closed && !this.#options.signal?.aborted) {
      if (!first) this.#restarts++;
      first = false;
      if (from === undefined) {
        try {
          from = await this.#end();
          if (from !== "all") this.#cursor = from.cursor;
          if (rejected !== undefined) this.#problem(rejected);
          rejected = undefined;
        } catch (e) {
          this.#problem(`cannot find the end of the journal (${e instanceof Error ? e.message : String(e)}); retrying in ${backoff} ms`);
          await this.#sleep(backoff);
          backoff = Math.min(backoff * 2, maxMs);
          continue;
        }
      }
      const run = this.#follow(from);
      let got = false;
      for await (const item of run.items) {
        if (!got) {
          got = true;
          backoff = initialMs;
        }
        if (item !== null) yield item;
      }
      if (this.#closed || this.#options.signal?.aborted) break;
      const { code, stderr } = await run.exit;
      const why = `${code === null ? "was killed" : code === -1 ? "could not be started" : `exited with ${code}`}${stderr.trim() === "" ? "" : `: ${shown(stderr.trim())}`}`;
      if (from !== "all" && code !== 0 && /cursor/i.test(stderr) && this.#cursor === from.cursor && !got) {
        rejected = `the journal rejected the drop log cursor ${shown(from.cursor)} (journalctl ${why}); starting from the current end of the journal, drops logged before now that were not shipped are lost`;
        this.#cursor = undefined;
        from = undefined;
        continue; // no backoff: the next start does not use the cursor
      }
      const next: From | undefined = this.#cursor !== undefined ? { cursor: this.#cursor } : from;
      this.#problem(`journalctl ${why}; restarting in ${backoff} ms ${next === undefined || next === "all" ? "from the start" : "after the last entry read"}`);
      await this.#sleep(backoff);
      backoff = Math.min(backoff * 2, maxMs);
      from = next;
    }
  }

  /**
   * Starts one journalctl; `items` yields an item per drop line and `null` for
   * every other entry read (so the caller sees progress), and ends with its stdout.
   */
  #follow(from: From): { items: AsyncGenerator<JournalItem | null, void, undefined>; exit: Promise<{ code: number | null; stderr: string }> } {
    const child = spawn(this.#journalctl, this.followArgs(from), { stdio: ["ignore", "pipe", "pipe"] });
    this.#child = child;
    let stderr = "";
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (s: string) => {
      stderr = (stderr + s).slice(-STDERR_KEEP);
    });
    const exit = new Promise<{ code: number | null; stderr: string }>((resolve) => {
      child.on("error", (e) => {
        stderr += `${e.message}\n`;
        resolve({ code: -1, stderr });
      });
      child.on("close", (code) => resolve({ code, stderr }));
    });
    if (this.#closed) child.kill("SIGTERM");
    const self = this;
    async function* items(): AsyncGenerator<JournalItem | null, void, undefined> {
      let pending: Buffer[] = [];
      let pendingLen = 0;
      let overlong = false;
      try {
        const stdout = child.stdout;
        if (!stdout) return;
        const chunks = (async function* () {
          try {
            for await (const chunk of stdout as AsyncIterable<Buffer>) yield chunk;
          } catch {
            // stdout closed early (journalctl failed to start or was killed): `exit` says why
          }
        })();
        for await (const chunk of chunks) {
          let start = 0;
          for (;;) {
            const nl = chunk.indexOf(0x0a, start);
            if (nl < 0) {
              const rest = chunk.subarray(start);
              if (!overlong && pendingLen + rest.length > self.#maxLine) {
                overlong = true;
                pending = [];
                pendingLen = 0;
              }
              if (!overlong && rest.length > 0) {
                pending.push(rest);
                pendingLen += rest.length;
              }
              break;
            }
            const part = chunk.subarray(start, nl);
            start = nl + 1;
            if (overlong || pendingLen + part.length > self.#maxLine) {
              self.#skip(`a journal entry longer than ${self.#maxLine} bytes was skipped`);
            } else {
              const line = Buffer.concat([...pending, part]).toString("utf8");
              const item = self.#line(line);
              if (item !== undefined) yield item;
            }
            overlong = false;
            pending = [];
            pendingLen = 0;
          }
        }
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
        if (self.#child === child) self.#child = undefined;
      }
    }
    return { items: items(), exit };
  }

  #skip(why: string): void {
    this.#skipped++;
    if (this.#skipped === 1 || this.#skipped % 1000 === 0) this.#problem(`${why} (${this.#skipped} skipped so far)`);
  }

  /** An item for a drop line, null for another entry that was read, undefined for a line that is not an entry. */
  #line(line: string): JournalItem | null | undefined {
    if (line.trim() === "") return undefined;
    const e = parseJournalLine(line);
    if (typeof e === "string") {
      this.#skip(`journalctl printed an unusable line (${e})`);
      return undefined;
    }
    if (e.cursor === this.#cursor) return null; // the entry we resume after (a foreign cursor's nearest entry)
    this.#cursor = e.cursor;
    if (e.transport !== "kernel" || e.message === undefined) return null;
    const event = parseDropLine(e.message, { wallUs: e.realtimeUs });
    return event ? { cursor: e.cursor, event } : null;
  }

  /** Kills journalctl; {@link events} ends. */
  close(): void {
    this.#closed = true;
    const child = this.#child;
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
  }
}
