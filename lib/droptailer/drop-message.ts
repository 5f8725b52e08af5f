/**
 * The droptailer's `proto.Drop` message in protobuf's wire format, encoded directly: a timestamp
 * (`google.protobuf.Timestamp`, field 1) and the fields as a `map<string, string>` (field 2). One
 * buffer per event, sized before it is written; the generated code (`gen/droptailer_pb.ts`)
 * decodes it in the tests, field by field.
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

/** Encodes one event as `proto.Drop`. */
export function encodeDrop(event: DropEvent): Uint8Array {
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
