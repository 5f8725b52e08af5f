/**
 * HPACK (RFC 7541), the half the drop log needs: decoding the header blocks a gRPC server answers
 * with (static and dynamic table, integers, literals, Huffman strings), and encoding our constant
 * request headers as literals that touch no table. The server's bytes are hostile: every length is
 * checked against the block, the dynamic table against the size we allow, the decoded list
 * against a byte bound; a malformed block is a result, never an exception.
 *
 * @example
 * ```ts
 * import { HpackDecoder, encodeLiteralHeaders } from "./hpack.ts";
 * const block = encodeLiteralHeaders([[":status", "200"], ["grpc-status", "0"]]);
 * const r = new HpackDecoder().decode(block);
 * if (r.ok) console.log(r.headers); // [[":status", "200"], ["grpc-status", "0"]]
 * ```
 * @module
 */

/** RFC 7541 Appendix A, index 1…61. */
const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [":authority", ""], [":method", "GET"], [":method", "POST"], [":path", "/"], [":path", "/index.html"],
  [":scheme", "http"], [":scheme", "https"], [":status", "200"], [":status", "204"], [":status", "206"],
  [":status", "304"], [":status", "400"], [":status", "404"], [":status", "500"], ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"], ["accept-language", ""], ["accept-ranges", ""], ["accept", ""],
  ["access-control-allow-origin", ""], ["age", ""], ["allow", ""], ["authorization", ""], ["cache-control", ""],
  ["content-disposition", ""], ["content-encoding", ""], ["content-language", ""], ["content-length", ""],
  ["content-location", ""], ["content-range", ""], ["content-type", ""], ["cookie", ""], ["date", ""],
  ["etag", ""], ["expect", ""], ["expires", ""], ["from", ""], ["host", ""], ["if-match", ""],
  ["if-modified-since", ""], ["if-none-match", ""], ["if-range", ""], ["if-unmodified-since", ""],
  ["last-modified", ""], ["link", ""], ["location", ""], ["max-forwards", ""], ["proxy-authenticate", ""],
  ["proxy-authorization", ""], ["range", ""], ["referer", ""], ["refresh", ""], ["retry-after", ""],
  ["server", ""], ["set-cookie", ""], ["strict-transport-security", ""], ["transfer-encoding", ""],
  ["user-agent", ""], ["vary", ""], ["via", ""], ["www-authenticate", ""],
];

// RFC 7541 Appendix B gives the code of each symbol; the code is canonical (codes of one length
// are consecutive, in symbol order, each length following the last), so the lengths alone
// determine it. Symbols 0…255, then EOS (256).
const HUFFMAN_LENGTHS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30,
];
const EOS = 256;
const MAX_CODE_LENGTH = 30;
/** Per length: how many codes, and the symbols in canonical order. */
const HUFFMAN_COUNT = new Int32Array(MAX_CODE_LENGTH + 1);
const HUFFMAN_SYMBOLS = new Int32Array(HUFFMAN_LENGTHS.length);
{
  for (const l of HUFFMAN_LENGTHS) HUFFMAN_COUNT[l]!++;
  const offset = new Int32Array(MAX_CODE_LENGTH + 2);
  for (let l = 1; l <= MAX_CODE_LENGTH; l++) offset[l + 1] = offset[l]! + HUFFMAN_COUNT[l]!;
  HUFFMAN_LENGTHS.forEach((l, s) => (HUFFMAN_SYMBOLS[offset[l]!++] = s));
}

/** Decodes a Huffman-coded string (RFC 7541 §5.2); undefined when malformed (EOS inside, bad padding). */
export function huffmanDecode(bytes: Uint8Array): Uint8Array | undefined {
  // Every symbol is at least 5 bits: the output is at most 8/5 of the input.
  const out = new Uint8Array(Math.ceil((bytes.length * 8) / 5));
  let n = 0;
  let code = 0; // the bits of the current symbol so far, as an offset into its length's range
  let first = 0; // the first code of the current length
  let index = 0; // the index of that first code in HUFFMAN_SYMBOLS
  let len = 0;
  let ones = true; // whether the bits since the last symbol were all 1 (the valid padding)
  for (const byte of bytes) {
    for (let bit = 7; bit >= 0; bit--) {
      const b = (byte >> bit) & 1;
      code = (code << 1) | b;
      ones &&= b === 1;
      len++;
      const count = HUFFMAN_COUNT[len]!;
      if (code - first < count) {
        const sym = HUFFMAN_SYMBOLS[index + code - first]!;
        if (sym === EOS) return undefined;
        out[n++] = sym;
        code = first = index = len = 0;
        ones = true;
        continue;
      }
      index += count;
      first = (first + count) << 1;
      if (len >= MAX_CODE_LENGTH) return undefined;
    }
  }
  // Padding: fewer than 8 bits, all ones (a prefix of EOS).
  if (len > 7 || !ones) return undefined;
  return out.subarray(0, n);
}

export type HpackResult =
  | { readonly ok: true; readonly headers: [string, string][] }
  | { readonly ok: false; readonly reason: string };

export interface HpackDecoderOptions {
  /** The table size we announce (SETTINGS_HEADER_TABLE_SIZE, default 4,096). */
  readonly maxTableSize?: number;
  /** Bound of one decoded list: names + values + 32 per field (default 16 KiB). */
  readonly maxHeaderListSize?: number;
}

interface TableEntry {
  readonly name: string;
  readonly value: string;
  readonly nameOctets: number;
  readonly size: number;
}

const text = new TextDecoder("utf-8", { fatal: false });

/**
 * One connection's decoding context: the dynamic table lives as long as the connection, and every
 * header block the peer sends must go through it in order (even of streams we no longer care for).
 */
