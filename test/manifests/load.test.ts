import { afterAll, describe, expect, test } from "bun:test";
import { expectFirewallError } from "../firewall-error.ts";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FirewallError } from "../../lib/errors.ts";
import { loadManifests, parseManifestText } from "../../lib/manifests/load.ts";

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
