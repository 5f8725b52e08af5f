import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { commentIndex, slotOf, slotOfBytes } from "../../lib/nft/comment-index.ts";

const encoder = new TextEncoder();

/** `text`'s bytes at an offset inside a larger buffer, as a netlink dump holds them, with or without nft's NUL. */
function inBuffer(text: string, nul: boolean): { b: Uint8Array; start: number; end: number } {
  const bytes = encoder.encode(nul ? `${text}\0` : text);
  const b = new Uint8Array(bytes.length + 7).fill(0x41);
  b.set(bytes, 3);
  return { b, start: 3, end: 3 + bytes.length };
}

const comment = (a: fc.Arbitrary<string>) => a.map((s) => s.replaceAll("\0", "0"));

describe("comment index", () => {
  test("every comment is found at its slot by its bytes, with or without the trailing NUL; others are not found (property)", () => {
    fc.assert(
      // nft's comments are C strings: no NUL in them.
      fc.property(fc.array(comment(fc.string({ unit: "grapheme", maxLength: 40 })), { maxLength: 300 }), fc.array(comment(fc.string({ maxLength: 40 })), { maxLength: 20 }), fc.boolean(), (comments, others, nul) => {
        const index = commentIndex(comments);
        expect(index.comments).toEqual([...new Set(comments)]);
        index.comments.forEach((c, slot) => {
          expect(slotOf(index, c)).toBe(slot);
          const { b, start, end } = inBuffer(c, nul);
          expect(slotOfBytes(index, b, start, end)).toBe(slot);
        });
        for (const o of others) {
          const { b, start, end } = inBuffer(o, nul);
          expect(slotOfBytes(index, b, start, end)).toBe(index.comments.indexOf(o));
        }
      }),
      { numRuns: 300 },
    );
  });

  test("comments that differ in one byte, or are a prefix of one another, get their own slots", () => {
    const comments = ["accept traffic for np a tcp", "accept traffic for np b tcp", "accept traffic for np a tc", "accept traffic for np a tcp2"];
    const index = commentIndex(comments);
    comments.forEach((c, slot) => {
      const { b, start, end } = inBuffer(c, true);
      expect(slotOfBytes(index, b, start, end)).toBe(slot);
    });
    const { b, start, end } = inBuffer("accept traffic for np c tcp", true);
    expect(slotOfBytes(index, b, start, end)).toBe(-1);
  });

  test("an empty index finds nothing", () => {
    const { b, start, end } = inBuffer("np a", true);
    expect(slotOfBytes(commentIndex([]), b, start, end)).toBe(-1);
  });
});
