import { afterAll, describe, expect, test } from "bun:test";
import { expectFirewallError } from "../firewall-error.ts";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FirewallError } from "../../lib/errors.ts";
import { loadManifests, MAX_ALIASES, MAX_DEPTH, MAX_FILE_BYTES, MAX_TOTAL_BYTES, parseManifestText } from "../../lib/manifests/load.ts";

const FIXTURES = join(import.meta.dir, "..", "fixtures", "manifests");
const names = (objs: readonly { object: unknown }[]) => objs.map((o) => (o.object as { metadata?: { name?: string } }).metadata?.name);

const temp = mkdtempSync(join(tmpdir(), "fct-manifests-"));
afterAll(() => rmSync(temp, { recursive: true, force: true }));


describe("parseManifestText", () => {
  test("multi-document YAML gives one object per non-empty document, with its file and document index", () => {
    const objs = parseManifestText("kind: A\nmetadata: {name: a}\n---\n---\n# c\n---\nkind: B\nmetadata: {name: b}\n", "x.yaml");
    expect(names(objs)).toEqual(["a", "b"]);
    expect(objs.map((o) => o.source)).toEqual(["x.yaml#0", "x.yaml#3"]);
  });

  test("kind: List is expanded, each item naming its place", () => {
    const objs = parseManifestText("kind: List\nitems:\n- {kind: A, metadata: {name: a}}\n- {kind: B, metadata: {name: b}}\n", "l.yaml");
    expect(names(objs)).toEqual(["a", "b"]);
    expect(objs.map((o) => o.source)).toEqual(["l.yaml#0.items[0]", "l.yaml#0.items[1]"]);
  });

  test("an empty List gives nothing; an empty file gives nothing", () => {
    expect(parseManifestText("kind: List\nitems: []\n", "e.yaml")).toEqual([]);
    expect(parseManifestText("", "e.yaml")).toEqual([]);
    expect(parseManifestText("---\n# nothing\n", "e.yaml")).toEqual([]);
  });

  test("JSON is read too", () => {
    expect(names(parseManifestText('{"kind": "A", "metadata": {"name": "j"}}', "j.json"))).toEqual(["j"]);
  });

  test("scalars and lists are passed on as they are (the classifier rejects them)", () => {
    expect(parseManifestText("just a string\n", "s.yaml").map((o) => o.object)).toEqual(["just a string"]);
  });

  test.each([
    ["an unclosed flow mapping", "kind: A\nmetadata: {name: a\n"],
    ["a tab-indented block", "kind: A\nmetadata:\n\tname: a\n"],
    ["a bad indentation", "a:\n  b: 1\n c: 2\n"],
    ["an unclosed quote", 'kind: "A\n'],
  ])("a YAML syntax error (%s) is input_unreadable naming the file", (_what, text) => {
    let err: unknown;
    try {
      parseManifestText(text, "/etc/manifests/broken.yaml");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FirewallError);
    expect((err as FirewallError).code).toBe("input_unreadable");
    expect((err as FirewallError).message).toContain("/etc/manifests/broken.yaml");
  });

  test("an alias bomb is refused, not expanded", () => {
    const bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]", ...Array.from({ length: 8 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10).fill(`*${String.fromCharCode(97 + i)}`).join(", ")}]`)].join("\n");
    expect(() => parseManifestText(bomb, "bomb.yaml")).toThrow();
  });
});

