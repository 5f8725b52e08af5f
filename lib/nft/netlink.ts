/**
 * A tiny nf_tables netlink client: the ruleset generation, the
 * counters of one set's or map's elements, and a table's named counters,
 * straight from the kernel. Running `nft` for the same facts first fills nft's
 * whole cache, which costs about a second at large rulesets; a netlink dump of
 * one map costs a few milliseconds.
 *
 * It speaks NETLINK_NETFILTER through libc (`bun:ffi`), so it runs under Bun
 * only; elsewhere (Deno) {@link netlinkAvailable} is false and
 * {@link openNetlink} throws. `bun:ffi` is loaded lazily so that importing this
 * module never fails.
 *
 * Every call is synchronous: `recv` blocks the JS thread until the kernel
 * answers. A dump of a set is answered at once, so this costs less than an
 * await would; a receive timeout (5 s by default) bounds it should the kernel
 * not answer, and caps on the bytes and entries of one dump bound the work.
 * After a failure that leaves the reply stream out of step (timeout, a cap, a
 * malformed reply) the socket is closed and every later call throws: open a
 * new one. Errors the kernel reports (ENOENT for a missing set, say) leave the
 * socket usable.
 *
 * Only what the controller needs is read. The one write is {@link NftNetlink.commit}: a batch of
 * map elements and marker chains (lib/nft/element-batch.ts), which loads a large table's elements
 * at the kernel's speed instead of nft's.
 *
 * @example
 * ```ts
 * import { openNetlink } from "./netlink.ts";
 * const nl = openNetlink({ netns: "fct-firewall-0a1b2c" });
 * try {
 *   console.log(nl.generation());
 *   for (const e of nl.setElementCounters("inet", "firewall", "egress4_ports")) console.log(e.comment, e.packets, e.bytes);
 *   console.log(nl.namedCounters("inet", "firewall").get("drop_total"));
 * } finally {
 *   nl.close();
 * }
 * ```
 * @module
 */
import type { Pointer } from "bun:ffi";
import { FirewallError } from "../errors.ts";
import { type EncodedBatch, elementGetRequest } from "./element-batch.ts";
import { type CommentIndex, commentIndex, slotOfBytes } from "./comment-index.ts";
import type { CounterValues } from "./snapshot.ts";

/** An nftables address family, as `nft` spells it. */
export type NftFamily = "ip" | "ip6" | "inet" | "arp" | "bridge" | "netdev";

/** One element of a set or map that has a counter. */
export interface ElementCounter extends CounterValues {
  /** The element's `comment "..."`, null when it has none. */
  readonly comment: string | null;
}

export interface NetlinkOptions {
  /**
   * Name of a network namespace as `ip netns` knows it (`/run/netns/<name>`).
   * The socket is created in there and keeps talking to that namespace's
   * nf_tables; the calling thread is back in its own namespace before
   * {@link openNetlink} returns. Default: the caller's namespace.
   */
  readonly netns?: string;
  /** How long one reply may take to arrive, in milliseconds (signals do not stretch it). Default 5000. */
  readonly timeoutMs?: number;
}

/** The most bytes one dump may return before it is abandoned (a runaway dump must not eat the heap). */
export const MAX_DUMP_BYTES = 512 * 1024 * 1024;

/** The most set elements or objects one dump may return before it is abandoned. */
export const MAX_DUMP_ENTRIES = 10_000_000;

// --- uapi constants (linux/netlink.h, linux/netfilter/nfnetlink.h, linux/netfilter/nf_tables.h) ---

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0x80000;
const NETLINK_NETFILTER = 12;
const SOL_SOCKET = 1;
// The 64-bit `struct timeval` variants (Bun runs on 64-bit Linux only).
const SO_RCVTIMEO = 20;
const SO_SNDTIMEO = 21;
const SO_SNDBUFFORCE = 32;
const SO_RCVBUFFORCE = 33;
const SOL_NETLINK = 270;
// Error replies carry only the header of the refused message, not all of it again.
const NETLINK_CAP_ACK = 10;
const MSG_DONTWAIT = 0x40;
const O_RDONLY = 0;
const O_CLOEXEC = 0x80000;
const CLONE_NEWNET = 0x40000000;
// With MSG_TRUNC a netlink recv returns the datagram's full length, so a too-small buffer is noticed.
const MSG_TRUNC = 0x20;

const NLMSG_HDRLEN = 16;
const NFGENMSG_LEN = 4;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const NLM_F_REQUEST = 0x1;
const NLM_F_DUMP_INTR = 0x10;
const NLM_F_DUMP = 0x300; // NLM_F_ROOT | NLM_F_MATCH
const NLA_TYPE_MASK = 0x3fff; // without NLA_F_NESTED and NLA_F_NET_BYTEORDER
const NFNETLINK_V0 = 0;
const NFNL_SUBSYS_NFTABLES = 10;

const NFT_MSG_NEWTABLE = 0;
const NFT_MSG_GETTABLE = 1;
const NFTA_TABLE_NAME = 1;
const NFT_MSG_NEWSETELEM = 12;
const NFT_MSG_GETSETELEM = 13;
const NFT_MSG_NEWGEN = 15;
const NFT_MSG_GETGEN = 16;
const NFT_MSG_NEWOBJ = 18;
const NFT_MSG_GETOBJ = 19;

const NFTA_GEN_ID = 1;
const NFTA_LIST_ELEM = 1;
const NFTA_SET_ELEM_LIST_TABLE = 1;
const NFTA_SET_ELEM_LIST_SET = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_SET_ELEM_FLAGS = 3;
const NFTA_SET_ELEM_USERDATA = 6;
const NFTA_SET_ELEM_EXPR = 7;
const NFTA_SET_ELEM_EXPRESSIONS = 11;
const NFT_SET_ELEM_INTERVAL_END = 0x1;
const NFTA_EXPR_NAME = 1;
const NFTA_EXPR_DATA = 2;
const NFTA_COUNTER_BYTES = 1;
const NFTA_COUNTER_PACKETS = 2;
const NFTA_OBJ_TABLE = 1;
const NFTA_OBJ_NAME = 2;
const NFTA_OBJ_TYPE = 3;
const NFTA_OBJ_DATA = 4;
const NFT_OBJECT_COUNTER = 1;
// libnftnl's udata TLVs in NFTA_SET_ELEM_USERDATA (libnftnl/udata.h), where nft keeps the comment.
const NFTNL_UDATA_SET_ELEM_COMMENT = 0;

const FAMILIES: Readonly<Record<NftFamily, number>> = { inet: 1, ip: 2, arp: 3, netdev: 5, bridge: 7, ip6: 10 };

