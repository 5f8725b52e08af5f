import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { DROP_LOG_PREFIX } from "../../lib/ruleset/render.ts";
import { ACCEPT_PREFIX, DROP_PREFIX, MAX_FIELDS, MAX_LINE_CHARS, parseDropLine } from "../../lib/droptailer/parse.ts";

const AT = { wallUs: 1_700_000_000_123_456n };

// Lines captured from this kernel (6.18) with nf_log_all_netns=1, trailing space included as the kernel writes it.
const TCP4 =
  "nftables-firewall-dropped: IN=veth1 OUT= MAC=16:30:dc:6f:e6:85:62:08:cc:10:6d:90:08:00 SRC=10.9.0.1 DST=10.9.0.2 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=7895 DF PROTO=TCP SPT=44938 DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0 ";
const UDP4 =
  "nftables-firewall-dropped: IN=veth1 OUT= MAC=16:30:dc:6f:e6:85:62:08:cc:10:6d:90:08:00 SRC=10.9.0.1 DST=10.9.0.2 LEN=30 TOS=0x00 PREC=0x00 TTL=64 ID=17545 DF PROTO=UDP SPT=57650 DPT=53 LEN=10 ";
const ICMP4 =
  "nftables-firewall-dropped: IN=veth1 OUT= MAC=16:30:dc:6f:e6:85:62:08:cc:10:6d:90:08:00 SRC=10.9.0.1 DST=10.9.0.2 LEN=42 TOS=0x00 PREC=0x00 TTL=64 ID=64050 DF PROTO=ICMP TYPE=8 CODE=0 ID=15834 SEQ=1 ";
const ICMP6 =
  "nftables-firewall-dropped: IN=veth1 OUT= MAC=16:30:dc:6f:e6:85:62:08:cc:10:6d:90:86:dd SRC=fd00:0009:0000:0000:0000:0000:0000:0001 DST=fd00:0009:0000:0000:0000:0000:0000:0002 LEN=62 TC=0 HOPLIMIT=64 FLOWLBL=463806 PROTO=ICMPv6 TYPE=128 CODE=0 ID=15886 SEQ=1 ";
const TCP6 =
  "nftables-firewall-dropped: IN=veth1 OUT= MAC=16:30:dc:6f:e6:85:62:08:cc:10:6d:90:86:dd SRC=fd00:0009:0000:0000:0000:0000:0000:0001 DST=fd00:0009:0000:0000:0000:0000:0000:0002 LEN=80 TC=0 HOPLIMIT=64 FLOWLBL=166105 PROTO=TCP SPT=33960 DPT=443 WINDOW=64800 RES=0x00 SYN URGP=0 ";
const ACCEPT4 =
  "nftables-firewall-accepted: IN=veth1 OUT= MAC=16:30:dc:6f:e6:85:62:08:cc:10:6d:90:08:00 SRC=10.9.0.1 DST=10.9.0.2 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=6764 DF PROTO=TCP SPT=34392 DPT=80 WINDOW=64240 RES=0x00 SYN URGP=0 ";
// Forwarded (OUT set), no MAC on an outgoing-only hook, ACK+PSH flags (from the droptailer client's doc comment, adapted).
const FORWARD =
  "nftables-firewall-dropped: IN=vlan42 OUT=vrf104009 SRC=10.0.1.2 DST=203.0.113.5 LEN=52 TOS=0x00 PREC=0x00 TTL=63 ID=0 DF PROTO=TCP SPT=40000 DPT=8080 WINDOW=502 RES=0x00 ACK PSH URGP=0 MARK=0x1";
// printk cut this one mid-value (its line limit)
const CUT = "nftables-firewall-dropped: IN=vrf104009 OUT= MAC=12:99:fd:3b:ce:f8:1a:ae:e9:a7:95:50:08:00 SRC=222.73.197.30 DST=212.34.89.87 LEN=40 TOS=0x00 PREC=0x00 TTL=238 ID=46474 PROTO=TCP SPT=592";