describe("loadManifests", () => {
  test("a multi-document file", async () => {
    const objs = await loadManifests(join(FIXTURES, "multi.yaml"));
    expect(objs.map((o) => (o.object as { kind: string }).kind)).toEqual(["Firewall", "ClusterwideNetworkPolicy", "Service"]);
    for (const o of objs) expect(o.source).toStartWith(join(FIXTURES, "multi.yaml#"));
  });

  test("a file with a kind: List and a following document", async () => {
    expect(names(await loadManifests(join(FIXTURES, "list.yaml")))).toEqual(["first", "second", "after-the-list"]);
  });

  test("a directory is read recursively, in sorted path order, only .yaml/.yml/.json files", async () => {
    const objs = await loadManifests(join(FIXTURES, "dir"));
    expect(names(objs)).toEqual(["a", "b", "c", "d1", "d2"]);
    expect(objs.map((o) => o.source.slice(FIXTURES.length + 1))).toEqual(["dir/a.yml#0", "dir/b.yaml#0", "dir/sub/c.json#0", "dir/sub/deeper/d.yaml#0", "dir/sub/deeper/d.yaml#1"]);
  });

  test("a YAML syntax error is input_unreadable naming the file and the document", async () => {
    const e = await expectFirewallError(loadManifests(join(FIXTURES, "bad.yaml")));
    expect(e.code).toBe("input_unreadable");
    expect(e.message).toContain(join(FIXTURES, "bad.yaml"));
    expect(e.message).toContain("bad.yaml#1"); // documents count from 0, as in every object's source
  });

  test("a syntax error in one file of a directory fails the whole load, naming that file", async () => {
    const d = join(temp, "one-bad");
    mkdirSync(d);
    writeFileSync(join(d, "a.yaml"), "kind: A\n");
    writeFileSync(join(d, "b.yaml"), "kind: [\n");
    const e = await expectFirewallError(loadManifests(d));
    expect(e.code).toBe("input_unreadable");
    expect(e.message).toContain(join(d, "b.yaml"));
  });

  test("a missing path is input_unreadable naming the path", async () => {
    const missing = join(temp, "does-not-exist.yaml");
    const e = await expectFirewallError(loadManifests(missing));
    expect(e.code).toBe("input_unreadable");
    expect(e.message).toContain(missing);
  });

  test("an empty directory gives no objects", async () => {
    const d = join(temp, "empty");
    mkdirSync(d);
    expect(await loadManifests(d)).toEqual([]);
  });

  test("hidden files are skipped", async () => {
    const d = join(temp, "hidden");
    mkdirSync(d);
    writeFileSync(join(d, ".x.yaml"), "kind: A\nmetadata: {name: hidden}\n");
    writeFileSync(join(d, "y.yaml"), "kind: A\nmetadata: {name: shown}\n");
    expect(names(await loadManifests(d))).toEqual(["shown"]);
  });

  // BUG (lib/manifests/load.ts filesOf): Dirent.isFile() is false for symbolic links, so a symlinked
  // manifest in a --manifests directory is silently ignored (its policies never apply, nothing is reported).
  test("a symlinked manifest file in a directory is read", async () => {
    const d = join(temp, "links");
    mkdirSync(d);
    writeFileSync(join(temp, "target.yaml"), "kind: A\nmetadata: {name: linked}\n");
    symlinkSync(join(temp, "target.yaml"), join(d, "policies.yaml"));
    writeFileSync(join(d, "plain.yaml"), "kind: A\nmetadata: {name: plain}\n");
    expect(names(await loadManifests(d)).sort()).toEqual(["linked", "plain"]);
  });

  // BUG (lib/manifests/load.ts filesOf, under Bun): Bun's recursive readdir descends into symlinked
  // directories (Node and Deno do not), so a ConfigMap volume (x.yaml -> ..data/x.yaml, ..data -> ..<timestamp>)
  // yields every object twice, from ..<timestamp>/ and from ..data/; the second copies are then rejected as duplicates.
  test("a ConfigMap-style mount (..data symlinks to a hidden timestamped directory) gives each object once", async () => {
    const d = join(temp, "configmap");
    mkdirSync(join(d, "..2026_01_01_00_00_00.000000001"), { recursive: true });
    writeFileSync(join(d, "..2026_01_01_00_00_00.000000001", "policies.yaml"), "kind: A\nmetadata: {name: cm}\n");
    symlinkSync("..2026_01_01_00_00_00.000000001", join(d, "..data"));
    symlinkSync(join("..data", "policies.yaml"), join(d, "policies.yaml"));
    expect(names(await loadManifests(d))).toEqual(["cm"]);
  });

  // BUG (lib/manifests/load.ts filesOf): readdir errors are not wrapped; under Bun a symlink loop gives a raw
  // ELOOP Error instead of a FirewallError input_unreadable (Node and Deno do not follow the link at all).
  test("a symlink loop inside a directory is read once or reported as input_unreadable, never a raw error", async () => {
    const d = join(temp, "loop");
    mkdirSync(d);
    writeFileSync(join(d, "a.yaml"), "kind: A\nmetadata: {name: a}\n");
    symlinkSync(".", join(d, "again"));
    try {
      expect(names(await loadManifests(d))).toEqual(["a"]);
    } catch (e) {
      expect(e).toBeInstanceOf(FirewallError);
      expect((e as FirewallError).code).toBe("input_unreadable");
    }
  });
});