const ERRNO_NAMES: Readonly<Record<number, string>> = {
  1: "EPERM", 2: "ENOENT", 4: "EINTR", 9: "EBADF", 11: "EAGAIN", 12: "ENOMEM", 13: "EACCES", 16: "EBUSY",
  17: "EEXIST", 22: "EINVAL", 24: "EMFILE", 90: "EMSGSIZE", 93: "EPROTONOSUPPORT", 95: "EOPNOTSUPP",
  85: "ERESTART", 97: "EAFNOSUPPORT", 105: "ENOBUFS",
};
const EINTR = 4;
const EAGAIN = 11;
const ERESTART = 85;

/** The kernel's NFT_NAME_MAXLEN, with the NUL. */
const NAME_MAX_BYTES = 255;
/** Replies come as datagrams of at most 32 KiB (the kernel's dump skb); 1 MiB leaves room for any future growth. */
const RECV_BUFFER_BYTES = 1024 * 1024;
/** A dump the set changed under (NLM_F_DUMP_INTR) is repeated this often before giving up. */
const DUMP_ATTEMPTS = 3;
const DEFAULT_TIMEOUT_MS = 5000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// --- libc through bun:ffi, loaded on first use ---

type Ffi = typeof import("bun:ffi");

function bind(ffi: Ffi) {
  const { FFIType: T } = ffi;
  const lib = ffi.dlopen("libc.so.6", {
    socket: { args: [T.i32, T.i32, T.i32], returns: T.i32 },
    setsockopt: { args: [T.i32, T.i32, T.i32, T.ptr, T.u32], returns: T.i32 },
    send: { args: [T.i32, T.ptr, T.u64, T.i32], returns: T.i64_fast },
    recv: { args: [T.i32, T.ptr, T.u64, T.i32], returns: T.i64_fast },
    close: { args: [T.i32], returns: T.i32 },
    open: { args: [T.ptr, T.i32], returns: T.i32 },
    setns: { args: [T.i32, T.i32], returns: T.i32 },
    __errno_location: { args: [], returns: T.ptr },
  });
  const s = lib.symbols;
  return {
    socket: s.socket,
    setsockopt: s.setsockopt,
    send: (fd: number, data: Uint8Array) => Number(s.send(fd, data, data.byteLength, 0)),
    recv: (fd: number, buf: Uint8Array, flags: number) => Number(s.recv(fd, buf, buf.byteLength, flags)),
    close: s.close,
    open: (path: string, flags: number) => s.open(encoder.encode(`${path}\0`), flags),
    setns: s.setns,
    // errno is per thread and every call here runs on the JS thread, so it is read right after the failing call.
    errno: () => ffi.read.i32(s.__errno_location() as Pointer, 0),
  };
}

type Libc = ReturnType<typeof bind>;

let libcCache: Libc | string | undefined;

/** libc, or why it cannot be had (not Bun, no glibc). */
function loadLibc(): Libc | string {
  if (libcCache !== undefined) return libcCache;
  try {
    // import.meta.require is Bun's synchronous require; a static import of bun:ffi would break Deno at load time.
    const req = (import.meta as { require?: (id: string) => unknown }).require;
    libcCache = typeof req === "function" ? bind(req("bun:ffi") as Ffi) : "bun:ffi is not available (not running under Bun)";
  } catch (e) {
    libcCache = `cannot load libc.so.6 through bun:ffi: ${e instanceof Error ? e.message : String(e)}`;
  }
  return libcCache;
}

function libc(): Libc {
  const l = loadLibc();
  if (typeof l === "string") throw new FirewallError("nft_unavailable", `nf_tables netlink: ${l}`);
  return l;
}

const errnoText = (errno: number): string => `${ERRNO_NAMES[errno] ?? "errno"} (errno ${errno})`;

const fail = (message: string, cause?: unknown): FirewallError => new FirewallError("nft_unavailable", message, cause === undefined ? undefined : { cause });

// --- socket setup ---

/** A netlink socket in the caller's namespace, with a receive timeout. */
function newSocket(c: Libc, timeoutMs: number): number {
  const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) throw fail(`nf_tables netlink: socket(AF_NETLINK, NETLINK_NETFILTER) failed: ${errnoText(c.errno())}`);
  // Without a timeout a kernel that never answers would hang the JS thread for good.
  for (const opt of [SO_RCVTIMEO, SO_SNDTIMEO]) {
    const errno = setTimeoutOpt(c, fd, opt, timeoutMs);
    if (errno !== 0) {
      c.close(fd);
      throw fail(`nf_tables netlink: setsockopt(SO_RCVTIMEO/SO_SNDTIMEO) failed: ${errnoText(errno)}`);
    }
  }
  return fd;
}

/** Sets SO_RCVTIMEO or SO_SNDTIMEO; 0, or the errno. */
function setTimeoutOpt(c: Libc, fd: number, opt: number, ms: number): number {
  // struct timeval { long tv_sec; long tv_usec; }; a zero timeval would mean "no timeout", hence at least 1 µs.
  const us = Math.max(1, Math.ceil(ms * 1000));
  const tv = new DataView(new ArrayBuffer(16));
  tv.setBigInt64(0, BigInt(Math.floor(us / 1_000_000)), true);
  tv.setBigInt64(8, BigInt(us % 1_000_000), true);
  return c.setsockopt(fd, SOL_SOCKET, opt, new Uint8Array(tv.buffer), 16) === 0 ? 0 : c.errno();
}

/**
 * A socket created inside namespace `netns`. setns(2) moves only the calling
 * thread, and a socket stays bound to the namespace it was created in, so the
 * thread goes in, creates the socket and comes straight back, all before any
 * other JS can run on it.
 */
function socketInNetns(c: Libc, netns: string, timeoutMs: number): number {
  // A name, not a path: "../" must not reach outside /run/netns.
  if (netns === "" || netns === "." || netns === ".." || netns.includes("/") || netns.includes("\0")) {
    throw new RangeError(`nf_tables netlink: not a network namespace name: ${JSON.stringify(netns)}`);
  }
  const target = c.open(`/run/netns/${netns}`, O_RDONLY | O_CLOEXEC);
  if (target < 0) throw fail(`nf_tables netlink: cannot open network namespace /run/netns/${netns}: ${errnoText(c.errno())}`);
  let home = -1;
  try {
    // thread-self, not self: the namespace of this thread is what must be restored.
    home = c.open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0) throw fail(`nf_tables netlink: cannot open /proc/thread-self/ns/net: ${errnoText(c.errno())}`);
    if (c.setns(target, CLONE_NEWNET) !== 0) throw fail(`nf_tables netlink: setns into ${netns} failed: ${errnoText(c.errno())}`);
    let fd = -1;
    let error: unknown;
    try {
      fd = newSocket(c, timeoutMs);
    } catch (e) {
      error = e;
    }
    if (c.setns(home, CLONE_NEWNET) !== 0) {
      // Left in the wrong namespace, everything this thread does next (sockets, spawned children) would be wrong.
      const errno = c.errno();
      if (fd >= 0) c.close(fd);
      throw fail(`nf_tables netlink: cannot return from network namespace ${netns} to the original one: ${errnoText(errno)}; this thread now runs in ${netns}`);
    }
    if (error !== undefined) throw error;
    return fd;
  } finally {
    c.close(target);
    if (home >= 0) c.close(home);
  }
}