describe("parseDropLine", () => {
  test("the prefix is the ruleset's", () => {
    expect(DROP_PREFIX).toBe(DROP_LOG_PREFIX);
    expect(ACCEPT_PREFIX).toBe("nftables-firewall-accepted: ");
  });

  const cases: Array<[string, string, Record<string, string>]> = [
    ["TCP over IPv4 with DF and SYN", TCP4, { IN: "veth1", OUT: "", MAC: "16:30:dc:6f:e6:85:62:08:cc:10:6d:90:08:00", SRC: "10.9.0.1", DST: "10.9.0.2", LEN: "60", TOS: "0x00", PREC: "0x00", TTL: "64", ID: "7895", DF: "", PROTO: "TCP", SPT: "44938", DPT: "22", WINDOW: "64240", RES: "0x00", SYN: "", URGP: "0", ACTION: "drop" }],
    ["UDP: the second LEN (UDP length) wins, as in the Go client", UDP4, { IN: "veth1", OUT: "", MAC: "16:30:dc:6f:e6:85:62:08:cc:10:6d:90:08:00", SRC: "10.9.0.1", DST: "10.9.0.2", LEN: "10", TOS: "0x00", PREC: "0x00", TTL: "64", ID: "17545", DF: "", PROTO: "UDP", SPT: "57650", DPT: "53", ACTION: "drop" }],
    ["ICMP echo: ICMP ID overwrites the IP ID", ICMP4, { IN: "veth1", OUT: "", MAC: "16:30:dc:6f:e6:85:62:08:cc:10:6d:90:08:00", SRC: "10.9.0.1", DST: "10.9.0.2", LEN: "42", TOS: "0x00", PREC: "0x00", TTL: "64", ID: "15834", DF: "", PROTO: "ICMP", TYPE: "8", CODE: "0", SEQ: "1", ACTION: "drop" }],
    ["ICMPv6 echo", ICMP6, { IN: "veth1", OUT: "", MAC: "16:30:dc:6f:e6:85:62:08:cc:10:6d:90:86:dd", SRC: "fd00:0009:0000:0000:0000:0000:0000:0001", DST: "fd00:0009:0000:0000:0000:0000:0000:0002", LEN: "62", TC: "0", HOPLIMIT: "64", FLOWLBL: "463806", PROTO: "ICMPv6", TYPE: "128", CODE: "0", ID: "15886", SEQ: "1", ACTION: "drop" }],
    ["TCP over IPv6", TCP6, { IN: "veth1", OUT: "", MAC: "16:30:dc:6f:e6:85:62:08:cc:10:6d:90:86:dd", SRC: "fd00:0009:0000:0000:0000:0000:0000:0001", DST: "fd00:0009:0000:0000:0000:0000:0000:0002", LEN: "80", TC: "0", HOPLIMIT: "64", FLOWLBL: "166105", PROTO: "TCP", SPT: "33960", DPT: "443", WINDOW: "64800", RES: "0x00", SYN: "", URGP: "0", ACTION: "drop" }],
    ["accepted connection", ACCEPT4, { IN: "veth1", OUT: "", MAC: "16:30:dc:6f:e6:85:62:08:cc:10:6d:90:08:00", SRC: "10.9.0.1", DST: "10.9.0.2", LEN: "60", TOS: "0x00", PREC: "0x00", TTL: "64", ID: "6764", DF: "", PROTO: "TCP", SPT: "34392", DPT: "80", WINDOW: "64240", RES: "0x00", SYN: "", URGP: "0", ACTION: "accept" }],
    ["forwarded, flags ACK PSH, MARK, no MAC", FORWARD, { IN: "vlan42", OUT: "vrf104009", SRC: "10.0.1.2", DST: "203.0.113.5", LEN: "52", TOS: "0x00", PREC: "0x00", TTL: "63", ID: "0", DF: "", PROTO: "TCP", SPT: "40000", DPT: "8080", WINDOW: "502", RES: "0x00", ACK: "", PSH: "", URGP: "0", MARK: "0x1", ACTION: "drop" }],
    ["a line cut by the kernel keeps what is there (the last token as it stands)", CUT, { IN: "vrf104009", OUT: "", MAC: "12:99:fd:3b:ce:f8:1a:ae:e9:a7:95:50:08:00", SRC: "222.73.197.30", DST: "212.34.89.87", LEN: "40", TOS: "0x00", PREC: "0x00", TTL: "238", ID: "46474", PROTO: "TCP", SPT: "592", ACTION: "drop" }],
    ["a value keeps everything after the first =", `${DROP_PREFIX}UID=0 X=a=b=c MAC=`, { UID: "0", X: "a=b=c", MAC: "", ACTION: "drop" }],
    ["ICMP error's embedded header: keys as the Go client splits them", `${DROP_PREFIX}PROTO=ICMP TYPE=3 CODE=3 [SRC=10.0.1.2 DST=192.0.2.2 LEN=28 PROTO=UDP SPT=1 DPT=2 LEN=8 ]`, { PROTO: "UDP", TYPE: "3", CODE: "3", "[SRC": "10.0.1.2", DST: "192.0.2.2", LEN: "8", SPT: "1", DPT: "2", "]": "", ACTION: "drop" }],
    ["a forged ACTION in the line does not override ours; an empty key is skipped", `${DROP_PREFIX}ACTION=accept =x SRC=1.2.3.4`, { SRC: "1.2.3.4", ACTION: "drop" }],
  ];
  for (const [name, line, fields] of cases) {
    test(name, () => {
      const e = parseDropLine(line, AT);
      expect(e).not.toBeNull();
      expect({ ...e?.fields }).toEqual(fields);
    });
  }

  const rejected: Array<[string, string]> = [
    ["a userspace-looking line (syslog tag before the prefix)", `kernel: ${TCP4}`],
    ["a systemd unit's line mentioning the prefix", "firewall-controller[812]: would log nftables-firewall-dropped: SRC=1.2.3.4"],
    ["the old metal prefix is not ours", "nftables-metal-dropped: SRC=1.2.3.4 DST=5.6.7.8"],
    ["prefix without its space", "nftables-firewall-dropped:SRC=1.2.3.4"],
    ["an unrelated kernel line", "veth0: entered promiscuous mode"],
    ["empty", ""],
  ];
  for (const [name, line] of rejected) test(`null: ${name}`, () => expect(parseDropLine(line, AT)).toBeNull());

  test("timestamp: µs since the epoch kept, Date in ms", () => {
    const e = parseDropLine(TCP4, AT);
    expect(e?.timestampUs).toBe(1_700_000_000_123_456n);
    expect(e?.timestamp.getTime()).toBe(1_700_000_000_123);
    const m = parseDropLine(TCP4, { monotonicUs: 6_032_898_268, bootWallUs: 1_700_000_000_000_000n });
    expect(m?.timestampUs).toBe(1_700_006_032_898_268n);
    const d = parseDropLine(TCP4, { wallClock: new Date(1_600_000_000_001) });
    expect(d?.timestampUs).toBe(1_600_000_000_001_000n);
  });

  test("bounds: a line over MAX_LINE_CHARS is cut and its last partial token dropped; at most MAX_FIELDS fields", () => {
    const long = `${DROP_PREFIX}SRC=1.2.3.4 ${"A".repeat(MAX_LINE_CHARS)} DST=5.6.7.8`;
    const e = parseDropLine(long, AT);
    expect({ ...e?.fields }).toEqual({ SRC: "1.2.3.4", ACTION: "drop" });
    const many = `${DROP_PREFIX}${Array.from({ length: 200 }, (_, i) => `K${i}=${i}`).join(" ")} K0=last`;
    const f = parseDropLine(many, AT)?.fields ?? {};
    expect(Object.keys(f).length).toBe(MAX_FIELDS + 1); // + ACTION
    expect(f.K0).toBe("last"); // an existing key is still updated
    expect(f.K100).toBeUndefined();
  });

  test("fields is a null-prototype map: __proto__ is just a key", () => {
    const f = parseDropLine(`${DROP_PREFIX}__proto__=x constructor`, AT)?.fields ?? {};
    expect(f["__proto__"]).toBe("x");
    expect(f["constructor"] as unknown).toBe("");
    expect(Object.getPrototypeOf(f)).toBeNull();
  });
});