/** The message of the FirewallError `f` throws (input_unreadable), failing otherwise. */
function parseError(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(FirewallError);
    expect((e as FirewallError).code).toBe("input_unreadable");
    return (e as FirewallError).message;
  }
  throw new Error("expected an input_unreadable error");
}

const fresh = (name: string): string => {
  const d = join(temp, name);
  mkdirSync(d);
  return d;
};

const mkfifo = (path: string) => execFileSync("mkfifo", [path]);

// SPEC §8: "Input files: regular files only". Before, a FIFO blocked the run forever and /dev/zero
// was read until memory ran out. The tests finishing at all is the bound: a FIFO with no writer
// blocks any open() for reading that waits for one.
describe("loadManifests: regular files only, never opened otherwise", () => {
  test("a FIFO given as --manifests is refused, naming it", async () => {
    const fifo = join(fresh("fifo-top"), "in.yaml");
    mkfifo(fifo);
    const e = await expectFirewallError(loadManifests(fifo));
    expect(e.code).toBe("input_unreadable");
    expect(e.message).toBe(`${fifo}: is a FIFO, not a regular file; only regular files are read as manifests (remove it or point --manifests elsewhere)`);
  });

  test("a FIFO named like a manifest in a directory is refused, naming it", async () => {
    const d = fresh("fifo-dir");
    writeFileSync(join(d, "a.yaml"), "kind: A\n");
    mkfifo(join(d, "b.yaml"));
    const e = await expectFirewallError(loadManifests(d));
    expect(e.message).toStartWith(`${join(d, "b.yaml")}: is a FIFO, not a regular file`);
  });

  test("a FIFO not named like a manifest is skipped, never opened", async () => {
    const d = fresh("fifo-other");
    writeFileSync(join(d, "a.yaml"), "kind: A\nmetadata: {name: a}\n");
    mkfifo(join(d, "pipe"));
    expect(names(await loadManifests(d))).toEqual(["a"]);
  });

  test("/dev/zero given as --manifests is refused as a character device", async () => {
    const e = await expectFirewallError(loadManifests("/dev/zero"));
    expect(e.message).toStartWith("/dev/zero: is a character device, not a regular file");
  });

  test("a symlink to /dev/zero in a directory is refused as a character device", async () => {
    const d = fresh("devzero");
    symlinkSync("/dev/zero", join(d, "zero.yaml"));
    const e = await expectFirewallError(loadManifests(d));
    expect(e.message).toStartWith(`${join(d, "zero.yaml")}: is a character device, not a regular file`);
  });
});

describe("loadManifests: size caps", () => {
  test("the caps are 16 MiB per file and 64 MiB in all", () => {
    expect([MAX_FILE_BYTES, MAX_TOTAL_BYTES]).toEqual([16 * 1024 * 1024, 64 * 1024 * 1024]);
  });

  test("a file over the per-file cap is refused, naming the file, its size and the cap", async () => {
    const d = fresh("big-file");
    writeFileSync(join(d, "big.yaml"), `kind: A\n${"#".repeat(2000)}\n`);
    const e = await expectFirewallError(loadManifests(d, { maxFileBytes: 1000 }));
    expect(e.message).toBe(`${join(d, "big.yaml")}: 2,009 bytes is more than the cap of 1,000 bytes per manifest file; split it`);
  });

  test("a file at the cap is read", async () => {
    const d = fresh("at-cap");
    writeFileSync(join(d, "a.yaml"), "kind: A\nmetadata: {name: a}\n");
    expect(names(await loadManifests(d, { maxFileBytes: 28 }))).toEqual(["a"]);
  });

  test("files over the total cap together are refused, naming the file that passes it", async () => {
    const d = fresh("big-total");
    for (const n of ["a", "b", "c"]) writeFileSync(join(d, `${n}.yaml`), `kind: A\nmetadata: {name: ${n}}\n${"#".repeat(400)}\n`);
    const e = await expectFirewallError(loadManifests(d, { maxFileBytes: 1000, maxTotalBytes: 1000 }));
    expect(e.message).toBe(`${join(d, "c.yaml")}: the manifests read so far and this file make 1,287 bytes, more than the cap of 1,000 bytes for all manifest files together`);
  });

  test("a file past the real cap (16 MiB) is refused without being parsed", async () => {
    const d = fresh("real-cap");
    writeFileSync(join(d, "huge.yaml"), Buffer.alloc(MAX_FILE_BYTES + 1, 0x23));
    const e = await expectFirewallError(loadManifests(d));
    expect(e.message).toBe(`${join(d, "huge.yaml")}: 16,777,217 bytes is more than the cap of 16,777,216 bytes per manifest file; split it`);
  });
});