export class HpackDecoder {
  readonly #limit: number;
  readonly #maxList: number;
  #capacity: number;
  /** Newest first; sizes in the peer's octets (not our decoded strings' lengths). */
  #dynamic: TableEntry[] = [];
  #size = 0;

  constructor(options: HpackDecoderOptions = {}) {
    this.#limit = options.maxTableSize ?? 4096;
    this.#capacity = this.#limit;
    this.#maxList = options.maxHeaderListSize ?? 16 * 1024;
  }

  /** The dynamic table's size in RFC 7541 terms (32 + name + value per entry). */
  get tableSize(): number {
    return this.#size;
  }

  /** Decodes one complete header block. After a failure the connection must be closed (the table is lost). */
  decode(block: Uint8Array): HpackResult {
    const headers: [string, string][] = [];
    let listSize = 0;
    let p = 0;
    let octets = 0; // of the last string read
    const fail = (reason: string): HpackResult => ({ ok: false, reason: `malformed header block: ${reason} at byte ${p}` });
    const integer = (prefixBits: number): number | undefined => {
      const max = (1 << prefixBits) - 1;
      let v = block[p++]! & max;
      if (v < max) return v;
      for (let shift = 0; ; shift += 7) {
        if (p >= block.length || shift > 21) return undefined; // beyond 2^28: no sane header needs it
        const b = block[p++]!;
        v += (b & 0x7f) * 2 ** shift;
        if ((b & 0x80) === 0) return v;
      }
    };
    const string = (): string | undefined => {
      if (p >= block.length) return undefined;
      const huffman = (block[p]! & 0x80) !== 0;
      const n = integer(7);
      if (n === undefined || p + n > block.length || n > this.#maxList) return undefined;
      const raw = block.subarray(p, p + n);
      p += n;
      const bytes = huffman ? huffmanDecode(raw) : raw;
      if (!bytes) return undefined;
      octets = bytes.length;
      return text.decode(bytes);
    };
    const entry = (index: number): TableEntry | undefined => {
      if (index > STATIC_TABLE.length) return this.#dynamic[index - STATIC_TABLE.length - 1];
      const e = STATIC_TABLE[index - 1];
      return e && { name: e[0], value: e[1], nameOctets: e[0].length, size: 32 + e[0].length + e[1].length };
    };
    let sizeUpdateAllowed = true;
    while (p < block.length) {
      const b = block[p]!;
      let field: readonly [string, string];
      if (b & 0x80) {
        const index = integer(7);
        const e = index === undefined || index === 0 ? undefined : entry(index);
        if (!e) return fail(`no table entry ${index}`);
        field = [e.name, e.value];
      } else if ((b & 0xe0) === 0x20) {
        // Dynamic table size update: only at the start of a block, never above what we allow.
        const size = integer(5);
        if (!sizeUpdateAllowed || size === undefined || size > this.#limit) return fail(`table size update to ${size}`);
        this.#capacity = size;
        this.#evict(0);
        continue;
      } else {
        const indexing = (b & 0xc0) === 0x40;
        const index = integer(indexing ? 6 : 4); // 0000xxxx without indexing, 0001xxxx never indexed
        if (index === undefined) return fail("truncated index");
        let name: string | undefined;
        let nameOctets = 0;
        if (index === 0) {
          name = string();
          nameOctets = octets;
        } else {
          const e = entry(index);
          name = e?.name;
          nameOctets = e?.nameOctets ?? 0;
        }
        if (name === undefined) return fail(index === 0 ? "bad name literal" : `no table entry ${index}`);
        const value = string();
        if (value === undefined) return fail("bad value literal");
        field = [name, value];
        if (indexing) this.#add({ name, value, nameOctets, size: 32 + nameOctets + octets });
      }
      sizeUpdateAllowed = false;
      listSize += field[0].length + field[1].length + 32;
      if (listSize > this.#maxList) return fail(`header list larger than ${this.#maxList} bytes`);
      headers.push([field[0], field[1]]);
    }
    return { ok: true, headers };
  }

  #add(e: TableEntry): void {
    if (e.size > this.#capacity) {
      // An entry larger than the table empties it (RFC 7541 §4.4).
      this.#dynamic = [];
      this.#size = 0;
      return;
    }
    this.#evict(e.size);
    this.#dynamic.unshift(e);
    this.#size += e.size;
  }

  /** Evicts the oldest entries until `room` more bytes fit. */
  #evict(room: number): void {
    while (this.#size + room > this.#capacity && this.#dynamic.length > 0) {
      this.#size -= (this.#dynamic.pop() as TableEntry).size;
    }
  }
}

const encodeInteger = (out: number[], first: number, prefixBits: number, value: number): void => {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(first | value);
    return;
  }
  out.push(first | max);
  value -= max;
  while (value >= 0x80) {
    out.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
};

/**
 * Encodes headers as literals without indexing (RFC 7541 §6.2.2), names taken from the static
 * table where it has them, no Huffman: the block leaves the peer's dynamic table alone, so it can
 * be built once per connection and sent with every request.
 */
export function encodeLiteralHeaders(headers: readonly (readonly [string, string])[]): Uint8Array {
  const out: number[] = [];
  const bytes = (s: string) => {
    const b = new TextEncoder().encode(s);
    encodeInteger(out, 0, 7, b.length);
    for (const x of b) out.push(x);
  };
  for (const [name, value] of headers) {
    const full = STATIC_TABLE.findIndex(([n, v]) => n === name && v === value);
    if (full >= 0) {
      encodeInteger(out, 0x80, 7, full + 1);
      continue;
    }
    const named = STATIC_TABLE.findIndex(([n]) => n === name);
    encodeInteger(out, 0x00, 4, named + 1);
    if (named < 0) bytes(name);
    bytes(value);
  }
  return Uint8Array.from(out);
}
