/**
 * Parses one kernel log line of the ruleset's packet log (SPEC §10) into the
 * field map the droptailer server expects, the same map metal-stack's
 * droptailer client sends (`pkg/client/forwarder.go`):
 *
 * - the line must START with `nftables-firewall-dropped: ` (ACTION `drop`) or
 *   `nftables-firewall-accepted: ` (ACTION `accept`); anything else is `null`;
 * - the rest is split on whitespace; each token `KEY=VALUE` becomes
 *   `fields[KEY] = VALUE`, where VALUE is everything after the FIRST `=` (the
 *   Go client keeps only up to a second `=`; SPEC §10 keeps the whole value),
 *   `MAC=` gives `""`; a bare token (`SYN`, `DF`, `ACK`, `[SRC=…` is a key
 *   `[SRC` as in the Go client) maps to `""`;
 * - a key seen twice keeps the LAST value (the Go client does the same; an ICMP
 *   echo's `ID=` overwrites the IP header's `ID=`);
 * - `ACTION` is set last, so a forged `ACTION=` token inside the line can never
 *   override it.
 *
 * Bounds: a line is cut at {@link MAX_LINE_CHARS} (the last, possibly cut,
 * token is then dropped), at most {@link MAX_FIELDS} fields are kept, a token
 * with an empty key (`=x`) is skipped.
 *
 * The timestamp is kept in microseconds since the epoch as a bigint
 * (`timestampUs`, what protobuf's `Timestamp{seconds,nanos}` needs without
 * rounding) and as a `Date` (milliseconds, for people and logs).
 *
 * @example
 * ```ts
 * import { parseDropLine } from "./parse.ts";
 * const e = parseDropLine("nftables-firewall-dropped: IN=vrf104009 OUT= SRC=192.0.2.2 DST=10.0.1.2 PROTO=TCP DPT=22 SYN", { wallUs: 1_700_000_000_123_456n });
 * // e.fields: { IN: "vrf104009", OUT: "", SRC: "192.0.2.2", DST: "10.0.1.2", PROTO: "TCP", DPT: "22", SYN: "", ACTION: "drop" }
 * // e.timestampUs: 1700000000123456n
 * ```
 * @module
 */

/** Prefix of a dropped packet's log line (lib/ruleset/render.ts DROP_LOG_PREFIX). */
export const DROP_PREFIX = "nftables-firewall-dropped: ";
/** Prefix of an accepted connection's log line (`logacceptedconnections`). */
export const ACCEPT_PREFIX = "nftables-firewall-accepted: ";

/** Longest line looked at; the kernel's own lines are below 1 KiB (printk's line limit). */
export const MAX_LINE_CHARS = 4096;
/** Most fields kept from one line (a TCP line with options has about 30). */
export const MAX_FIELDS = 64;

export type DropAction = "drop" | "accept";

export interface DropEvent {
  /** When the kernel logged it, microseconds since the Unix epoch. */
  readonly timestampUs: bigint;
  /** The same instant as a Date (millisecond precision). */
  readonly timestamp: Date;
  /** Kernel fields plus `ACTION`; a null-prototype object (no `__proto__` surprises). */
  readonly fields: Record<string, string>;
}

/** Where the line's time comes from, first match wins. */
export interface DropTime {
  /** Wall clock in µs since the epoch (a journal's `__REALTIME_TIMESTAMP`). */
  readonly wallUs?: bigint;
  /** Kernel monotonic µs of the record (`/dev/kmsg` usec) … */
  readonly monotonicUs?: bigint | number;
  /** … plus the wall clock of the kernel's monotonic zero, in µs since the epoch. */
  readonly bootWallUs?: bigint;
  /** A Date (ms); used when nothing above is given. Default: now. */
  readonly wallClock?: Date;
}

const PREFIXES: ReadonlyArray<readonly [string, DropAction]> = [[DROP_PREFIX, "drop"], [ACCEPT_PREFIX, "accept"]];

/** Whether UTF-16 code unit `c` is whitespace as the regular expression `\s` sees it. */
function isSpace(c: number): boolean {
  if (c < 128) return c === 32 || (c >= 9 && c <= 13);
  return c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff;
}

/** Microseconds since the epoch for `at` (see {@link DropTime}). */
export function timestampOf(at: DropTime): bigint {
  if (at.wallUs !== undefined) return at.wallUs;
  if (at.monotonicUs !== undefined && at.bootWallUs !== undefined) return at.bootWallUs + BigInt(at.monotonicUs);
  const d = at.wallClock ?? new Date();
  return BigInt(d.getTime()) * 1000n;
}

/** The parsed event, or null for a line that is not one of ours. Never throws. */
export function parseDropLine(text: string, at: DropTime = {}): DropEvent | null {
  let action: DropAction | undefined;
  let rest = "";
  for (const [prefix, a] of PREFIXES) {
    if (text.startsWith(prefix)) {
      action = a;
      rest = text.slice(prefix.length);
      break;
    }
  }
  if (action === undefined) return null;

  let end = rest.length;
  let cut = false;
  if (text.length > MAX_LINE_CHARS) {
    end = Math.max(0, MAX_LINE_CHARS - (text.length - rest.length));
    cut = true;
  }

  // Tokens split on whitespace (as /\s+/ does), scanned in place: this runs for every packet the
  // ruleset logs, thousands a second. Of a cut line the last token is dropped (it may end in the
  // middle of a value), so each token is taken only once the next one is seen.
  const fields: Record<string, string> = Object.create(null);
  let n = 0;
  let i = 0;
  let pending = -1; // start of a token not taken yet
  let pendingEq = -1;
  let pendingEnd = -1;
  const take = (start: number, eq: number, stop: number) => {
    const key = eq < 0 ? rest.slice(start, stop) : rest.slice(start, eq);
    if (key === "" || key === "ACTION") return;
    if (!(key in fields)) {
      if (n >= MAX_FIELDS) return;
      n++;
    }
    fields[key] = eq < 0 ? "" : rest.slice(eq + 1, stop);
  };
  for (;;) {
    while (i < end && isSpace(rest.charCodeAt(i))) i++;
    if (i >= end) break;
    const start = i;
    let eq = -1;
    while (i < end) {
      const c = rest.charCodeAt(i);
      if (isSpace(c)) break;
      if (c === 61 /* = */ && eq < 0) eq = i;
      i++;
    }
    if (!cut) {
      take(start, eq, i);
      continue;
    }
    if (pending >= 0) take(pending, pendingEq, pendingEnd);
    pending = start;
    pendingEq = eq;
    pendingEnd = i;
  }
  fields.ACTION = action;

  const timestampUs = timestampOf(at);
  return { timestampUs, timestamp: new Date(Number(timestampUs / 1000n)), fields };
}
