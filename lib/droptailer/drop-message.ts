/**
 * The droptailer's `proto.Drop` message in protobuf's wire format, encoded directly: a timestamp
 * (`google.protobuf.Timestamp`, field 1) and the fields as a `map<string, string>` (field 2), in
 * the fields' order. One buffer per event; the generated code (`gen/droptailer_pb.ts`) decodes it
 * in the tests, field by field, and writes the same bytes.
 *
 * @example
 * ```ts
 * import { encodeDrop } from "./drop-message.ts";
 * const bytes = encodeDrop({ timestamp: 1_700_000_000_123_456n, fields: { ACTION: "drop", SYN: "" } });
 * console.log(bytes.length); // 38
 * ```
 * @module
 */

/** One kernel drop (or accept) event. */
export interface DropEvent {
  /** Microseconds since the Unix epoch (bigint), or a Date (millisecond precision). */
  readonly timestamp: bigint | Date;
  readonly fields: Readonly<Record<string, string>>;
}

/** The event's time as protobuf's Timestamp: seconds, and nanoseconds in [0, 1e9). */
export function timestampOf(event: DropEvent): { readonly seconds: bigint; readonly nanos: number } {
  if (typeof event.timestamp === "bigint") {
    const us = event.timestamp;
    let rem = us % 1_000_000n;
    let seconds = us / 1_000_000n;
    if (rem < 0n) {
      rem += 1_000_000n;
      seconds -= 1n;
    }
    return { seconds, nanos: Number(rem) * 1000 };
  }
  const ms = event.timestamp.getTime();
  const s = Math.floor(ms / 1000);
  return { seconds: BigInt(s), nanos: (ms - s * 1000) * 1_000_000 };
}

const varintSize = (v: number): number => (v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5);

/** int64 as a varint: negative values take ten bytes (two's complement). */
function int64Bytes(v: bigint): number[] {
  let u = BigInt.asUintN(64, v);
  const out: number[] = [];
  while (u >= 0x80n) {
    out.push(Number(u & 0x7fn) | 0x80);
    u >>= 7n;
  }
  out.push(Number(u));
  return out;
}

let scratch = Buffer.allocUnsafe(64 * 1024);
const MAX_SAFE_US = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Encodes one event as `proto.Drop`. The common event (a kernel line: short ASCII fields, a time
 * after 1970) is written in one pass into a scratch buffer with one-byte lengths; anything longer
 * takes the exact two-pass way.
 */
export function encodeDrop(event: DropEvent): Uint8Array {
  return encodeShort(event) ?? encodeExact(event);
}

/** The one-pass way, or undefined when a length needs more than one byte or the time is negative. */
function encodeShort(event: DropEvent): Uint8Array | undefined {
  let seconds: number;
  let nanos: number;
  if (typeof event.timestamp === "bigint") {
    const us = event.timestamp;
    if (us < 0n || us > MAX_SAFE_US) return undefined;
    const n = Number(us);
    seconds = Math.floor(n / 1_000_000);
    nanos = (n - seconds * 1_000_000) * 1000;
  } else {
    const ms = event.timestamp.getTime();
    if (!(ms >= 0)) return undefined;
    seconds = Math.floor(ms / 1000);
    nanos = (ms - seconds * 1000) * 1_000_000;
  }
  let out = scratch;
  let p = 0;
  out[p++] = 0x0a; // field 1, length-delimited
  const tsAt = p++;
  if (seconds !== 0) {
    out[p++] = 0x08;
    for (let v = seconds; ; ) {
      // Beyond 32 bits: no bit operators.
      const low = v % 128;
      v = (v - low) / 128;
      if (v === 0) {
        out[p++] = low;
        break;
      }
      out[p++] = low | 0x80;
    }
  }
  if (nanos !== 0) {
    out[p++] = 0x10;
    for (let v = nanos; ; v >>>= 7) {
      if (v < 0x80) {
        out[p++] = v;
        break;
      }
      out[p++] = (v & 0x7f) | 0x80;
    }
  }
  out[tsAt] = p - tsAt - 1;
  const fields = event.fields;
  for (const k in fields) {
    const v = fields[k] as string;
    // UTF-8 takes at most three bytes per UTF-16 unit.
    const worst = p + 6 + 3 * (k.length + v.length);
    if (worst > out.length) {
      if (worst > 1 << 20) return undefined;
      const grown = Buffer.allocUnsafe(Math.max(worst, out.length * 2));
      out.copy(grown, 0, 0, p);
      out = scratch = grown;
    }
    const entry = p;
    out[p] = 0x12; // field 2: one map entry
    out[p + 2] = 0x0a; // key
    const kl = out.write(k, p + 4, "utf8");
    if (kl >= 0x80) return undefined;
    out[p + 3] = kl;
    p += 4 + kl;
    out[p] = 0x12; // value
    const vl = out.write(v, p + 2, "utf8");
    if (vl >= 0x80) return undefined;
    out[p + 1] = vl;
    p += 2 + vl;
    const length = p - entry - 2;
    if (length >= 0x80) return undefined;
    out[entry + 1] = length;
  }
  return Uint8Array.prototype.slice.call(out, 0, p);
}

function encodeExact(event: DropEvent): Uint8Array {
  const { seconds, nanos } = timestampOf(event);
  const secondBytes = seconds === 0n ? [] : int64Bytes(seconds);
  const tsLength = (secondBytes.length ? 1 + secondBytes.length : 0) + (nanos ? 1 + varintSize(nanos) : 0);
  const entries = Object.entries(event.fields);
  const sizes = new Array<number>(entries.length * 3);
  let total = 1 + varintSize(tsLength) + tsLength;
  for (let i = 0; i < entries.length; i++) {
    const [k, v] = entries[i]!;
    const kl = Buffer.byteLength(k);
    const vl = Buffer.byteLength(v);
    const entry = 1 + varintSize(kl) + kl + 1 + varintSize(vl) + vl;
    sizes[i * 3] = kl;
    sizes[i * 3 + 1] = vl;
    sizes[i * 3 + 2] = entry;
    total += 1 + varintSize(entry) + entry;
  }
  const out = Buffer.allocUnsafe(total);
  let p = 0;
  const varint = (v: number) => {
    while (v >= 0x80) {
      out[p++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    out[p++] = v;
  };
  out[p++] = 0x0a; // field 1, length-delimited
  varint(tsLength);
  if (secondBytes.length) {
    out[p++] = 0x08; // seconds, varint
    for (const b of secondBytes) out[p++] = b;
  }
  if (nanos) {
    out[p++] = 0x10; // nanos, varint
    varint(nanos);
  }
  for (let i = 0; i < entries.length; i++) {
    const [k, v] = entries[i]!;
    out[p++] = 0x12; // field 2: one map entry
    varint(sizes[i * 3 + 2]!);
    out[p++] = 0x0a; // key
    varint(sizes[i * 3]!);
    p += out.write(k, p, "utf8");
    out[p++] = 0x12; // value
    varint(sizes[i * 3 + 1]!);
    p += out.write(v, p, "utf8");
  }
  return out;
}
