/**
 * The three patch kinds: JSON merge patch (RFC 7386), JSON patch (RFC 6902),
 * strategic merge patch, as functions (table tests) and through the server.
 */
import { ApiException, CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { seed, startTestServer, type TestServer } from "./harness.ts";
import { jsonPatch, JsonPatchError } from "./json_patch.ts";
import { mergePatch } from "./merge_patch.ts";
import { strategicMergePatch } from "./strategic_merge_patch.ts";

describe("JSON merge patch (RFC 7386)", () => {
  // The examples of RFC 7386 appendix A.
  const cases: [unknown, unknown, unknown][] = [
    [{ a: "b" }, { a: "c" }, { a: "c" }],
    [{ a: "b" }, { b: "c" }, { a: "b", b: "c" }],
    [{ a: "b" }, { a: null }, {}],
    [{ a: "b", b: "c" }, { a: null }, { b: "c" }],
    [{ a: ["b"] }, { a: "c" }, { a: "c" }],
    [{ a: "c" }, { a: ["b"] }, { a: ["b"] }],
    [{ a: { b: "c" } }, { a: { b: "d", c: null } }, { a: { b: "d" } }],
    [{ a: [{ b: "c" }] }, { a: [1] }, { a: [1] }],
    [["a", "b"], ["c", "d"], ["c", "d"]],
    [{ a: "b" }, ["c"], ["c"]],
    [{ a: "foo" }, null, null],
    [{ a: "foo" }, "bar", "bar"],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: "b", c: null }, { a: "b" }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ];
  test.each(cases)("merge %j with %j gives %j", (target, patch, want) => {
    expect(mergePatch(target, patch)).toEqual(want);
  });

  test("leaves its arguments unchanged", () => {
    const target = { a: { b: 1 } };
    mergePatch(target, { a: { b: 2 } });
    expect(target).toEqual({ a: { b: 1 } });
  });
});

