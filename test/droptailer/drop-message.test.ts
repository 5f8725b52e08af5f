import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { fromBinary, toBinary, create } from "@bufbuild/protobuf";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import { DropSchema } from "../../lib/droptailer/gen/droptailer_pb.ts";
import { encodeDrop, timestampOf } from "../../lib/droptailer/drop-message.ts";

describe("encodeDrop writes proto.Drop as the generated code reads it", () => {
  test("every event decodes to its fields and its timestamp to the microsecond", () => {
    fc.assert(fc.property(
      fc.bigInt({ min: -(2n ** 62n), max: 2n ** 62n }),
      fc.dictionary(fc.string({ unit: "binary", maxLength: 40 }), fc.string({ unit: "binary", maxLength: 300 }), { maxKeys: 30 }),
      (us, fields) => {
        const d = fromBinary(DropSchema, encodeDrop({ timestamp: us, fields }));
        const { seconds, nanos } = timestampOf({ timestamp: us, fields });
        expect(d.timestamp?.seconds ?? 0n).toBe(seconds);
        expect(d.timestamp?.nanos ?? 0).toBe(nanos);
        expect((d.timestamp?.seconds ?? 0n) * 1_000_000n + BigInt((d.timestamp?.nanos ?? 0) / 1000)).toBe(us);
        // Lone surrogates become U+FFFD on the wire, as any UTF-8 encoder writes them.
        const wellFormed = Object.fromEntries(Object.entries(fields).map(([k, v]) => [k.toWellFormed(), v.toWellFormed()]));
        expect(d.fields).toEqual(wellFormed);
      },
    ), { numRuns: 500 });
  });

  test("kernel-like events (times after 1970, short ASCII fields, now and then a long or non-ASCII one) decode exactly", () => {
    const text = fc.oneof(fc.string({ unit: fc.constantFrom("A", "B", "1", "=", ":", "."), maxLength: 40 }), fc.string({ unit: "grapheme", maxLength: 50 }), fc.string({ maxLength: 200 }));
    fc.assert(fc.property(
      fc.oneof(fc.bigInt({ min: 0n, max: 2_000_000_000_000_000n }), fc.constant(0n), fc.constant(BigInt(Number.MAX_SAFE_INTEGER)), fc.constant(BigInt(Number.MAX_SAFE_INTEGER) + 1n)),
      fc.dictionary(text, text, { maxKeys: 25 }),
      (us, fields) => {
        const bytes = encodeDrop({ timestamp: us, fields });
        const d = fromBinary(DropSchema, bytes);
        expect((d.timestamp?.seconds ?? 0n) * 1_000_000n + BigInt((d.timestamp?.nanos ?? 0) / 1000)).toBe(us);
        expect(d.fields).toEqual(Object.fromEntries(Object.entries(fields).map(([k, v]) => [k.toWellFormed(), v.toWellFormed()])));
        // The same bytes the generated code writes (map entries in the fields' order).
        const { seconds, nanos } = timestampOf({ timestamp: us, fields });
        expect(Buffer.from(bytes).equals(Buffer.from(toBinary(DropSchema, create(DropSchema, { timestamp: create(TimestampSchema, { seconds, nanos }), fields }))))).toBe(true);
      },
    ), { numRuns: 1000 });
  });

  test("byte for byte what the generated code writes, for a kernel event", () => {
    const event = { timestamp: 1_700_000_000_123_456n, fields: { ACTION: "drop", SRC: "192.0.2.1", DPT: "22", SYN: "" } };
    const { seconds, nanos } = timestampOf(event);
    const reference = toBinary(DropSchema, create(DropSchema, { timestamp: create(TimestampSchema, { seconds, nanos }), fields: event.fields }));
    expect(Buffer.from(encodeDrop(event)).toString("hex")).toBe(Buffer.from(reference).toString("hex"));
  });

  test("timestamps: microseconds before 1970 and Dates convert exactly; zero is the empty Timestamp", () => {
    expect(timestampOf({ timestamp: -1n, fields: {} })).toEqual({ seconds: -1n, nanos: 999_999_000 });
    expect(timestampOf({ timestamp: new Date(1500), fields: {} })).toEqual({ seconds: 1n, nanos: 500_000_000 });
    expect(Buffer.from(encodeDrop({ timestamp: 0n, fields: {} })).toString("hex")).toBe("0a00");
  });
});