// Before: `uniqueKeys: true` compared every key with every other: 40,000 keys in any map (an unused
// ConfigMap) took 11 s, 300,000 never finished. The test's timeout is the bound.
describe("parseManifestText: duplicate keys, in linear time", () => {
  test("a duplicate key is refused, naming the file, document, path, key, line and column", () => {
    const m = parseError(() => parseManifestText("kind: A\n---\nkind: B\nmetadata:\n  name: a\n  labels: {x: 1, y: 2, x: 3}\n", "d.yaml"));
    expect(m).toBe('d.yaml#1: duplicate key "x" in metadata.labels (line 6, column 24) (a later value would silently replace the first; remove one)');
  });

  test("keys that JSON would merge are duplicates too (1 and \"1\")", () => {
    expect(parseError(() => parseManifestText('a:\n  1: x\n  "1": y\n', "n.yaml"))).toStartWith('n.yaml#0: duplicate key "1" in a (line 3, column 3)');
  });

  test("a 300,000-key map in an unused ConfigMap is read", () => {
    const text = `kind: ConfigMap\nmetadata: {name: big}\ndata:\n${Array.from({ length: 300_000 }, (_, i) => `  k${i}: v`).join("\n")}\n`;
    const [o] = parseManifestText(text, "cm.yaml");
    expect(Object.keys((o?.object as { data: object }).data)).toHaveLength(300_000);
  }, 60_000);

  test("a duplicate after 100,000 keys is found", () => {
    const text = `data:\n${Array.from({ length: 100_000 }, (_, i) => `  k${i}: v`).join("\n")}\n  k7: again\n`;
    expect(parseError(() => parseManifestText(text, "cm.yaml"))).toStartWith('cm.yaml#0: duplicate key "k7" in data (line 100002, column 3)');
  }, 60_000);

  test("__proto__ is an own key, as JSON.parse makes it, never the prototype", () => {
    const [o] = parseManifestText("kind: A\n__proto__: {polluted: true}\n", "p.yaml");
    expect(Object.getPrototypeOf(o?.object)).toBe(Object.prototype);
    expect(Object.keys(o?.object as object)).toEqual(["kind", "__proto__"]);
    expect(({} as { polluted?: boolean }).polluted).toBeUndefined();
  });
});

describe("parseManifestText: aliases and nesting are bounded", () => {
  test("aliases within the limits resolve", () => {
    const [o] = parseManifestText("base: &p {protocol: TCP, port: 443}\nports: [*p, *p]\n", "a.yaml");
    expect(o?.object).toEqual({ base: { protocol: "TCP", port: 443 }, ports: [{ protocol: "TCP", port: 443 }, { protocol: "TCP", port: 443 }] });
  });

  test("an alias bomb is refused naming the file and document, not expanded", () => {
    const bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]", ...Array.from({ length: 8 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10).fill(`*${String.fromCharCode(97 + i)}`).join(", ")}]`)].join("\n");
    expect(parseError(() => parseManifestText(`kind: A\n---\n${bomb}`, "bomb.yaml"))).toBe("bomb.yaml#1: aliases expand to more than 100,000 nodes (line 7, column 36); refused (a YAML alias bomb?)");
  });

  test(`more than ${MAX_ALIASES} aliases in a document are refused`, () => {
    const text = `a: &a 1\nb: [${Array(MAX_ALIASES + 1).fill("*a").join(", ")}]\n`;
    expect(parseError(() => parseManifestText(text, "many.yaml"))).toStartWith(`many.yaml#0: more than ${MAX_ALIASES} aliases (line 2, column 405)`);
  });

  test("an alias to an anchor not yet defined is refused", () => {
    expect(parseError(() => parseManifestText("a: *nowhere\n", "u.yaml"))).toBe("u.yaml#0: alias *\"nowhere\" at a (line 1, column 4) names no anchor before it");
  });

  test("an alias inside the node it names (a cycle) is refused", () => {
    expect(parseError(() => parseManifestText("a: &x [1, *x]\n", "c.yaml"))).toBe("c.yaml#0: alias *\"x\" at a[1] (line 1, column 11) is inside the node it names (a cycle)");
  });

  test(`${MAX_DEPTH} levels of nesting are read`, () => {
    const deep = `${"[".repeat(MAX_DEPTH)}${"]".repeat(MAX_DEPTH)}`;
    expect(parseManifestText(deep, "deep.yaml")).toHaveLength(1);
  });

  test(`nesting deeper than ${MAX_DEPTH} levels is refused`, () => {
    const deep = `${"[".repeat(MAX_DEPTH + 1)}${"]".repeat(MAX_DEPTH + 1)}`;
    expect(parseError(() => parseManifestText(deep, "deep.yaml"))).toStartWith(`deep.yaml#0: nested more than ${MAX_DEPTH} levels deep at [0][0]`);
  });

  test("nesting that exhausts the YAML library's stack is an input_unreadable error, not a crash", () => {
    expect(parseError(() => parseManifestText("[".repeat(200_000), "stack.yaml"))).toStartWith("stack.yaml#0: not valid YAML: ");
  }, 60_000);

  test("merge keys of YAML 1.1 documents are merged, explicit keys winning", () => {
    const [o] = parseManifestText("%YAML 1.1\n---\nbase: &b {a: 1, b: 2}\nderived: {<<: *b, b: 3}\n", "m.yaml");
    expect(o?.object).toEqual({ base: { a: 1, b: 2 }, derived: { b: 3, a: 1 } });
  });
});

