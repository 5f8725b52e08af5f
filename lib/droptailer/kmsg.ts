/**
 * Reads the kernel's packet log from `/dev/kmsg` (SPEC §10, the source when
 * journald does not run), following it from a sequence number.
 *
 * **Record format** (Linux `Documentation/ABI/testing/dev-kmsg`): every
 * `read()` returns one record `pri,seq,usec,flags[,…];text\n`, optionally
 * followed by continuation lines ` KEY=value\n` (device metadata, ignored).
 * `pri` is `facility << 3 | level`; `seq` counts every record since boot,
 * from 0, without gaps; `usec` is the kernel's monotonic clock (printk's
 * `local_clock()`) in µs; the text has every byte below 0x20, at or above
 * 0x7f and `\` escaped as `\xNN` (undone here).
 *
 * **Only the kernel counts** (facility `kern`, `pri >> 3 === 0`). A process
 * that writes to `/dev/kmsg` gets facility `user` (1): `devkmsg_write()` in
 * `kernel/printk/printk.c` starts with `facility = 1 /* LOG_USER *\/` and
 * takes the facility of a `<N>` prefix only `if (LOG_FACILITY(u) != 0)`, "to
 * be able to reliably distinguish kernel-generated messages from
 * userspace-injected ones" — so userspace cannot forge facility 0, not even
 * root writing `<4>nftables-firewall-dropped: …`. (Root can still load a
 * kernel module; that is outside what a log reader can defend against.)
 *
 * **Resume:** Node has no `lseek()`, and `SEEK_DATA` only skips what
 * `dmesg -c` cleared, so positioning is by reading: records with
 * `seq <= resume.seq` are skipped. A stored position of another boot (the
 * boot id in `/proc/sys/kernel/random/boot_id` differs) starts at the oldest
 * record the buffer still holds. Without a position the reader starts at the
 * current end (everything already in the buffer is skipped).
 *
 * **Lost records:** seq has no gaps, so any gap (including the `EPIPE` a read
 * returns when the ring buffer overwrote the records ahead of us; the next
 * read continues at the oldest record) is counted into {@link KmsgReader.lost}
 * and reported to `onLost`.
 *
 * **Timestamps:** `wall = now − (monotonic_now − usec)` with `monotonic_now`
 * from `/proc/uptime` (Bun's `process.hrtime` counts from process start, not
 * from boot, so it cannot be used; `Date.now() − process.uptime()` is the
 * process's start, not the boot). `/proc/uptime` has 10 ms resolution and
 * truncates, so half a tick (5 ms) is added: the absolute error is about
 * ±5 ms plus `Date.now()`'s 1 ms; the µs digits of `usec` are kept, so order
 * and spacing between events are exact. `/proc/uptime` is CLOCK_BOOTTIME
 * (NTP-disciplined) while printk stamps with the raw `local_clock()`; on a
 * machine up for months the two drift apart by the clock's frequency error
 * (the same limitation as `dmesg -T`). A result later than now is clamped to
 * now. The clock is injectable ({@link KmsgReaderOptions.bootWallUs}).
 *
 * **Never blocks:** the device is opened `O_NONBLOCK`; a read returns one
 * record or `EAGAIN` at once (a regular fixture file returns 0 at its end).
 * A drain reads at most {@link KmsgReaderOptions.batch} records and then
 * yields to the event loop; at `EAGAIN` it waits `pollMs` (`fs.watch` sees
 * nothing on a character device).
 *
 * @example
 * ```ts
 * import { KmsgReader } from "./kmsg.ts";
 * const ac = new AbortController();
 * const r = new KmsgReader({ signal: ac.signal, onLost: (n) => console.warn(`${n} kernel records lost`) });
 * await r.open();
 * for await (const { seq, event } of r.events()) console.log(seq, event.fields.SRC, event.fields.ACTION);
 * ```
 * @module
 */
import { closeSync, constants, openSync, readFileSync, readSync } from "node:fs";
import { type DropEvent, parseDropLine } from "./parse.ts";

export const DEFAULT_KMSG_PATH = "/dev/kmsg";
export const DEFAULT_BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id";
export const DEFAULT_UPTIME_PATH = "/proc/uptime";

/** One record's header and message. */
export interface KmsgRecord {
  readonly facility: number;
  readonly level: number;
  readonly seq: bigint;
  readonly usec: bigint;
  readonly flags: string;
  readonly text: string;
}

/** Undoes the kernel's `\xNN` escaping; the bytes are decoded as UTF-8. */
export function unescapeKmsg(text: string): string {
  if (!text.includes("\\x")) return text;
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5c && text[i + 1] === "x" && /^[0-9a-fA-F]{2}$/.test(text.slice(i + 2, i + 4))) {
      bytes.push(Number.parseInt(text.slice(i + 2, i + 4), 16));
      i += 3;
    } else if (c < 0x80) {
      bytes.push(c);
    } else {
      bytes.push(...Buffer.from(text[i] ?? "", "utf8"));
    }
  }
  return Buffer.from(bytes).toString("utf8");
}

