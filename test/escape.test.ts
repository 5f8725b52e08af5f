import { describe, expect, test } from "bun:test";
import { DEFAULT_MAX, escapeBytes, escapeText, groupDigits } from "../lib/escape.ts";

describe("escapeText: nothing that steers a terminal or a reader gets through (SPEC §8)", () => {
  test.each([
    ["an ESC sequence (clear screen, colour)", "a\x1b[2J\x1b[31mb", "a\\x1b[2J\\x1b[31mb"],
    ["a newline that would forge a report line", "x\nrejected ClusterwideNetworkPolicy firewall/y", "x\\nrejected ClusterwideNetworkPolicy firewall/y"],
    ["a carriage return and a tab", "a\rb\tc", "a\\rb\\tc"],
    ["NUL, BEL, backspace", "\x00\x07\x08", "\\x00\\x07\\x08"],
    ["DEL", "a\x7fb", "a\\x7fb"],
    ["the one-character CSI U+009B (C1)", "a\u009b2Jb", "a\\x9b2Jb"],
    ["every C1 control", "\u0080\u0085\u009f", "\\x80\\x85\\x9f"],
    ["a right-to-left override", "abc\u202etxt.exe", "abc\\u202etxt.exe"],
    ["bidi embeddings and the pop", "\u202a\u202b\u202c\u202d", "\\u202a\\u202b\\u202c\\u202d"],
    ["bidi isolates", "\u2066\u2067\u2068\u2069", "\\u2066\\u2067\\u2068\\u2069"],
    ["bidi marks", "\u200e\u200f\u061c", "\\u200e\\u200f\\u061c"],
    ["line and paragraph separators", "a\u2028b\u2029c", "a\\u2028b\\u2029c"],
    ["zero-width characters and the BOM", "a\u200bb\ufeffc", "a\\u200bb\\ufeffc"],
    ["a lone high surrogate", "a\ud800b", "a\\ud800b"],
    ["a lone low surrogate", "a\udc00b", "a\\udc00b"],
    ["a lone high surrogate at the end", "a\ud83d", "a\\ud83d"],
  ])("%s is escaped visibly", (_what, input, output) => {
    expect(escapeText(input)).toBe(output);
  });

  test.each([
    ["plain ASCII", "ClusterwideNetworkPolicy firewall/allow-dns (x.yaml#0)"],
    ["letters beyond ASCII", "Grüße, 日本語, ελληνικά"],
    ["a surrogate pair (an emoji)", "ok 🔥 done"],
    ["a backslash (the output is for people, not to be parsed back)", "C:\\x1b is text"],
    ["the empty string", ""],
  ])("%s passes unchanged", (_what, input) => {
    expect(escapeText(input)).toBe(input);
  });

  test("the output of escapeText passes escapeText unchanged (escaping twice does no harm)", () => {
    const once = escapeText("a\x1b\n\u202e\u009b");
    expect(escapeText(once)).toBe(once);
  });
});

describe("escapeText: length cap", () => {
  test(`the default cap is ${DEFAULT_MAX} characters, and the note says how many more there were`, () => {
    expect(escapeText("x".repeat(300))).toBe(`${"x".repeat(256)}…(44 more characters)`);
  });

  test("text at the cap is not cut", () => {
    expect(escapeText("x".repeat(256))).toBe("x".repeat(256));
  });

  test("a 5 MB value gives a bounded output that says how much was cut", () => {
    const out = escapeText("\x1b".repeat(5_000_000));
    expect(out).toBe(`${"\\x1b".repeat(256)}…(4,999,744 more characters)`);
  });

  test("max sets the cap", () => {
    expect(escapeText("abcdef", { max: 2 })).toBe("ab…(4 more characters)");
    expect(escapeText("abcdef", { max: 0 })).toBe("…(6 more characters)");
    expect(escapeText("abcdef", { max: Number.POSITIVE_INFINITY })).toBe("abcdef");
  });

  test("the cut never splits a surrogate pair into a lone surrogate", () => {
    expect(escapeText("ab🔥cd", { max: 3 })).toBe("ab…(4 more characters)");
    expect(escapeText("ab🔥cd", { max: 4 })).toBe("ab🔥…(2 more characters)");
  });

  test("the JSDoc examples hold", () => {
    expect(escapeText("evil\x1b[2Jname\nrejected x")).toBe("evil\\x1b[2Jname\\nrejected x");
    expect(escapeText("abc\u202Etxt.exe")).toBe("abc\\u202etxt.exe");
    expect(escapeText("x".repeat(1000), { max: 4 })).toBe("xxxx…(996 more characters)");
    expect(escapeText("a\u009bb")).toBe("a\\x9bb");
    expect(escapeText("y".repeat(5_000_000)).length).toBe(256 + "…(4,999,744 more characters)".length);
  });
});

describe("escapeBytes: names that are not UTF-8", () => {
  test("valid UTF-8 is decoded, each byte of an invalid sequence shown as \\xNN", () => {
    expect(escapeBytes(Buffer.from([0x61, 0xff, 0x2e, 0x79]))).toBe("a\\xff.y");
    expect(escapeBytes(Buffer.from("grüße.yaml"))).toBe("grüße.yaml");
    // A truncated sequence, an overlong "/", and an encoded surrogate are not UTF-8.
    expect(escapeBytes(Buffer.from([0xc3]))).toBe("\\xc3");
    expect(escapeBytes(Buffer.from([0xc0, 0xaf]))).toBe("\\xc0\\xaf");
    expect(escapeBytes(Buffer.from([0xed, 0xa0, 0x80]))).toBe("\\xed\\xa0\\x80");
  });

  test("decoded control and bidi characters are escaped as by escapeText", () => {
    expect(escapeBytes(Buffer.from("a\x1b\n\u202eb"))).toBe("a\\x1b\\n\\u202eb");
  });

  test("a long name is cut, counting the bytes left out", () => {
    expect(escapeBytes(Buffer.from("abcdef"), { max: 2 })).toBe("ab…(4 more bytes)");
  });
});

test("groupDigits groups by thousands", () => {
  expect([0, 999, 1000, 4999744, 1234567890].map(groupDigits)).toEqual(["0", "999", "1,000", "4,999,744", "1,234,567,890"]);
});
