/**
 * `?fieldValidation=Strict|Warn|Ignore` for custom resources, worded as a real apiserver: Strict refuses the
 * fields pruning would drop (400 on create/update, 422 on patch), Warn (the default) prunes and says so in
 * `Warning` headers, Ignore prunes silently. Fields under x-kubernetes-preserve-unknown-fields are kept and
 * are not unknown. kubectl 1.32 sends Strict by default (`--validate=strict`).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { kubectl, kubectlMissing, post, startTestServer, tempFile, type TestServer } from "./harness.ts";

const CRD = {
  apiVersion: "apiextensions.k8s.io/v1",
  kind: "CustomResourceDefinition",
  metadata: { name: "widgets.example.io" },
  spec: {
    group: "example.io",
    scope: "Namespaced",
    names: { kind: "Widget", plural: "widgets", singular: "widget", listKind: "WidgetList" },
    versions: [
      {
        name: "v1",
        served: true,
        storage: true,
        schema: {
          openAPIV3Schema: {
            type: "object",
            properties: {
              apiVersion: { type: "string" },
              kind: { type: "string" },
              metadata: { type: "object" },
              spec: {
                type: "object",
                properties: {
                  size: { type: "integer" },
                  ports: { type: "array", items: { type: "object", properties: { port: { type: "integer" } } } },
                  open: { type: "array", items: { type: "object", "x-kubernetes-preserve-unknown-fields": true, properties: { port: { type: "integer" } } } },
                },
              },
            },
          },
        },
      },
    ],
  },
};

const PATH = "/apis/example.io/v1/namespaces/default/widgets";
let t: TestServer;
let n = 0;
const widget = (spec: unknown, name = `w${++n}`) => ({ apiVersion: "example.io/v1", kind: "Widget", metadata: { name }, spec });

async function send(method: string, path: string, body: unknown, contentType = "application/json") {
  const r = await fetch(`${t.server.url}${path}`, { method, headers: { "Content-Type": contentType }, body: JSON.stringify(body) });
  return { status: r.status, warning: r.headers.get("warning"), body: (await r.json()) as { message?: string; reason?: string; spec?: unknown; details?: unknown } };
}

beforeAll(async () => {
  t = await startTestServer();
  await post(t, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", CRD);
});
afterAll(async () => t.close());

describe("fieldValidation on custom resources", () => {
  const typo = { size: 1, ports: [{ prot: 22 }], colour: "red" };

  test("Strict: a create is a 400 BadRequest naming every unknown field", async () => {
    const r = await send("POST", `${PATH}?fieldValidation=Strict`, widget(typo));
    expect(r.status).toBe(400);
    expect(r.body.reason).toBe("BadRequest");
    expect(r.body.message).toBe('Widget in version "v1" cannot be handled as a Widget: strict decoding error: unknown field "spec.ports[0].prot", unknown field "spec.colour"');
  });

  test("Warn (also the default): pruned, one Warning header per field", async () => {
    for (const q of ["?fieldValidation=Warn", ""]) {
      const r = await send("POST", `${PATH}${q}`, widget(typo));
      expect(r.status).toBe(201);
      expect(r.body.spec).toEqual({ size: 1, ports: [{}] });
      expect(r.warning).toBe('299 - "unknown field \\"spec.ports[0].prot\\"", 299 - "unknown field \\"spec.colour\\""');
    }
  });

  test("Ignore: pruned silently", async () => {
    const r = await send("POST", `${PATH}?fieldValidation=Ignore`, widget(typo));
    expect(r.status).toBe(201);
    expect(r.body.spec).toEqual({ size: 1, ports: [{}] });
    expect(r.warning).toBeNull();
  });

  test("fields under x-kubernetes-preserve-unknown-fields are kept, and not unknown", async () => {
    const r = await send("POST", `${PATH}?fieldValidation=Strict`, widget({ open: [{ prot: 22 }] }));
    expect(r.status).toBe(201);
    expect(r.body.spec).toEqual({ open: [{ prot: 22 }] });
    expect(r.warning).toBeNull();
  });

  test("Strict: an update is a 400 too; a patch a 422 on the field patch", async () => {
    const created = await send("POST", PATH, widget({ size: 1 }, "upd"));
    const rv = (created.body as { metadata?: { resourceVersion?: string } }).metadata?.resourceVersion;
    const put = await send("PUT", `${PATH}/upd?fieldValidation=Strict`, { ...widget({ size: 2, sise: 3 }, "upd"), metadata: { name: "upd", resourceVersion: rv } });
    expect(put.status).toBe(400);
    expect(put.body.message).toBe('Widget in version "v1" cannot be handled as a Widget: strict decoding error: unknown field "spec.sise"');
    const patch = await send("PATCH", `${PATH}/upd?fieldValidation=Strict`, { spec: { sise: 3 } }, "application/merge-patch+json");
    expect(patch.status).toBe(422);
    expect(patch.body.message).toStartWith(' "" is invalid: patch: Invalid value: "{\\"apiVersion\\":\\"example.io/v1\\",\\"kind\\":\\"Widget\\",\\"metadata\\":{');
    expect(patch.body.message).toEndWith('": strict decoding error: unknown field "spec.sise"');
    const warned = await send("PATCH", `${PATH}/upd?fieldValidation=Warn`, { spec: { sise: 3 } }, "application/merge-patch+json");
    expect(warned.status).toBe(200);
    expect(warned.warning).toBe('299 - "unknown field \\"spec.sise\\""');
  });

  test("an unsupported fieldValidation is a 422", async () => {
    const r = await send("POST", `${PATH}?fieldValidation=Loose`, widget({}));
    expect(r.status).toBe(422);
    expect(r.body.message).toBe('CreateOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "Loose": supported values: "", "Ignore", "Strict", "Warn"');
  });

  test.skipIf(kubectlMissing("field_validation.test.ts"))("kubectl: apply refuses unknown fields (Strict by default), --validate=warn prints the warnings", async () => {
    const file = tempFile(t, "typo.yaml", JSON.stringify({ ...widget({ size: 1, ports: [{ prot: 22 }] }, "k"), metadata: { name: "k", namespace: "default" } }));
    const strict = await kubectl(t, ["apply", "-f", file]);
    expect(strict.code).toBe(1);
    expect(strict.stderr.trim()).toBe(`Error from server (BadRequest): error when creating "${file}": Widget in version "v1" cannot be handled as a Widget: strict decoding error: unknown field "spec.ports[0].prot"`);
    const warn = await kubectl(t, ["apply", "--validate=warn", "-f", file]);
    expect(warn.code).toBe(0);
    expect(warn.stderr.trim()).toBe('Warning: unknown field "spec.ports[0].prot"');
    expect(warn.stdout.trim()).toBe("widget.example.io/k created");
    // Now it exists: apply patches it, and the patch is refused.
    const patchFile = tempFile(t, "typo2.yaml", JSON.stringify({ ...widget({ size: 2, sise: 3 }, "k"), metadata: { name: "k", namespace: "default" } }));
    const patched = await kubectl(t, ["apply", "-f", patchFile]);
    expect(patched.code).toBe(1);
    expect(patched.stderr).toContain('strict decoding error: unknown field "spec.sise"');
  });
});