const HEADER = /^(\d{1,10}),(\d{1,20}),(\d{1,20}),([^,;]*)(?:,[^;]*)?$/;

/** Parses the first line of a record (without continuation lines); null if it is not one. */
export function parseKmsgRecord(line: string): KmsgRecord | null {
  const semi = line.indexOf(";");
  if (semi < 0) return null;
  const m = HEADER.exec(line.slice(0, semi));
  if (!m) return null;
  const pri = Number(m[1]);
  const nl = line.indexOf("\n", semi);
  return {
    facility: pri >> 3,
    level: pri & 7,
    seq: BigInt(m[2] ?? "0"),
    usec: BigInt(m[3] ?? "0"),
    flags: m[4] ?? "",
    text: unescapeKmsg(line.slice(semi + 1, nl < 0 ? undefined : nl)),
  };
}

/** A drop or accept line of the kernel, with where it sits in the log. */
export interface KmsgItem {
  readonly bootId: string;
  readonly seq: bigint;
  readonly event: DropEvent;
}

/** The low-level file operations, injectable for tests (EPIPE, EAGAIN). */
export interface KmsgIo {
  open(path: string): number;
  /** Bytes read into `buf`; 0 at a regular file's end; throws `{ code: "EAGAIN" | "EPIPE" | … }`. */
  read(fd: number, buf: Buffer): number;
  close(fd: number): void;
}

export const nodeKmsgIo: KmsgIo = {
  open: (path) => openSync(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0)),
  read: (fd, buf) => readSync(fd, buf, 0, buf.length, null),
  close: (fd) => closeSync(fd),
};

export interface KmsgReaderOptions {
  /** Default `/dev/kmsg`. */
  readonly path?: string;
  readonly bootIdPath?: string;
  readonly uptimePath?: string;
  /** The last shipped position; undefined: start at the current end. */
  readonly resume?: { readonly bootId: string; readonly seq: bigint };
  /** Stops {@link KmsgReader.events} and closes the device. */
  readonly signal?: AbortSignal;
  /** Wait after the log ran dry, default 200 ms. */
  readonly pollMs?: number;
  /** Records read per turn of the event loop, default 512. */
  readonly batch?: number;
  /** Wall clock of the kernel's monotonic zero, µs since the epoch; default from `/proc/uptime`. */
  readonly bootWallUs?: () => bigint;
  /** Records lost (overwritten before they were read, or before a resume position could be reached). */
  readonly onLost?: (count: bigint, why: string) => void;
  readonly io?: KmsgIo;
}

/** How {@link KmsgReader.open} positioned itself. */
export interface KmsgStart {
  readonly bootId: string;
  /** `end`: no position; `resume`: after the stored seq; `new-boot`: stored position was of another boot. */
  readonly mode: "end" | "resume" | "new-boot";
  /** The last seq before the first record that will be emitted (undefined: the buffer was empty). */
  readonly afterSeq: bigint | undefined;
}

/** Reads `/proc/uptime` and turns it into the wall clock of boot (see the module doc for precision). */
export function bootWallUsFromUptime(uptimePath = DEFAULT_UPTIME_PATH): bigint {
  const text = readFileSync(uptimePath, "utf8");
  const m = /^(\d+)(?:\.(\d{1,6}))?\s/.exec(text);
  if (!m) throw new Error(`cannot parse ${uptimePath}: ${JSON.stringify(text.slice(0, 40))}`);
  const frac = (m[2] ?? "").padEnd(6, "0");
  const uptimeUs = BigInt(m[1] ?? "0") * 1_000_000n + BigInt(frac);
  const halfTick = (m[2]?.length ?? 0) === 2 ? 5_000n : 0n;
  return BigInt(Date.now()) * 1000n - uptimeUs - halfTick;
}

const RECORD_BUF = 16 * 1024; // a record is at most 8 KiB (CONSOLE_EXT_LOG_MAX); a smaller buffer gets EINVAL

const errno = (e: unknown): string | undefined => (e as NodeJS.ErrnoException | undefined)?.code;

export class KmsgReader {
  readonly #path: string;
  readonly #bootIdPath: string;
  readonly #options: KmsgReaderOptions;
  readonly #io: KmsgIo;
  readonly #buf = Buffer.alloc(RECORD_BUF);
  #fd: number | undefined;
  #bootId = "";
  #lastSeq: bigint | undefined;
  #lost = 0n;
  #pending = ""; // a regular file may hand out half a record
  #skipUntil: bigint | undefined; // skip records with seq <= this (resume)
  #skipping = false; // positioning at the end: gaps there are before our start, not losses

  constructor(options: KmsgReaderOptions = {}) {
    this.#options = options;
    this.#path = options.path ?? DEFAULT_KMSG_PATH;
    this.#bootIdPath = options.bootIdPath ?? DEFAULT_BOOT_ID_PATH;
    this.#io = options.io ?? nodeKmsgIo;
    options.signal?.addEventListener("abort", () => this.close(), { once: true });
  }