describe("parseDropLine scans tokens as the regular-expression split did", () => {
  /** The earlier implementation: split on /\s+/, the cut line's last token popped. */
  function reference(text: string): Record<string, string> | null {
    const prefix = [DROP_PREFIX, ACCEPT_PREFIX].find((p) => text.startsWith(p));
    if (prefix === undefined) return null;
    let rest = text.slice(prefix.length);
    let cut = false;
    if (text.length > MAX_LINE_CHARS) {
      rest = rest.slice(0, Math.max(0, MAX_LINE_CHARS - prefix.length));
      cut = true;
    }
    const tokens = rest.split(/\s+/).filter((t) => t !== "");
    if (cut) tokens.pop();
    const fields: Record<string, string> = Object.create(null);
    let n = 0;
    for (const token of tokens) {
      const eq = token.indexOf("=");
      const key = eq < 0 ? token : token.slice(0, eq);
      if (key === "" || key === "ACTION") continue;
      if (!(key in fields)) {
        if (n >= MAX_FIELDS) continue;
        n++;
      }
      fields[key] = eq < 0 ? "" : token.slice(eq + 1);
    }
    fields.ACTION = prefix === DROP_PREFIX ? "drop" : "accept";
    return fields;
  }
  const piece = fc.oneof(
    fc.constantFrom(" ", "  ", "\t", "\n", "\u00a0", "\u2028", "\u3000", "\ufeff", "\u200b", "=", "==", "ACTION=x", "SYN", "SRC=1.2.3.4", "__proto__=y"),
    fc.string({ unit: "grapheme", maxLength: 8 }),
    fc.string({ unit: fc.constantFrom("A", "B", "=", " "), maxLength: 6 }),
  );
  test("the same fields for random lines, long and cut ones included", () => {
    fc.assert(fc.property(fc.constantFrom(DROP_PREFIX, ACCEPT_PREFIX, "nftables-firewall-other: "), fc.array(piece, { maxLength: 80 }), fc.nat({ max: 5000 }),
      (prefix, pieces, pad) => {
        const line = prefix + pieces.join("") + (pad > 4000 ? " K=" + "v".repeat(pad) : "");
        const got = parseDropLine(line, { wallUs: 1n });
        const want = reference(line);
        expect(got === null ? null : { ...got.fields }).toEqual(want === null ? null : { ...want });
      }), { numRuns: 2000 });
  });
});