// --- message building and attribute walking ---

interface Attr {
  readonly type: number;
  readonly payload: Uint8Array;
}

const align4 = (n: number): number => (n + 3) & ~3;

const stringAttr = (type: number, value: string, what: string): Attr => {
  const bytes = encoder.encode(`${value}\0`);
  if (value === "" || value.includes("\0") || bytes.length > NAME_MAX_BYTES + 1) {
    throw new RangeError(`nf_tables netlink: not a valid ${what} name: ${JSON.stringify(value)}`);
  }
  return { type, payload: bytes };
};

const u32beAttr = (type: number, value: number): Attr => {
  const payload = new Uint8Array(4);
  new DataView(payload.buffer).setUint32(0, value, false);
  return { type, payload };
};

/** nlmsghdr + nfgenmsg + attributes, each padded to 4 bytes. */
function message(msg: number, flags: number, family: number, seq: number, attrs: readonly Attr[]): Uint8Array {
  const len = NLMSG_HDRLEN + NFGENMSG_LEN + attrs.reduce((n, a) => n + align4(4 + a.payload.length), 0);
  const out = new Uint8Array(len);
  const v = new DataView(out.buffer);
  v.setUint32(0, len, true);
  v.setUint16(4, (NFNL_SUBSYS_NFTABLES << 8) | msg, true);
  v.setUint16(6, flags, true);
  v.setUint32(8, seq, true);
  v.setUint32(12, 0, true); // the kernel fills in our port id
  v.setUint8(16, family);
  v.setUint8(17, NFNETLINK_V0);
  v.setUint16(18, 0, false); // res_id
  let off = NLMSG_HDRLEN + NFGENMSG_LEN;
  for (const a of attrs) {
    v.setUint16(off, 4 + a.payload.length, true);
    v.setUint16(off + 2, a.type, true);
    out.set(a.payload, off + 4);
    off += align4(4 + a.payload.length);
  }
  return out;
}

/** Thrown by the walkers below; the socket is then out of step and gets closed. */
class Malformed extends Error {}

/** The length of the attribute at `off`, checked against its container's `end`. */
function attrLen(v: DataView, off: number, end: number): number {
  const len = v.getUint16(off, true);
  if (len < 4 || off + len > end) throw new Malformed(`attribute of length ${len} at ${off} overruns its container`);
  return len;
}

const attrType = (v: DataView, off: number): number => v.getUint16(off + 2, true) & NLA_TYPE_MASK;

/** Calls `fn(type, start, end)` for each attribute in [start, end); the payload is [start, end). */
function walk(v: DataView, start: number, end: number, fn: (type: number, start: number, end: number) => void): void {
  for (let off = start, len = 0; off + 4 <= end; off += align4(len)) {
    len = attrLen(v, off, end);
    fn(attrType(v, off), off + 4, off + len);
  }
}

const u32be = (v: DataView, start: number, end: number): number => {
  if (end - start < 4) throw new Malformed("u32 attribute too short");
  return v.getUint32(start, false);
};

/** A big-endian u64 as a number: exact up to 2^53, rounded above (a counter that large is ~9 PB). */
const u64be = (v: DataView, start: number, end: number): number => {
  if (end - start < 8) throw new Malformed("u64 attribute too short");
  return v.getUint32(start, false) * 0x1_0000_0000 + v.getUint32(start + 4, false);
};

/** A NUL-terminated string attribute. */
function str(b: Uint8Array, start: number, end: number): string {
  let e = end;
  while (e > start && b[e - 1] === 0) e--;
  // Comments are short and nearly always ASCII; this path is several times faster than TextDecoder for them.
  if (e - start <= 256) {
    let ascii = true;
    for (let i = start; i < e; i++) {
      if ((b[i] as number) >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) return String.fromCharCode.apply(null, b.subarray(start, e) as unknown as number[]);
  }
  return decoder.decode(b.subarray(start, e));
}

const COUNTER_NAME = encoder.encode("counter\0");

/** Whether an NFTA_EXPR_NAME payload is "counter", compared as bytes: this runs once per element. */
function isCounterName(b: Uint8Array, start: number, end: number): boolean {
  // The kernel sends the NUL; tolerate its absence all the same.
  const len = end - start;
  if (len !== 8 && len !== 7) return false;
  for (let i = 0; i < 7; i++) if (b[start + i] !== COUNTER_NAME[i]) return false;
  return len === 7 || b[start + 7] === 0;
}

/** A counter being read; mutable so the per-element path allocates only the result. */
interface Tally {
  packets: number;
  bytes: number;
}

/** Reads the NFTA_COUNTER_* attributes in [start, end) into `into`. */
function readCounter(v: DataView, start: number, end: number, into: Tally): void {
  for (let off = start, len = 0; off + 4 <= end; off += align4(len)) {
    len = attrLen(v, off, end);
    const type = attrType(v, off);
    if (type === NFTA_COUNTER_PACKETS) into.packets = u64be(v, off + 4, off + len);
    else if (type === NFTA_COUNTER_BYTES) into.bytes = u64be(v, off + 4, off + len);
  }
}

/** Whether the nft_expr_attributes nest in [start, end) is a counter; its values are then in `into`. */
function counterExpr(b: Uint8Array, v: DataView, start: number, end: number, into: Tally): boolean {
  let counter = false;
  let dataStart = -1;
  let dataEnd = -1;
  for (let off = start, len = 0; off + 4 <= end; off += align4(len)) {
    len = attrLen(v, off, end);
    const type = attrType(v, off);
    if (type === NFTA_EXPR_NAME) counter = isCounterName(b, off + 4, off + len);
    else if (type === NFTA_EXPR_DATA) {
      dataStart = off + 4;
      dataEnd = off + len;
    }
  }
  if (!counter) return false;
  into.packets = 0;
  into.bytes = 0;
  if (dataStart >= 0) readCounter(v, dataStart, dataEnd, into);
  return true;
}

/**
 * Where the comment is in a libnftnl udata TLV list (type u8, len u8, value) in [start, end):
 * sets `comment.start`/`comment.end` and returns true, or false for none.
 */
function udataComment(b: Uint8Array, start: number, end: number): boolean {
  let off = start;
  while (off + 2 <= end) {
    const type = b[off] as number;
    const len = b[off + 1] as number;
    if (off + 2 + len > end) return false; // truncated: treat as no comment rather than failing the whole dump
    if (type === NFTNL_UDATA_SET_ELEM_COMMENT) {
      comment.start = off + 2;
      comment.end = off + 2 + len;
      return true;
    }
    off += 2 + len;
  }
  return false;
}

/**
 * Comments as strings, one string per distinct comment: thousands of elements share an owner's
 * comment, and a dump of 40,000 elements would otherwise build 40,000 strings (and their hashes,
 * when they are summed by comment). Keyed by a hash of the bytes, checked byte by byte.
 */
const comments = new Map<number, { bytes: Uint8Array; text: string }[]>();
const COMMENTS_MAX = 200_000;
function internedComment(b: Uint8Array, start: number, end: number): string {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) h = Math.imul(h ^ (b[i] as number), 0x01000193);
  const bucket = comments.get(h);
  if (bucket) {
    for (const c of bucket) {
      if (c.bytes.length !== end - start) continue;
      let same = true;
      for (let i = 0; i < c.bytes.length; i++) {
        if (c.bytes[i] !== b[start + i]) {
          same = false;
          break;
        }
      }
      if (same) return c.text;
    }
  }
  const text = str(b, start, end);
  // Bounded: a table of more distinct comments than this starts the cache afresh.
  if (comments.size >= COMMENTS_MAX) comments.clear();
  const entry = { bytes: b.slice(start, end), text };
  if (bucket && comments.has(h)) bucket.push(entry);
  else comments.set(h, [entry]);
  return text;
}

