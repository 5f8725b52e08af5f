import { describe, expect, test } from "bun:test";
import { encodeLiteralHeaders, HpackDecoder, huffmanDecode } from "../../lib/droptailer/hpack.ts";

const hex = (s: string) => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ""), "hex"));

describe("HPACK decoding, RFC 7541 Appendix C", () => {
  test("C.4: requests with Huffman, entries added to the dynamic table", () => {
    const d = new HpackDecoder();
    expect(d.decode(hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"))).toEqual({
      ok: true, headers: [[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"]],
    });
    expect(d.tableSize).toBe(57);
    expect(d.decode(hex("8286 84be 5886 a8eb 1064 9cbf"))).toEqual({
      ok: true, headers: [[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"], ["cache-control", "no-cache"]],
    });
    expect(d.tableSize).toBe(110);
    expect(d.decode(hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"))).toEqual({
      ok: true, headers: [[":method", "GET"], [":scheme", "https"], [":path", "/index.html"], [":authority", "www.example.com"], ["custom-key", "custom-value"]],
    });
    expect(d.tableSize).toBe(164);
  });

  test("C.6: responses with Huffman and a 256-byte table: eviction keeps the peer's indices", () => {
    const d = new HpackDecoder({ maxTableSize: 256 });
    // The decoder starts at the table size it announced; the RFC's peer was told 256.
    expect(d.decode(hex(`4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
      2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3`))).toEqual({
      ok: true, headers: [[":status", "302"], ["cache-control", "private"], ["date", "Mon, 21 Oct 2013 20:13:21 GMT"], ["location", "https://www.example.com"]],
    });
    expect(d.tableSize).toBe(222);
    expect(d.decode(hex("4883 640e ffc1 c0bf"))).toEqual({
      ok: true, headers: [[":status", "307"], ["cache-control", "private"], ["date", "Mon, 21 Oct 2013 20:13:21 GMT"], ["location", "https://www.example.com"]],
    });
    expect(d.tableSize).toBe(222);
    expect(d.decode(hex(`88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
      77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07`))).toEqual({
      ok: true, headers: [[":status", "200"], ["cache-control", "private"], ["date", "Mon, 21 Oct 2013 20:13:22 GMT"], ["location", "https://www.example.com"],
        ["content-encoding", "gzip"], ["set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"]],
    });
    expect(d.tableSize).toBe(215);
  });
});

describe("HPACK decoding of hostile blocks: a result naming the trouble, never an exception", () => {
  const fails = (block: Uint8Array, reason: RegExp, d = new HpackDecoder()) => {
    const r = d.decode(block);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(reason);
  };
  test("an index past both tables, and index 0", () => {
    fails(hex("be"), /no table entry 62/);
    fails(hex("80"), /no table entry 0/);
    fails(hex("4f"), /bad value literal at byte 1/); // a literal with a name index but no value
  });
  test("a string longer than the block", () => fails(hex("400a 6162"), /bad name literal/));
  test("an integer that never ends", () => fails(hex("ff ff ff ff ff ff ff"), /no table entry undefined/));
  test("Huffman: EOS inside a string, padding of zeros, padding longer than 7 bits", () => {
    expect(huffmanDecode(hex("ff ff ff fc"))).toBeUndefined(); // 30 ones = EOS, then padding
    expect(huffmanDecode(hex("00"))).toBeUndefined(); // '0' (00000) then 000: zero padding
    expect(huffmanDecode(hex("07 ff"))).toBeUndefined(); // '0' then 11 ones of padding
    expect(new TextDecoder().decode(huffmanDecode(hex("07")))).toBe("0"); // '0' then 111
    expect(new TextDecoder().decode(huffmanDecode(hex("1f")))).toBe("a"); // 00011, then 111
    fails(hex("4081 00 00"), /bad name literal/);
  });
  test("a table size update above what we announced, or after the first field", () => {
    fails(hex("3fe2 1f"), /table size update to 4097/);
    expect(new HpackDecoder().decode(hex("3fe1 1f 82")).ok).toBe(true); // 4096 is allowed
    fails(hex("82 20"), /table size update/);
    expect(new HpackDecoder().decode(hex("20 82"))).toEqual({ ok: true, headers: [[":method", "GET"]] });
  });
  test("a header list above the bound", () => {
    const big = encodeLiteralHeaders([["x", "y".repeat(600)], ["z", "y".repeat(600)]]);
    fails(big, /header list larger than 1024 bytes/, new HpackDecoder({ maxHeaderListSize: 1024 }));
  });
  test("a table size update to 0 empties the table: its old indices are gone", () => {
    const d = new HpackDecoder();
    expect(d.decode(hex("4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf")).ok).toBe(true);
    expect(d.decode(hex("be"))).toEqual({ ok: true, headers: [["custom-key", "custom-value"]] });
    fails(hex("20 be"), /no table entry 62/, d);
    expect(d.tableSize).toBe(0);
  });
});

describe("HPACK encoding of our request headers", () => {
  test("literals without indexing decode to the same list and leave the peer's table empty", () => {
    const headers: [string, string][] = [[":method", "POST"], [":scheme", "https"], [":path", "/proto.Droptailer/Push"], [":authority", "droptailer"],
      ["content-type", "application/grpc"], ["te", "trailers"], ["grpc-timeout", "5000m"], ["user-agent", "firewall-controller"], ["x-long", "v".repeat(300)]];
    const d = new HpackDecoder();
    expect(d.decode(encodeLiteralHeaders(headers))).toEqual({ ok: true, headers });
    expect(d.tableSize).toBe(0);
    // :method POST is a static entry: one byte
    expect(encodeLiteralHeaders([[":method", "POST"]])).toEqual(hex("83"));
  });
});