  get bootId(): string {
    return this.#bootId;
  }
  /** seq of the last record read (any facility). */
  get lastSeq(): bigint | undefined {
    return this.#lastSeq;
  }
  /** Records known lost since open. */
  get lost(): bigint {
    return this.#lost;
  }

  /** Opens the device and positions it (reads and skips what lies before the start). */
  async open(): Promise<KmsgStart> {
    if (this.#fd !== undefined) throw new Error("KmsgReader is already open");
    this.#bootId = readFileSync(this.#bootIdPath, "utf8").trim();
    this.#fd = this.#io.open(this.#path);
    const resume = this.#options.resume;
    if (resume && resume.bootId === this.#bootId) {
      this.#skipUntil = resume.seq;
      this.#lastSeq = resume.seq;
      return { bootId: this.#bootId, mode: "resume", afterSeq: resume.seq };
    }
    if (resume) {
      this.#lastSeq = -1n; // seq starts at 0 in every boot: anything before the oldest record is lost
      return { bootId: this.#bootId, mode: "new-boot", afterSeq: undefined };
    }
    // no position: skip everything there is now
    this.#skipping = true;
    for (;;) {
      const n = this.#readBatch(() => {}, this.#options.batch ?? 512);
      if (n.dry) break;
      await new Promise((r) => setImmediate(r));
    }
    this.#skipping = false;
    return { bootId: this.#bootId, mode: "end", afterSeq: this.#lastSeq };
  }

  /**
   * Reads what is there now, at most `max` records; never waits.
   * Returns the drop/accept lines among them.
   */
  drain(max = this.#options.batch ?? 512): KmsgItem[] {
    const out: KmsgItem[] = [];
    this.#readBatch((item) => out.push(item), max);
    return out;
  }

  /** Follows the log until the signal aborts (or {@link close}). Opens first if needed. */
  async *events(): AsyncGenerator<KmsgItem, void, undefined> {
    if (this.#fd === undefined && !this.#options.signal?.aborted) await this.open();
    const pollMs = this.#options.pollMs ?? 200;
    while (this.#fd !== undefined) {
      const items: KmsgItem[] = [];
      const { dry } = this.#readBatch((item) => items.push(item), this.#options.batch ?? 512);
      for (const item of items) yield item;
      if (this.#fd === undefined) break;
      await new Promise<void>((resolve) => {
        const signal = this.#options.signal;
        const done = () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", done);
          resolve();
        };
        const timer = setTimeout(done, dry ? pollMs : 0);
        signal?.addEventListener("abort", done, { once: true });
      });
    }
  }

  close(): void {
    const fd = this.#fd;
    this.#fd = undefined;
    if (fd !== undefined) {
      try {
        this.#io.close(fd);
      } catch {
        // already closed
      }
    }
  }

  #readBatch(emit: (item: KmsgItem) => void, max: number): { dry: boolean } {
    let count = 0;
    let bootWall: bigint | undefined;
    while (this.#fd !== undefined && count < max) {
      let n: number;
      try {
        n = this.#io.read(this.#fd, this.#buf);
      } catch (e) {
        const code = errno(e);
        if (code === "EAGAIN" || code === "EWOULDBLOCK") return { dry: true };
        if (code === "EPIPE") continue; // overwritten; the next read gives the oldest record, the seq gap counts it
        if (code === "EINTR") continue;
        throw e;
      }
      if (n === 0) return { dry: true }; // end of a regular file
      this.#pending += this.#buf.toString("latin1", 0, n);
      let nl: number;
      while ((nl = this.#pending.indexOf("\n")) >= 0) {
        const line = this.#pending.slice(0, nl);
        this.#pending = this.#pending.slice(nl + 1);
        if (line.startsWith(" ") || line === "") continue; // continuation line
        count++;
        const rec = parseKmsgRecord(line);
        if (!rec) continue;
        if (this.#skipUntil !== undefined) {
          if (rec.seq <= this.#skipUntil) continue;
          this.#skipUntil = undefined;
        }
        this.#account(rec.seq);
        if (rec.facility !== 0) continue; // userspace (LOG_USER or other), never the kernel's packet log
        bootWall ??= (this.#options.bootWallUs ?? (() => bootWallUsFromUptime(this.#options.uptimePath)))();
        const nowUs = BigInt(Date.now()) * 1000n;
        let wallUs = bootWall + rec.usec;
        if (wallUs > nowUs) wallUs = nowUs;
        const event = parseDropLine(rec.text, { wallUs });
        if (event) emit({ bootId: this.#bootId, seq: rec.seq, event });
      }
    }
    return { dry: false };
  }

  #account(seq: bigint): void {
    const last = this.#lastSeq;
    if (!this.#skipping && last !== undefined && seq > last + 1n) {
      const gap = seq - last - 1n;
      this.#lost += gap;
      this.#options.onLost?.(gap, last < 0n ? `records of this boot before seq ${seq} are no longer in the kernel's buffer` : `records ${last + 1n}..${seq - 1n} were overwritten in the kernel's buffer before they were read`);
    }
    this.#lastSeq = seq;
  }
}