// --- the socket ---

/**
 * A NETLINK_NETFILTER socket for reading nf_tables, bound to one network
 * namespace for its whole life. Get one with {@link openNetlink}; close it
 * with {@link NftNetlink.close} (or `using`).
 *
 * @example
 * ```ts
 * import { openNetlink } from "./netlink.ts";
 * using nl = openNetlink();
 * const before = nl.generation();
 * // ... nft -f ...
 * console.log(nl.generation() > before);
 * ```
 */
export class NftNetlink {
  readonly #c: Libc;
  readonly #where: string;
  readonly #timeoutMs: number;
  readonly #buf = new Uint8Array(RECV_BUFFER_BYTES);
  readonly #view = new DataView(this.#buf.buffer);
  #fd: number;
  /** The last request's sequence number; every reply must carry its request's. */
  #seq = 0;
  #closed: string | null = null;
  #batchReady = false;
  #sndbuf = 0;

  /** Prefer {@link openNetlink}. */
  constructor(options: NetlinkOptions = {}) {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isFinite(timeoutMs) || timeoutMs < 1) throw new RangeError(`nf_tables netlink: timeoutMs must be at least 1, not ${timeoutMs}`);
    this.#c = libc();
    this.#timeoutMs = timeoutMs;
    this.#where = options.netns === undefined ? "" : ` in netns ${options.netns}`;
    this.#fd = options.netns === undefined ? newSocket(this.#c, timeoutMs) : socketInNetns(this.#c, options.netns, timeoutMs);
  }

  /** False once {@link close}d, or closed after a failure that left the reply stream out of step. */
  get open(): boolean {
    return this.#closed === null;
  }

  /**
   * The ruleset generation id of the namespace (NFT_MSG_GETGEN). Every
   * committed nf_tables transaction, of any table, increases it by one; reads
   * leave it alone. It is a u32 and wraps.
   *
   * @example
   * ```ts
   * import { openNetlink } from "./netlink.ts";
   * using nl = openNetlink();
   * console.log(nl.generation()); // 42
   * ```
   */
  generation(): number {
    let id: number | null = null;
    this.#exchange(message(NFT_MSG_GETGEN, NLM_F_REQUEST, 0, this.#next(), []), NFT_MSG_NEWGEN, false, "the ruleset generation", (start, end) => {
      walk(this.#view, start, end, (type, s, e) => {
        if (type === NFTA_GEN_ID) id = u32be(this.#view, s, e);
      });
    });
    if (id === null) throw this.#outOfStep("the ruleset generation", "the reply has no NFTA_GEN_ID");
    return id;
  }

  /**
   * The counter and comment of every element of set or map `set` in `table`
   * (NFT_MSG_GETSETELEM dump), in the kernel's order. Interval ends and
   * elements without a counter expression are left out; an element whose
   * expressions include a counter reports the first one. A missing table or
   * set throws (ENOENT).
   *
   * @example
   * ```ts
   * import { openNetlink } from "./netlink.ts";
   * using nl = openNetlink();
   * for (const { comment, packets, bytes } of nl.setElementCounters("inet", "firewall", "egress4_ports")) {
   *   console.log(comment, packets, bytes); // "accept traffic for np a tcp" 3 180
   * }
   * ```
   */
  setElementCounters(family: NftFamily, table: string, set: string): ElementCounter[] {
    const out: ElementCounter[] = [];
    this.#elements(family, table, set, () => (out.length = 0), (b) => {
      out.push({ comment: commentText(b), packets: tally.packets, bytes: tally.bytes });
    });
    return out;
  }

  /**
   * The counters of the elements of `set` in `table` summed by comment (elements without one
   * left out): what the statistics and the metrics need of a map, read without an object per
   * element. Otherwise as {@link setElementCounters}.
   *
   * @example
   * ```ts
   * import { openNetlink } from "./netlink.ts";
   * using nl = openNetlink();
   * console.log(nl.setElementSums("inet", "firewall", "egress4_ports").get("accept traffic for np a tcp")); // { packets: 3, bytes: 180 }
   * ```
   */
  setElementSums(family: NftFamily, table: string, set: string): Map<string, CounterValues> {
    // Slots for no comment: every comment is one the index does not know, summed apart.
    return this.setElementSlots(family, table, set, NO_COMMENTS, NO_SLOTS, NO_SLOTS);
  }

  /**
   * The counters of the elements of `set` in `table` added up by comment into the slots of
   * `index`: an element whose comment has slot `s` adds to `packets[s]` and `bytes[s]` (both
   * zeroed first), without a string or an object per element. Elements with a comment the index
   * does not know are summed by comment into the map returned (empty when the index knows every
   * owner); elements without one are left out. Otherwise as {@link setElementCounters}.
   *
   * @example
   * ```ts
   * import { commentIndex } from "./comment-index.ts";
   * import { openNetlink } from "./netlink.ts";
   * using nl = openNetlink();
   * const index = commentIndex(["accept traffic for np a tcp"]);
   * const packets = new Float64Array(1), bytes = new Float64Array(1);
   * nl.setElementSlots("inet", "firewall", "egress4_ports", index, packets, bytes);
   * console.log(packets[0], bytes[0]); // 3 180
   * ```
   */
  setElementSlots(family: NftFamily, table: string, set: string, index: CommentIndex, packets: Float64Array, bytes: Float64Array): Map<string, CounterValues> {
    if (packets.length < index.comments.length || bytes.length < index.comments.length) throw new RangeError("nf_tables netlink: fewer counter slots than comments");
    const unknown = new Map<string, Tally>();
    const restart = () => {
      packets.fill(0);
      bytes.fill(0);
      unknown.clear();
    };
    this.#elements(family, table, set, restart, (b) => {
      if (comment.start < 0) return;
      const slot = slotOfBytes(index, b, comment.start, comment.end);
      if (slot < 0) addTo(unknown, internedComment(b, comment.start, comment.end));
      else {
        packets[slot] = (packets[slot] as number) + tally.packets;
        bytes[slot] = (bytes[slot] as number) + tally.bytes;
      }
    });
    return unknown;
  }

  /**
   * The counter and comment of the elements of `set` with the given keys (as the renderer prints
   * them; `type` is the set's key type), in the kernel's order: what a change carries from an
   * owner's elements, without dumping the whole map. A key the set does not hold throws (ENOENT).
   *
   * @example
   * ```ts
   * import { openNetlink } from "./netlink.ts";
   * using nl = openNetlink();
   * console.log(nl.elementCountersByKey("inet", "firewall", "egress4_any", "ipv4_addr", ["198.51.100.0/24"]));
   * ```
   */
  elementCountersByKey(family: NftFamily, table: string, set: string, type: string, keys: readonly string[]): ElementCounter[] {
    if (keys.length === 0) return [];
    if (family !== "inet") throw new RangeError(`nf_tables netlink: elements by key are read for family inet only, not ${family}`);
    const what = `elements of set ${family} ${table} ${set}`;
    if (this.#closed !== null) throw fail(`nf_tables netlink: reading ${what}${this.#where}: the socket is ${this.#closed}`);
    const out: ElementCounter[] = [];
    const b = this.#buf;
    const v = this.#view;
    // At most 500 keys a request: its element list is one attribute (at most 64 KiB; an IPv6
    // concatenated key takes ~80 bytes), and the answers to it must fit the receive buffer.
    for (let i = 0; i < keys.length; i += 500) {
      const request = elementGetRequest(table, set, type, keys.slice(i, i + 500), this.#next());
      // One answer (a datagram of its own) per element: the default receive buffer holds ~200.
      this.#prepareForBatches(request.length);
      this.#exchange(request, NFT_MSG_NEWSETELEM, "ack", what, (start, end) => {
        walk(v, start, end, (t, s, e) => {
          if (t === NFTA_SET_ELEM_LIST_SET && str(b, s, e) !== set) throw new Malformed(`reply for set ${str(b, s, e)}`);
          if (t !== NFTA_SET_ELEM_LIST_ELEMENTS) return;
          walk(v, s, e, (listType, ls, le) => {
            if (listType !== NFTA_LIST_ELEM) return;
            if (countedElement(b, v, ls, le)) out.push({ comment: commentText(b), packets: tally.packets, bytes: tally.bytes });
          });
        });
      });
    }
    return out;
  }

  /** Dumps the elements of one set, calling `onElement` for each counted one; `restart` before a repeated dump. */
  #elements(family: NftFamily, table: string, set: string, restart: () => void, onElement: (b: Uint8Array) => void): void {
    const what = `set ${family} ${table} ${set}`;
    const attrs = [stringAttr(NFTA_SET_ELEM_LIST_TABLE, table, "table"), stringAttr(NFTA_SET_ELEM_LIST_SET, set, "set")];
    this.#dump(what, () => {
      restart();
      let seen = 0;
      const b = this.#buf;
      const v = this.#view;
      const request = message(NFT_MSG_GETSETELEM, NLM_F_REQUEST | NLM_F_DUMP, familyNumber(family), this.#next(), attrs);
      const interrupted = this.#exchange(request, NFT_MSG_NEWSETELEM, true, what, (start, end) => {
        walk(v, start, end, (type, s, e) => {
          // The kernel answers only for the set asked; a reply for another would mean we read someone else's stream.
          if (type === NFTA_SET_ELEM_LIST_TABLE && str(b, s, e) !== table) throw new Malformed(`reply for table ${str(b, s, e)}`);
          if (type === NFTA_SET_ELEM_LIST_SET && str(b, s, e) !== set) throw new Malformed(`reply for set ${str(b, s, e)}`);
          if (type !== NFTA_SET_ELEM_LIST_ELEMENTS) return;
          walk(v, s, e, (listType, ls, le) => {
            if (listType !== NFTA_LIST_ELEM) return;
            if (++seen > MAX_DUMP_ENTRIES) throw new DumpTooLarge(`more than ${MAX_DUMP_ENTRIES} elements`);
            if (countedElement(b, v, ls, le)) onElement(b);
          });
        });
      });
      return { interrupted, value: undefined };
    });
  }

  /**
   * Packets and bytes of every named counter (`counter NAME { ... }`) in
   * `table` (NFT_MSG_GETOBJ dump), by name. A table without counters, or
   * without existence, gives an empty map: the kernel treats the table as a
   * filter here.
   *
   * @example
   * ```ts
   * import { openNetlink } from "./netlink.ts";
   * using nl = openNetlink();
   * console.log(nl.namedCounters("inet", "firewall").get("drop_total")); // { packets: 5, bytes: 300 }
   * ```
   */
  namedCounters(family: NftFamily, table: string): Map<string, CounterValues> {
    const what = `counters of table ${family} ${table}`;
    const attrs = [stringAttr(NFTA_OBJ_TABLE, table, "table"), u32beAttr(NFTA_OBJ_TYPE, NFT_OBJECT_COUNTER)];
    return this.#dump(what, () => {
      const out = new Map<string, CounterValues>();
      let seen = 0;
      const b = this.#buf;
      const v = this.#view;
      const request = message(NFT_MSG_GETOBJ, NLM_F_REQUEST | NLM_F_DUMP, familyNumber(family), this.#next(), attrs);
      const interrupted = this.#exchange(request, NFT_MSG_NEWOBJ, true, what, (start, end) => {
        if (++seen > MAX_DUMP_ENTRIES) throw new DumpTooLarge(`more than ${MAX_DUMP_ENTRIES} objects`);
        let objTable: string | null = null;
        let name: string | null = null;
        let objType = -1;
        let data: [number, number] | null = null;
        walk(v, start, end, (type, s, e) => {
          if (type === NFTA_OBJ_TABLE) objTable = str(b, s, e);
          else if (type === NFTA_OBJ_NAME) name = str(b, s, e);
          else if (type === NFTA_OBJ_TYPE) objType = u32be(v, s, e);
          else if (type === NFTA_OBJ_DATA) data = [s, e];
        });
        // Filtered again here: the dump filter is the kernel's to honour, and one that ignores it returns every table's objects.
        if (objTable !== table || objType !== NFT_OBJECT_COUNTER || name === null) return;
        const d = data as [number, number] | null;
        const values: Tally = { packets: 0, bytes: 0 };
        if (d !== null) readCounter(v, d[0], d[1], values);
        out.set(name, values);
      });
      return { interrupted, value: out };
    });
  }

  /**
   * Every table of the namespace, every family (NFT_MSG_GETTABLE dump): what `nft list tables`
   * says, without the cache of every object nft fills first (half a second at 10,000 policies).
   *
   * @example
   * ```ts
   * import { openNetlink } from "./netlink.ts";
   * using nl = openNetlink();
   * console.log(nl.tables()); // e.g. [ { family: "inet", name: "firewall" } ]
   * ```
   */
  tables(): { family: NftFamily; name: string }[] {
    const what = "the tables";
    const names = Object.fromEntries(Object.entries(FAMILIES).map(([k, n]) => [n, k as NftFamily])) as Record<number, NftFamily>;
    return this.#dump(what, () => {
      const out: { family: NftFamily; name: string }[] = [];
      const b = this.#buf;
      const v = this.#view;
      const request = message(NFT_MSG_GETTABLE, NLM_F_REQUEST | NLM_F_DUMP, 0, this.#next(), []);
      const interrupted = this.#exchange(request, NFT_MSG_NEWTABLE, true, what, (start, end) => {
        if (out.length >= MAX_DUMP_ENTRIES) throw new DumpTooLarge(`more than ${MAX_DUMP_ENTRIES} tables`);
        // The family is the nfgenmsg's first byte, just before the attributes.
        const family = names[b[start - NFGENMSG_LEN] as number];
        let name: string | null = null;
        walk(v, start, end, (type, s, e) => {
          if (type === NFTA_TABLE_NAME) name = str(b, s, e);
        });
        if (family !== undefined && name !== null) out.push({ family, name });
      });
      return { interrupted, value: out };
    });
  }

  /**
   * Commits one transaction batch ({@link elementBatch}): the kernel applies all of it or, on any
   * error, none of it. Throws a FirewallError (`nft_apply_failed`) naming the kernel's errno when
   * it refused; `ERESTART` means someone committed since the batch's generation. The kernel handles
   * the batch inside the send, so every answer is queued when it returns; they are all read here.
   * An outcome that cannot be known (a lost answer) closes the socket and throws: the caller must
   * then look at the kernel before trusting anything.
   *
   * @example
   * ```ts
   * import { elementBatch } from "./element-batch.ts";
   * import { openNetlink } from "./netlink.ts";
   * using nl = openNetlink();
   * const generation = nl.generation();
   * nl.commit(elementBatch({ table: "firewall", generation, verdict: "accept", maps: [], chains: ["marker"] }));
   * ```
   */
  commit(batch: EncodedBatch): void {
    const what = "a transaction";
    if (this.#closed !== null) throw fail(`nf_tables netlink: sending ${what}${this.#where}: the socket is ${this.#closed}`);
    const c = this.#c;
    this.#prepareForBatches(batch.bytes.length);
    // The batch numbers its own messages; later requests continue above them.
    this.#seq = Math.max(this.#seq, batch.lastSeq + 1) >>> 0;
    const sent = c.send(this.#fd, batch.bytes);
    if (sent !== batch.bytes.length) {
      const errno = sent < 0 ? c.errno() : 0;
      // Refused whole before the kernel read it (too large, say): nothing applied, the socket is fine.
      if (sent < 0 && errno !== EINTR) throw new FirewallError("nft_apply_failed", `nf_tables netlink: sending ${what}${this.#where} failed: ${errnoText(errno)}; nothing was applied`);
      throw this.#outOfStep(what, sent < 0 ? `send failed: ${errnoText(errno)}` : `send wrote ${sent} of ${batch.bytes.length} bytes`);
    }
    const v = this.#view;
    let acked = false;
    const refusals: string[] = [];
    let restart = false;
    for (;;) {
      const n = c.recv(this.#fd, this.#buf, MSG_DONTWAIT | MSG_TRUNC);
      if (n < 0) {
        const errno = c.errno();
        if (errno === EAGAIN) break;
        if (errno === EINTR) continue;
        // ENOBUFS: answers were lost, so whether it committed is not known.
        throw this.#outOfStep(what, `reading its answers failed: ${errnoText(errno)}; whether it was applied is unknown`);
      }
      if (n > this.#buf.length) throw this.#outOfStep(what, `a ${n}-byte answer does not fit the ${this.#buf.length}-byte buffer`);
      for (let off = 0; off + NLMSG_HDRLEN <= n;) {
        const len = v.getUint32(off, true);
        if (len < NLMSG_HDRLEN || off + len > n) throw this.#outOfStep(what, `malformed answer: message of length ${len} at ${off}`);
        const type = v.getUint16(off + 4, true);
        const seq = v.getUint32(off + 8, true);
        if (type === NLMSG_ERROR && len >= NLMSG_HDRLEN + 4 && seq >= batch.firstSeq && seq <= batch.lastSeq + 1) {
          const code = v.getInt32(off + NLMSG_HDRLEN, true);
          if (code === 0 && seq === batch.lastSeq) acked = true;
          else if (code < 0) {
            if (-code === ERESTART) restart = true;
            refusals.push(`${seq === batch.firstSeq ? "the batch" : `message ${seq - batch.firstSeq}`}: ${errnoText(-code)}`);
          }
        } else if (type !== NLMSG_DONE) {
          throw this.#outOfStep(what, `unexpected answer of type 0x${type.toString(16)} with sequence number ${seq}`);
        }
        off += align4(len);
      }
    }
    if (refusals.length > 0) {
      const why = restart ? "the ruleset changed since the batch was made (another transaction committed first)" : `the kernel refused it (${refusals.slice(0, 5).join("; ")}${refusals.length > 5 ? `; ${refusals.length - 5} more` : ""})`;
      throw new FirewallError("nft_apply_failed", `nf_tables netlink: ${what}${this.#where} was not applied: ${why}; a transaction is atomic, so nothing of it is in force`);
    }
    if (!acked) throw this.#outOfStep(what, "no acknowledgement arrived; whether it was applied is unknown");
  }

  /** Send and receive buffers large enough for one batch (or request) of `bytes` and its answers (root may force them). */
  #prepareForBatches(bytes: number): void {
    const c = this.#c;
    const int = (n: number) => new Uint8Array(new Int32Array([n]).buffer);
    if (!this.#batchReady) {
      if (c.setsockopt(this.#fd, SOL_NETLINK, NETLINK_CAP_ACK, int(1), 4) !== 0) throw fail(`nf_tables netlink: setsockopt(NETLINK_CAP_ACK) failed: ${errnoText(c.errno())}`);
      if (c.setsockopt(this.#fd, SOL_SOCKET, SO_RCVBUFFORCE, int(4 * 1024 * 1024), 4) !== 0) throw fail(`nf_tables netlink: setsockopt(SO_RCVBUFFORCE) failed: ${errnoText(c.errno())}`);
      this.#batchReady = true;
    }
    // The kernel takes a batch in one datagram, which must fit the send buffer.
    if (bytes + 4096 > this.#sndbuf) {
      const size = Math.max(bytes + 65536, 1024 * 1024);
      if (c.setsockopt(this.#fd, SOL_SOCKET, SO_SNDBUFFORCE, int(size), 4) !== 0) throw fail(`nf_tables netlink: setsockopt(SO_SNDBUFFORCE) failed: ${errnoText(c.errno())}`);
      this.#sndbuf = size;
    }
  }

  /** Closes the socket; later calls throw. Safe to call twice. */
  close(): void {
    this.#shut("closed");
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #next(): number {
    this.#seq = (this.#seq + 1) >>> 0;
    return this.#seq;
  }

  #shut(reason: string): void {
    if (this.#closed !== null) return;
    this.#closed = reason;
    this.#c.close(this.#fd);
    this.#fd = -1;
  }

  /** Closes the socket, whose replies can no longer be matched to requests, and says why. */
  #outOfStep(what: string, reason: string): FirewallError {
    this.#shut(`closed after an earlier failure: ${reason}`);
    return fail(`nf_tables netlink: reading ${what}${this.#where}: ${reason}; the socket is closed`);
  }

  /** Runs `attempt` again while the kernel flags the dump as interrupted by a concurrent change. */
  #dump<T>(what: string, attempt: () => { interrupted: boolean; value: T }): T {
    for (let i = 1; ; i++) {
      const r = attempt();
      if (!r.interrupted) return r.value;
      if (i >= DUMP_ATTEMPTS) throw fail(`nf_tables netlink: ${what}${this.#where} changed during each of ${DUMP_ATTEMPTS} dumps`);
    }
  }

  /**
   * Sends `request` and hands each reply of type `expect` to `onMessage` with
   * its attributes' range (after nlmsghdr and nfgenmsg), until NLMSG_DONE for a
   * dump or the first reply otherwise. Returns whether the kernel flagged the
   * dump as interrupted (NLM_F_DUMP_INTR: the set changed while it was read).
   */
  #exchange(request: Uint8Array, expect: number, dump: boolean | "ack", what: string, onMessage: (start: number, end: number) => void): boolean {
    if (this.#closed !== null) throw fail(`nf_tables netlink: reading ${what}${this.#where}: the socket is ${this.#closed}`);
    const c = this.#c;
    const v = this.#view;
    const seq = new DataView(request.buffer).getUint32(8, true);
    const sent = c.send(this.#fd, request);
    if (sent !== request.length) throw this.#outOfStep(what, sent < 0 ? `send failed: ${errnoText(c.errno())}` : `send wrote ${sent} of ${request.length} bytes`);
    const expectType = (NFNL_SUBSYS_NFTABLES << 8) | expect;
    let interrupted = false;
    let total = 0;
    for (;;) {
      const n = this.#recv(what);
      total += n;
      if (total > MAX_DUMP_BYTES) throw this.#outOfStep(what, `the dump exceeds ${MAX_DUMP_BYTES} bytes`);
      let off = 0;
      try {
        while (off + NLMSG_HDRLEN <= n) {
          const len = v.getUint32(off, true);
          const type = v.getUint16(off + 4, true);
          const flags = v.getUint16(off + 6, true);
          if (len < NLMSG_HDRLEN || off + len > n) throw new Malformed(`message of length ${len} at ${off} of a ${n}-byte datagram`);
          const got = v.getUint32(off + 8, true);
          if (got !== seq) throw new Malformed(`reply with sequence number ${got}, expected ${seq}`);
          if (flags & NLM_F_DUMP_INTR) interrupted = true;
          if (type === NLMSG_ERROR || type === NLMSG_DONE) {
            // Both carry an int: 0, or a negative errno (an error, or a dump that failed part way).
            const code = len >= NLMSG_HDRLEN + 4 ? v.getInt32(off + NLMSG_HDRLEN, true) : 0;
            if (code < 0) throw fail(`nf_tables netlink: reading ${what}${this.#where} failed: ${errnoText(-code)}`, errnoCause(-code));
            if (type === NLMSG_DONE || dump !== true) return interrupted; // an ACK ends a non-dump request, too
          } else {
            if (type !== expectType) throw new Malformed(`unexpected reply type 0x${type.toString(16)}, expected 0x${expectType.toString(16)}`);
            if (len < NLMSG_HDRLEN + NFGENMSG_LEN) throw new Malformed("reply shorter than its nfgenmsg");
            onMessage(off + NLMSG_HDRLEN + NFGENMSG_LEN, off + len);
            // "ack": replies until the acknowledgement (one per element asked for).
            if (dump === false) return interrupted;
          }
          off += align4(len);
        }
      } catch (e) {
        if (e instanceof Malformed) throw this.#outOfStep(what, `malformed reply: ${e.message}`);
        // The rest of an abandoned dump would still be queued (and the kernel refuses a new dump meanwhile).
        if (e instanceof DumpTooLarge) throw this.#outOfStep(what, `the dump has ${e.message}`);
        throw e;
      }
    }
  }

  /** One datagram into the buffer; its length. */
  #recv(what: string): number {
    const c = this.#c;
    const deadline = performance.now() + this.#timeoutMs;
    let shortened = false;
    try {
      for (;;) {
        const n = c.recv(this.#fd, this.#buf, MSG_TRUNC);
        if (n > this.#buf.length) throw this.#outOfStep(what, `a ${n}-byte reply does not fit the ${this.#buf.length}-byte buffer`);
        if (n > 0) return n;
        if (n === 0) throw this.#outOfStep(what, "empty reply");
        const errno = c.errno();
        const left = deadline - performance.now();
        if (errno !== EINTR || left <= 0) {
          throw this.#outOfStep(what, errno === EINTR || errno === EAGAIN ? `no reply within ${this.#timeoutMs} ms` : `recv failed: ${errnoText(errno)}`);
        }
        // With SO_RCVTIMEO a signal (SIGCHLD from any child process) fails recv with EINTR even under SA_RESTART.
        // Retry for the time that is left only, so a stream of signals cannot stretch the wait.
        const e = setTimeoutOpt(c, this.#fd, SO_RCVTIMEO, left);
        if (e !== 0) throw this.#outOfStep(what, `setsockopt(SO_RCVTIMEO) failed: ${errnoText(e)}`);
        shortened = true;
      }
    } finally {
      if (shortened && this.#closed === null && setTimeoutOpt(c, this.#fd, SO_RCVTIMEO, this.#timeoutMs) !== 0) {
        this.#shut("closed after its receive timeout could not be restored");
      }
    }
  }
}

class DumpTooLarge extends Error {}

/** A Node-style cause, so callers can tell ENOENT from the rest without parsing the message. */
function errnoCause(errno: number): Error & { errno: number; code: string } {
  const code = ERRNO_NAMES[errno] ?? `E${errno}`;
  return Object.assign(new Error(`${code} (errno ${errno})`), { errno, code });
}

function familyNumber(family: NftFamily): number {
  const n = FAMILIES[family];
  if (n === undefined) throw new RangeError(`nf_tables netlink: unknown family ${JSON.stringify(family)}`);
  return n;
}

const tally: Tally = { packets: 0, bytes: 0 };
const NO_COMMENTS = commentIndex([]);
const NO_SLOTS = new Float64Array(0);

/** Where the element {@link countedElement} read last keeps its comment. */
const comment = { start: -1, end: -1 };

/**
 * One nft_set_elem_attributes nest: false for interval ends and uncounted elements; else true,
 * with its counter in `tally` and its comment's bytes at [comment.start, comment.end) of `b`
 * (comment.start < 0: none).
 */
function countedElement(b: Uint8Array, v: DataView, start: number, end: number): boolean {
  // Plain loops, not walk(): this runs for every element, and closures per element cost as much as the kernel's dump.
  let flags = 0;
  let udataStart = -1;
  let udataEnd = -1;
  let counted = false;
  for (let off = start, len = 0; off + 4 <= end; off += align4(len)) {
    len = attrLen(v, off, end);
    const type = attrType(v, off);
    if (type === NFTA_SET_ELEM_FLAGS) flags = u32be(v, off + 4, off + len);
    else if (type === NFTA_SET_ELEM_USERDATA) {
      udataStart = off + 4;
      udataEnd = off + len;
    }
    else if (type === NFTA_SET_ELEM_EXPR && !counted) counted = counterExpr(b, v, off + 4, off + len, tally);
    else if (type === NFTA_SET_ELEM_EXPRESSIONS && !counted) {
      const listEnd = off + len;
      for (let l = off + 4, llen = 0; l + 4 <= listEnd && !counted; l += align4(llen)) {
        llen = attrLen(v, l, listEnd);
        if (attrType(v, l) === NFTA_LIST_ELEM) counted = counterExpr(b, v, l + 4, l + llen, tally);
      }
    }
  }
  if (flags & NFT_SET_ELEM_INTERVAL_END || !counted) return false;
  if (udataStart < 0 || !udataComment(b, udataStart, udataEnd)) comment.start = comment.end = -1;
  return true;
}

/** Adds the {@link tally} into `sums` under `key`. */
function addTo(sums: Map<string, Tally>, key: string): void {
  const t = sums.get(key);
  if (t === undefined) sums.set(key, { packets: tally.packets, bytes: tally.bytes });
  else {
    t.packets += tally.packets;
    t.bytes += tally.bytes;
  }
}

/** The comment {@link countedElement} found, as a string (null: none). */
const commentText = (b: Uint8Array): string | null => (comment.start < 0 ? null : internedComment(b, comment.start, comment.end));

/**
 * Opens an nf_tables netlink socket (reads, and element batches by {@link NftNetlink.commit}), in network namespace
 * `options.netns` when given. Throws a FirewallError (`nft_unavailable`) when
 * netlink cannot be had (not Bun, no such namespace, no permission).
 *
 * @example
 * ```ts
 * import { openNetlink } from "./netlink.ts";
 * const nl = openNetlink({ netns: "fct-firewall-0a1b2c", timeoutMs: 2000 });
 * console.log(nl.generation());
 * nl.close();
 * ```
 */
export function openNetlink(options: NetlinkOptions = {}): NftNetlink {
  return new NftNetlink(options);
}

/**
 * Whether nf_tables can be read over netlink here: Bun's FFI and glibc load
 * and a NETLINK_NETFILTER socket opens in the caller's namespace. Callers fall
 * back to `nft` when it is false.
 *
 * @example
 * ```ts
 * import { netlinkAvailable, openNetlink } from "./netlink.ts";
 * if (netlinkAvailable()) openNetlink().close();
 * ```
 */
export function netlinkAvailable(): boolean {
  const c = loadLibc();
  if (typeof c === "string") return false;
  const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) return false;
  c.close(fd);
  return true;
}

/**
 * A reader for the applier and the statistics (lib/nft/client.ts's KernelReader) that opens its
 * socket on first use and again after the socket closed itself (a timeout or a broken dump): one
 * failed read fails that call only. Undefined where netlink cannot be used (not Bun, no libc):
 * the callers then fall back to `nft`.
 *
 * @example
 * ```ts
 * import { kernelReader } from "./netlink.ts";
 * const reader = kernelReader();
 * console.log(typeof reader?.generation());
 * ```
 */
export function kernelReader(options: NetlinkOptions = {}): {
  generation(): number;
  setElementCounters(family: "inet", table: string, set: string): ElementCounter[];
  setElementSums(family: "inet", table: string, set: string): Map<string, CounterValues>;
  setElementSlots(family: "inet", table: string, set: string, index: CommentIndex, packets: Float64Array, bytes: Float64Array): Map<string, CounterValues>;
  elementCountersByKey(family: "inet", table: string, set: string, type: string, keys: readonly string[]): ElementCounter[];
  namedCounters(family: "inet", table: string): Map<string, CounterValues>;
  tables(): { family: NftFamily; name: string }[];
  commit(batch: EncodedBatch): void;
} | undefined {
  if (!netlinkAvailable()) return undefined;
  let socket: NftNetlink | undefined;
  const use = (): NftNetlink => {
    if (!socket?.open) socket = openNetlink(options);
    return socket;
  };
  return {
    generation: () => use().generation(),
    setElementCounters: (family, table, set) => use().setElementCounters(family, table, set),
    setElementSums: (family, table, set) => use().setElementSums(family, table, set),
    setElementSlots: (family, table, set, index, packets, bytes) => use().setElementSlots(family, table, set, index, packets, bytes),
    elementCountersByKey: (family, table, set, type, keys) => use().elementCountersByKey(family, table, set, type, keys),
    namedCounters: (family, table) => use().namedCounters(family, table),
    tables: () => use().tables(),
    commit: (batch) => use().commit(batch),
  };
}