describe("JSON patch (RFC 6902)", () => {
  const cases: { name: string; doc: unknown; ops: unknown[]; want: unknown }[] = [
    { name: "add a member", doc: { foo: "bar" }, ops: [{ op: "add", path: "/baz", value: "qux" }], want: { foo: "bar", baz: "qux" } },
    { name: "add into an array", doc: { foo: ["bar", "baz"] }, ops: [{ op: "add", path: "/foo/1", value: "qux" }], want: { foo: ["bar", "qux", "baz"] } },
    { name: "append with -", doc: { foo: [1] }, ops: [{ op: "add", path: "/foo/-", value: 2 }], want: { foo: [1, 2] } },
    { name: "remove a member", doc: { baz: "qux", foo: "bar" }, ops: [{ op: "remove", path: "/baz" }], want: { foo: "bar" } },
    { name: "remove an element", doc: { foo: ["bar", "qux", "baz"] }, ops: [{ op: "remove", path: "/foo/1" }], want: { foo: ["bar", "baz"] } },
    { name: "replace", doc: { baz: "qux", foo: "bar" }, ops: [{ op: "replace", path: "/baz", value: "boo" }], want: { baz: "boo", foo: "bar" } },
    {
      name: "move",
      doc: { foo: { bar: "baz", waldo: "fred" }, qux: { corge: "grault" } },
      ops: [{ op: "move", from: "/foo/waldo", path: "/qux/thud" }],
      want: { foo: { bar: "baz" }, qux: { corge: "grault", thud: "fred" } },
    },
    { name: "move an element", doc: { foo: ["all", "grass", "cows", "eat"] }, ops: [{ op: "move", from: "/foo/1", path: "/foo/3" }], want: { foo: ["all", "cows", "eat", "grass"] } },
    { name: "copy", doc: { a: { b: 1 } }, ops: [{ op: "copy", from: "/a", path: "/c" }], want: { a: { b: 1 }, c: { b: 1 } } },
    { name: "test then add", doc: { baz: "qux", foo: ["a", 2, "c"] }, ops: [{ op: "test", path: "/foo", value: ["a", 2, "c"] }, { op: "add", path: "/x", value: 1 }], want: { baz: "qux", foo: ["a", 2, "c"], x: 1 } },
    { name: "escaped pointer tokens", doc: { "a/b": 1, "m~n": 2 }, ops: [{ op: "replace", path: "/a~1b", value: 3 }, { op: "remove", path: "/m~0n" }], want: { "a/b": 3 } },
    { name: "add replaces an existing member", doc: { a: 1 }, ops: [{ op: "add", path: "/a", value: 2 }], want: { a: 2 } },
    { name: "add at the root replaces the document", doc: { a: 1 }, ops: [{ op: "add", path: "", value: [1] }], want: [1] },
  ];
  test.each(cases)("$name", ({ doc, ops, want }) => {
    expect(jsonPatch(doc, ops)).toEqual(want);
  });

  const failing: { name: string; doc: unknown; ops: unknown; malformed: boolean }[] = [
    { name: "a failing test fails the whole patch", doc: { baz: "qux" }, ops: [{ op: "test", path: "/baz", value: "bar" }], malformed: false },
    { name: "add to a missing parent", doc: {}, ops: [{ op: "add", path: "/a/b", value: 1 }], malformed: false },
    { name: "remove a missing member", doc: {}, ops: [{ op: "remove", path: "/a" }], malformed: false },
    { name: "replace a missing member", doc: {}, ops: [{ op: "replace", path: "/a", value: 1 }], malformed: false },
    { name: "index out of bounds", doc: { a: [1] }, ops: [{ op: "add", path: "/a/5", value: 1 }], malformed: false },
    { name: "unknown op", doc: {}, ops: [{ op: "frobnicate", path: "/a" }], malformed: true },
    { name: "not a list", doc: {}, ops: { op: "add" }, malformed: true },
    { name: "add without value", doc: {}, ops: [{ op: "add", path: "/a" }], malformed: true },
  ];
  test.each(failing)("$name", ({ doc, ops, malformed }) => {
    const before = structuredClone(doc);
    let error: unknown;
    try {
      jsonPatch(doc, ops);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(JsonPatchError);
    expect((error as JsonPatchError).malformed).toBe(malformed);
    expect(doc).toEqual(before);
  });
});

describe("strategic merge patch", () => {
  const service = {
    metadata: { name: "web", labels: { a: "1", b: "2" }, finalizers: ["x"] },
    spec: {
      type: "LoadBalancer",
      ports: [
        { name: "http", port: 80, protocol: "TCP" },
        { name: "https", port: 443, protocol: "TCP" },
      ],
      selector: { app: "web" },
      loadBalancerSourceRanges: ["192.0.2.0/24"],
    },
  };
  const cases: { name: string; patch: Record<string, unknown>; want: (s: typeof service) => unknown }[] = [
    { name: "maps merge; null deletes a key", patch: { metadata: { labels: { a: null, c: "3" } } }, want: (s) => ({ ...s, metadata: { ...s.metadata, labels: { b: "2", c: "3" } } }) },
    {
      name: "Service ports merge by port: changed in place, new appended",
      patch: { spec: { ports: [{ port: 443, name: "tls" }, { port: 8080, name: "alt" }] } },
      want: (s) => ({ ...s, spec: { ...s.spec, ports: [s.spec.ports[0], { name: "tls", port: 443, protocol: "TCP" }, { name: "alt", port: 8080 }] } }),
    },
    {
      name: "$patch: delete removes a list element by its merge key",
      patch: { spec: { ports: [{ port: 80, $patch: "delete" }] } },
      want: (s) => ({ ...s, spec: { ...s.spec, ports: [s.spec.ports[1]] } }),
    },
    {
      name: "$patch: replace in a list replaces the whole list",
      patch: { spec: { ports: [{ $patch: "replace" }, { port: 22 }] } },
      want: (s) => ({ ...s, spec: { ...s.spec, ports: [{ port: 22 }] } }),
    },
    {
      name: "$patch: replace on a map replaces the map",
      patch: { spec: { selector: { $patch: "replace", tier: "front" } } },
      want: (s) => ({ ...s, spec: { ...s.spec, selector: { tier: "front" } } }),
    },
    { name: "$patch: delete on a map deletes it", patch: { spec: { selector: { $patch: "delete" } } }, want: (s) => ({ ...s, spec: { ...s.spec, selector: undefined } }) },
    {
      name: "lists without a merge key are replaced",
      patch: { spec: { loadBalancerSourceRanges: ["198.51.100.0/24"] } },
      want: (s) => ({ ...s, spec: { ...s.spec, loadBalancerSourceRanges: ["198.51.100.0/24"] } }),
    },
    {
      name: "$setElementOrder and $retainKeys are accepted; primitive merge lists union; $deleteFromPrimitiveList removes",
      patch: {
        metadata: { finalizers: ["y"], "$deleteFromPrimitiveList/finalizers": ["x"] },
        spec: { "$setElementOrder/ports": [{ port: 443 }, { port: 80 }], ports: [{ port: 80, name: "web" }] },
      },
      want: (s) => ({
        ...s,
        metadata: { ...s.metadata, finalizers: ["y"] },
        spec: { ...s.spec, ports: [{ name: "web", port: 80, protocol: "TCP" }, s.spec.ports[1]] },
      }),
    },
  ];
  test.each(cases)("$name", ({ patch, want }) => {
    const expected = JSON.parse(JSON.stringify(want(structuredClone(service))));
    expect(strategicMergePatch(service, patch, "v1/Service")).toEqual(expected);
  });

  test("Pod containers merge by name, their env by name", () => {
    const pod = { spec: { containers: [{ name: "a", image: "x", env: [{ name: "K", value: "1" }] }, { name: "b", image: "y" }] } };
    const patched = strategicMergePatch(pod, { spec: { containers: [{ name: "a", env: [{ name: "L", value: "2" }] }] } }, "v1/Pod");
    expect(patched).toEqual({
      spec: {
        containers: [
          { name: "a", image: "x", env: [{ name: "K", value: "1" }, { name: "L", value: "2" }] },
          { name: "b", image: "y" },
        ],
      },
    });
  });
});

describe("patches through the server", () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
    await seed(t);
  });
  afterAll(async () => {
    await t.close();
  });
  const CWNP = { group: "metal-stack.io", version: "v1", namespace: "firewall", plural: "clusterwidenetworkpolicies" } as const;

  test("a custom resource takes JSON patch (default of client-node) and merge patch", async () => {
    const custom = t.kubeConfig.makeApiClient(CustomObjectsApi);
    await custom.createNamespacedCustomObject({
      ...CWNP,
      body: { apiVersion: "metal-stack.io/v1", kind: "ClusterwideNetworkPolicy", metadata: { name: "p" }, spec: { description: "a", egress: [{ to: [{ cidr: "192.0.2.0/24" }] }] } },
    });
    const jp = (await custom.patchNamespacedCustomObject({
      ...CWNP,
      name: "p",
      body: [
        { op: "test", path: "/spec/description", value: "a" },
        { op: "replace", path: "/spec/description", value: "b" },
        { op: "add", path: "/spec/egress/0/to/-", value: { cidr: "198.51.100.0/24" } },
      ],
    })) as { spec: { description: string; egress: { to: unknown[] }[] }; metadata: { generation: number } };
    expect(jp.spec.description).toBe("b");
    expect(jp.spec.egress[0]?.to).toHaveLength(2);
    expect(jp.metadata.generation).toBe(2);
    const mp = (await custom.patchNamespacedCustomObject(
      { ...CWNP, name: "p", body: { spec: { description: null, egress: [] } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    )) as { spec: Record<string, unknown> };
    expect(mp.spec).toEqual({ egress: [] });
  });

  test("a failing JSON patch test is a 422 and changes nothing", async () => {
    const custom = t.kubeConfig.makeApiClient(CustomObjectsApi);
    const before = (await custom.getNamespacedCustomObject({ ...CWNP, name: "p" })) as { metadata: { resourceVersion: string } };
    let code = 0;
    try {
      await custom.patchNamespacedCustomObject({ ...CWNP, name: "p", body: [{ op: "test", path: "/spec/egress", value: ["x"] }] });
    } catch (e) {
      code = e instanceof ApiException ? e.code : -1;
    }
    expect(code).toBe(422);
    const after = (await custom.getNamespacedCustomObject({ ...CWNP, name: "p" })) as { metadata: { resourceVersion: string } };
    expect(after.metadata.resourceVersion).toBe(before.metadata.resourceVersion);
  });

  test("a Service takes a strategic merge patch with directives; a patch naming a stale resourceVersion is a 409", async () => {
    const core = t.kubeConfig.makeApiClient(CoreV1Api);
    const created = await core.createNamespacedService({
      namespace: "firewall",
      body: { metadata: { name: "web" }, spec: { type: "LoadBalancer", ports: [{ name: "http", port: 80 }, { name: "https", port: 443 }] } },
    });
    const smp = setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch);
    const patched = await core.patchNamespacedService(
      { name: "web", namespace: "firewall", body: { spec: { "$setElementOrder/ports": [{ port: 443 }], ports: [{ port: 80, $patch: "delete" }, { port: 443, name: "tls" }] } } },
      smp,
    );
    expect(patched.spec?.ports?.map((p) => [p.name, p.port, p.nodePort])).toEqual([["tls", 443, created.spec?.ports?.[1]?.nodePort]]);
    let code = 0;
    try {
      await core.patchNamespacedService({ name: "web", namespace: "firewall", body: { metadata: { resourceVersion: created.metadata?.resourceVersion }, spec: {} } }, smp);
    } catch (e) {
      code = e instanceof ApiException ? e.code : -1;
    }
    expect(code).toBe(409);
  });
});
