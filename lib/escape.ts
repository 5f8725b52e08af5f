/**
 * The one output gate (SPEC §8): every text that comes from input passes
 * {@link escapeText} before it reaches a terminal, a log, a status or an Event.
 *
 * What is replaced, each by a visible escape (`\x1b`, `\n`, `\u202e`, ...):
 * - C0 controls U+0000–U+001F (newline too: a name must never add a line to a
 *   report) and DEL U+007F;
 * - C1 controls U+0080–U+009F (U+009B is a one-character CSI on many terminals);
 * - bidi controls: embeddings and overrides U+202A–U+202E, isolates
 *   U+2066–U+2069, marks U+200E, U+200F, U+061C (they reorder what a reader
 *   sees: "Trojan Source");
 * - line and paragraph separators U+2028, U+2029;
 * - invisible characters that hide differences between names: U+200B–U+200D,
 *   U+2060–U+2064, U+FEFF, U+FFF9–U+FFFB;
 * - lone surrogates (not text; some terminals and JSON encoders choke on them).
 *
 * Backslashes are left alone: the output is for people, not to be parsed back.
 *
 * @example
 * ```ts
 * import { escapeText } from "./escape.ts";
 * escapeText("evil\x1b[2Jname\nrejected x");   // "evil\\x1b[2Jname\\nrejected x"
 * escapeText("abc\u202Etxt.exe");              // "abc\\u202etxt.exe"
 * escapeText("x".repeat(1000), { max: 4 });    // "xxxx…(996 more characters)"
 * ```
 * @module
 */

/** Default length cap of {@link escapeText}, in characters of the input. */
export const DEFAULT_MAX = 256;

// One pass over the kept prefix. Without the `u` flag the regex works on UTF-16 code units, which
// is what finds lone surrogates: a high one not followed by a low one, a low one not preceded by a high one.
const UNSAFE =
  /[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ufff9-\ufffb]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

const SHORT: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

const hex = (n: number, width: number) => n.toString(16).padStart(width, "0");

function escapeChar(c: string): string {
  const short = SHORT[c];
  if (short) return short;
  const code = c.charCodeAt(0);
  return code <= 0xff ? `\\x${hex(code, 2)}` : `\\u${hex(code, 4)}`;
}

/** `4999744` → `4,999,744`, without depending on the runtime's locale data. */
export const groupDigits = (n: number): string => String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");

/**
 * Where to cut `text` to keep at most `max` code units without splitting a
 * surrogate pair (that would make a lone surrogate out of a valid character).
 */
function cutAt(text: string, max: number): number {
  if (text.length <= max) return text.length;
  const last = text.charCodeAt(max - 1);
  return max > 0 && last >= 0xd800 && last <= 0xdbff ? max - 1 : max;
}

/**
 * `text` made safe to print: unsafe characters (see the module doc) replaced
 * by visible escapes, and cut after `max` characters (UTF-16 code units, as
 * `String.length` counts; default {@link DEFAULT_MAX}) with a note saying how
 * many were left out, e.g. `…(4,999,744 more characters)`. Only the kept part
 * is scanned, so the cost is bounded by `max` whatever the input's length.
 *
 * @example
 * ```ts
 * import { escapeText } from "./escape.ts";
 * escapeText("a\u009bb"); // "a\\x9bb"
 * escapeText("y".repeat(5_000_000)).length; // 256 + "…(4,999,744 more characters)".length
 * ```
 */
export function escapeText(text: string, options?: { readonly max?: number }): string {
  const max = Math.max(0, Math.floor(options?.max ?? DEFAULT_MAX));
  const end = cutAt(text, max);
  const kept = (end === text.length ? text : text.slice(0, end)).replace(UNSAFE, escapeChar);
  return end === text.length ? kept : `${kept}…(${groupDigits(text.length - end)} more characters)`;
}

/** Decodes one UTF-8 sequence at `i`; the code point and its length, or undefined when not valid UTF-8. */
function utf8At(b: Uint8Array, i: number): { cp: number; len: number } | undefined {
  const b0 = b[i] as number;
  if (b0 < 0x80) return { cp: b0, len: 1 };
  const len = b0 >= 0xc2 && b0 <= 0xdf ? 2 : b0 >= 0xe0 && b0 <= 0xef ? 3 : b0 >= 0xf0 && b0 <= 0xf4 ? 4 : 0;
  if (len === 0 || i + len > b.length) return undefined;
  let cp = b0 & (0xff >> (len + 1));
  for (let k = 1; k < len; k++) {
    const c = b[i + k] as number;
    if ((c & 0xc0) !== 0x80) return undefined;
    cp = (cp << 6) | (c & 0x3f);
  }
  // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8.
  const min = len === 3 ? 0x800 : len === 4 ? 0x10000 : 0x80;
  if (cp < min || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return undefined;
  return { cp, len };
}

/**
 * Bytes that should be UTF-8 (a file name from the kernel) as safe text:
 * valid sequences decoded, every byte that is not part of one shown as `\xNN`,
 * the rest as {@link escapeText} does; cut after `max` characters with a note
 * counting the bytes left out. Linear in the bytes kept, not in the input.
 *
 * @example
 * ```ts
 * import { escapeBytes } from "./escape.ts";
 * escapeBytes(new Uint8Array([0x61, 0xff, 0x2e, 0x79])); // "a\\xff.y"
 * ```
 */
export function escapeBytes(bytes: Uint8Array, options?: { readonly max?: number }): string {
  const max = Math.max(0, Math.floor(options?.max ?? DEFAULT_MAX));
  const parts: string[] = [];
  let i = 0;
  let chars = 0;
  // Decode only up to the cap: the cost is bounded by max, not by the input.
  while (i < bytes.length && chars < max) {
    const r = utf8At(bytes, i);
    const s = r ? String.fromCodePoint(r.cp) : `\\x${hex(bytes[i] as number, 2)}`;
    parts.push(s);
    chars += s.length;
    i += r ? r.len : 1;
  }
  const text = parts.join("");
  const kept = escapeText(text, { max: text.length });
  // What is left is counted in bytes: that is known without decoding it.
  return i >= bytes.length ? kept : `${kept}…(${groupDigits(bytes.length - i)} more bytes)`;
}
