import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { ROOT } from "./cli-binary.ts";

type Crd = {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec: {
    group: string;
    scope: string;
    names: { kind: string; plural: string; shortNames?: string[] };
    versions: { name: string; served: boolean; storage: boolean; subresources?: { status?: object }; additionalPrinterColumns?: { name: string; jsonPath: string }[]; schema: { openAPIV3Schema: { type: string; properties: Record<string, unknown> } } }[];
  };
};

const load = (file: string) => parse(readFileSync(join(ROOT, "crds", file), "utf8")) as Crd;

describe("CRD manifests", () => {
  const cases = [
    { file: "firewalls.metal-stack.io.yaml", kind: "Firewall", plural: "firewalls", columns: ["Interval", "InternalPrefixes", "Ready", "Last Run", "Age"], short: [] as string[] },
    { file: "clusterwidenetworkpolicies.metal-stack.io.yaml", kind: "ClusterwideNetworkPolicy", plural: "clusterwidenetworkpolicies", columns: ["State", "Message", "Age"], short: ["cwnp"] },
  ];
  for (const c of cases) {
    test(`${c.kind}: metal-stack.io/v1, namespaced, status subresource, printer columns ${c.columns.join(", ")}`, () => {
      const crd = load(c.file);
      expect(crd.apiVersion).toBe("apiextensions.k8s.io/v1");
      expect(crd.kind).toBe("CustomResourceDefinition");
      expect(crd.metadata.name).toBe(`${c.plural}.metal-stack.io`);
      expect(crd.spec.group).toBe("metal-stack.io");
      expect(crd.spec.scope).toBe("Namespaced");
      expect(crd.spec.names.kind).toBe(c.kind);
      expect(crd.spec.names.plural).toBe(c.plural);
      expect(crd.spec.names.shortNames ?? []).toEqual(c.short);
      const v1 = crd.spec.versions.find((v) => v.name === "v1");
      expect(v1?.served && v1.storage).toBe(true);
      expect(v1?.subresources?.status).toEqual({});
      expect(v1?.additionalPrinterColumns?.map((col) => col.name)).toEqual(c.columns);
      expect(v1?.schema.openAPIV3Schema.type).toBe("object");
      expect(Object.keys(v1?.schema.openAPIV3Schema.properties ?? {})).toEqual(expect.arrayContaining(["spec", "status"]));
    });
  }

  test("the policy schema refuses named ports (integer ports) and knows only TCP, UDP and SCTP", () => {
    const text = readFileSync(join(ROOT, "crds", "clusterwidenetworkpolicies.metal-stack.io.yaml"), "utf8");
    const crd = parse(text) as Crd;
    const spec = (crd.spec.versions[0]?.schema.openAPIV3Schema.properties.spec ?? {}) as { properties: Record<string, { items: { properties: { ports: { items: { properties: Record<string, { type?: string; enum?: string[] }> } } } } }> };
    const port = spec.properties.egress?.items.properties.ports.items.properties;
    expect(port?.port?.type).toBe("integer");
    expect(port?.protocol?.enum).toEqual(["TCP", "UDP", "SCTP"]);
  });
});