// SPEC §8: file names and YAML errors (which quote the input) pass the escaping function.
describe("loadManifests: names and errors are escaped", () => {
  // Before: readdir decoded names as UTF-8, so the name no longer matched the file and it was unreadable.
  test("a file whose name is not UTF-8 is read, and its name shown escaped", async () => {
    const d = fresh("non-utf8");
    writeFileSync(Buffer.concat([Buffer.from(`${d}/bad`), Buffer.from([0xff]), Buffer.from(".yaml")]), "kind: A\nmetadata: {name: latin}\n");
    const objs = await loadManifests(d);
    expect(names(objs)).toEqual(["latin"]);
    expect(objs[0]?.source).toBe(`${d}/bad\\xff.yaml#0`);
  });

  test("a file name with an ESC sequence and a newline is shown escaped in an error", async () => {
    const d = fresh("evil-name");
    writeFileSync(join(d, "x\x1b[2J\nrejected y.yaml"), "kind: [\n");
    const e = await expectFirewallError(loadManifests(d));
    expect(e.message).toStartWith(`${d}/x\\x1b[2J\\nrejected y.yaml#0: not valid YAML: `);
  });

  test("a file name with C1 and bidi controls is shown escaped in the source", async () => {
    const d = fresh("bidi-name");
    writeFileSync(join(d, "a\u009b\u202eb.yaml"), "kind: A\nmetadata: {name: x}\n");
    expect((await loadManifests(d))[0]?.source).toBe(`${d}/a\\x9b\\u202eb.yaml#0`);
  });

  test("the --manifests path itself is escaped", async () => {
    const e = await expectFirewallError(loadManifests(join(temp, "missing\u202e\n.yaml")));
    expect(e.message).toBe(`${temp}/missing\\u202e\\n.yaml: cannot read (ENOENT)`);
  });

  test("a YAML error that quotes the input is escaped", () => {
    const m = parseError(() => parseManifestText("a: !\u009b\u202etag x\n", "t.yaml"));
    expect(m).not.toMatch(/[\u0080-\u009f\u202a-\u202e]/);
    expect(m).toStartWith("t.yaml#0: ");
  });

  test("an error message is one line, whatever the input", () => {
    for (const text of ["a: [\n", "a:\n\tb: 1\n", 'a: "x\n', "a: *\u0085\n"]) {
      expect(parseError(() => parseManifestText(text, "l.yaml"))).not.toContain("\n");
    }
  });
});

describe("loadManifests: symlinks", () => {
  test("a symlinked directory loop is read once", async () => {
    const d = fresh("dir-loop");
    mkdirSync(join(d, "sub"));
    writeFileSync(join(d, "sub", "a.yaml"), "kind: A\nmetadata: {name: once}\n");
    symlinkSync("..", join(d, "sub", "up"));
    expect(names(await loadManifests(d))).toEqual(["once"]);
  });
});
