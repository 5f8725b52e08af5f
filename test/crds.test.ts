import { afterAll, beforeAll, describe, expect, test } from "bun:test";
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
    { file: "firewalls.metal-stack.io.yaml", kind: "Firewall", plural: "firewalls", columns: ["Interval", "InternalPrefixes", "Ready", "Reason", "Policies", "Message", "Last Run", "Age"], short: [] as string[] },
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

/**
 * The CRDs' rules themselves, on the test API server (schema + CEL as a real apiserver checks them):
 * valid objects (the repository's examples included) are accepted, invalid ones refused with the CRD's message.
 */
describe("CRD rules on an API server", async () => {
  const { kubectl, kubectlMissing, seed, startTestServer, tempFile } = await import("./apiserver/harness.ts");
  const { parseAllDocuments } = await import("yaml");
  type T = Awaited<ReturnType<typeof startTestServer>>;
  let t: T;
  const CWNP = "/apis/metal-stack.io/v1/namespaces/firewall/clusterwidenetworkpolicies";
  const FW = "/apis/metal-stack.io/v1/namespaces/firewall/firewalls";
  const post = async (path: string, body: unknown) => {
    const r = await fetch(`${t.server.url}${path}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    return { status: r.status, body: (await r.json()) as { message?: string } };
  };
  let n = 0;
  const policy = (spec: unknown) => ({ apiVersion: "metal-stack.io/v1", kind: "ClusterwideNetworkPolicy", metadata: { name: `p${++n}` }, spec });
  const firewall = (spec: unknown) => ({ apiVersion: "metal-stack.io/v1", kind: "Firewall", metadata: { name: `f${++n}` }, spec });

  beforeAll(async () => {
    t = await startTestServer();
    await seed(t);
  });
  afterAll(async () => t.close());

  test("the examples are accepted", async () => {
    for (const file of ["policies.yaml", "firewall.yaml"]) {
      for (const doc of parseAllDocuments(readFileSync(join(ROOT, "examples", file), "utf8"))) {
        const o = doc.toJS() as { kind: string } | null;
        if (!o) continue;
        expect((await post(o.kind === "Firewall" ? FW : CWNP, o)).status).toBe(201);
      }
    }
  });

  const valid: [string, unknown][] = [
    ["except inside cidr, not at its start (containsCIDR bug of 1.31/1.32)", { egress: [{ to: [{ cidr: "10.0.0.0/8", except: ["10.1.0.0/16"] }] }] }],
    ["IPv6 except", { ingress: [{ from: [{ cidr: "2001:db8::/32", except: ["2001:db8:1::/48"] }] }] }],
    ["host bits set (the controller normalises them)", { egress: [{ to: [{ cidr: "203.0.113.7/24" }] }] }],
    ["port range", { egress: [{ ports: [{ protocol: "UDP", port: 1, endPort: 65535 }] }] }],
    ["endPort equal to port", { egress: [{ ports: [{ port: 80, endPort: 80 }] }] }],
  ];
  for (const [name, spec] of valid) test(`accepted: ${name}`, async () => expect((await post(CWNP, policy(spec))).status).toBe(201));

  const invalid: [string, unknown, string][] = [
    ["bad cidr", { egress: [{ to: [{ cidr: "203.0.113.0/33" }] }] }, 'spec.egress[0].to[0].cidr: Invalid value: "string": cidr must be a CIDR such as 203.0.113.0/24 or 2001:db8::/32'],
    ["bad except", { egress: [{ to: [{ cidr: "203.0.113.0/24", except: ["nope"] }] }] }, 'spec.egress[0].to[0].except[0]: Invalid value: "string": except entries must be CIDRs such as 203.0.113.0/28'],
    ["except outside cidr", { egress: [{ to: [{ cidr: "203.0.113.0/28", except: ["198.51.100.0/24"] }] }] }, 'spec.egress[0].to[0].except: Invalid value: "object": every except must lie inside the cidr of its own block (same address family): 198.51.100.0/24 not inside 203.0.113.0/28'],
    ["except wider than cidr", { ingress: [{ from: [{ cidr: "203.0.113.0/28", except: ["203.0.113.0/24"] }] }] }, 'spec.ingress[0].from[0].except: Invalid value: "object": every except must lie inside the cidr of its own block (same address family): 203.0.113.0/24 not inside 203.0.113.0/28'],
    ["except of the other family", { egress: [{ to: [{ cidr: "203.0.113.0/24", except: ["2001:db8::/64"] }] }] }, 'spec.egress[0].to[0].except: Invalid value: "object": every except must lie inside the cidr of its own block (same address family): 2001:db8::/64 not inside 203.0.113.0/24'],
    ["block without cidr", { egress: [{ to: [{ except: ["203.0.113.0/28"] }] }] }, "spec.egress[0].to[0].cidr: Required value"],
    ["endPort < port", { egress: [{ ports: [{ port: 443, endPort: 80 }] }] }, 'spec.egress[0].ports[0].endPort: Invalid value: "object": endPort must be greater than or equal to port'],
    ["endPort without port", { egress: [{ ports: [{ endPort: 80 }] }] }, 'spec.egress[0].ports[0].endPort: Invalid value: "object": endPort requires port'],
    ["port 0", { egress: [{ ports: [{ port: 0 }] }] }, "spec.egress[0].ports[0].port: Invalid value: 0: spec.egress[0].ports[0].port in body should be greater than or equal to 1"],
    ["port 65536", { ingress: [{ ports: [{ port: 65536 }] }] }, "spec.ingress[0].ports[0].port: Invalid value: 65536: spec.ingress[0].ports[0].port in body should be less than or equal to 65535"],
    ["named port", { egress: [{ ports: [{ port: "https" }] }] }, 'spec.egress[0].ports[0].port: Invalid value: "string": spec.egress[0].ports[0].port in body must be of type integer: "string"'],
    ["unknown protocol", { egress: [{ ports: [{ protocol: "ICMP" }] }] }, 'spec.egress[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"'],
  ];
  for (const [name, spec, cause] of invalid) {
    test(`refused: ${name}`, async () => {
      const r = await post(CWNP, policy(spec));
      expect(r.status).toBe(422);
      expect(r.body.message).toStartWith(`ClusterwideNetworkPolicy.metal-stack.io "p${n}" is invalid: `);
      expect(r.body.message).toContain(cause);
    });
  }

  const invalidFirewalls: [string, unknown, string][] = [
    ["interval below 1s", { interval: "500ms" }, 'spec.interval: Invalid value: "string": interval must be at least 1s'],
    ["interval not a duration", { interval: "10 seconds" }, `spec.interval: Invalid value: "10 seconds": spec.interval in body should match`],
    ["internal prefix not a CIDR", { internalprefixes: ["10.0.0.0"] }, 'spec.internalprefixes[0]: Invalid value: "string": must be a CIDR such as 10.0.0.0/8 or fd00::/8'],
    ["interface ..", { ratelimits: [{ interface: "..", rate: 10 }] }, 'spec.ratelimits[0].interface: Invalid value: "string": interface must not be "." or ".."'],
    ["rate 0", { ratelimits: [{ interface: "eth0", rate: 0 }] }, "spec.ratelimits[0].rate: Invalid value: 0: spec.ratelimits[0].rate in body should be greater than or equal to 1"],
    ["interface twice", { ratelimits: [{ interface: "eth0", rate: 1 }, { interface: "eth0", rate: 2 }] }, 'spec.ratelimits[1]: Duplicate value: map[string]interface {}{"interface":"eth0"}'],
    ["relative rule file", { ipv4rulefile: "rules.v4" }, `spec.ipv4rulefile: Invalid value: "rules.v4": spec.ipv4rulefile in body should match '^(/.*)?$'`],
  ];
  for (const [name, spec, cause] of invalidFirewalls) {
    test(`Firewall refused: ${name}`, async () => {
      const r = await post(FW, firewall(spec));
      expect(r.status).toBe(422);
      expect(r.body.message).toContain(cause);
    });
  }

  test.skipIf(kubectlMissing("crds.test.ts"))("kubectl apply prints the server's refusal", async () => {
    const file = tempFile(t, "bad.yaml", JSON.stringify({ ...policy({ egress: [{ to: [{ cidr: "203.0.113.0/28", except: ["198.51.100.0/24"] }] }] }), metadata: { name: "x", namespace: "firewall" } }));
    const r = await kubectl(t, ["apply", "-f", file]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe(
      'The ClusterwideNetworkPolicy "x" is invalid: spec.egress[0].to[0].except: Invalid value: "object": every except must lie inside the cidr of its own block (same address family): 198.51.100.0/24 not inside 203.0.113.0/28',
    );
  });
});

/**
 * Unknown keys (SPEC §3.2). A real API server cannot refuse them with CEL (preserved unknown fields are not
 * accessible in CEL, and objects are not maps), so rules, blocks, ports, the Firewall spec and its ratelimits
 * keep them (x-kubernetes-preserve-unknown-fields) for the controller to refuse; elsewhere kubectl's strict
 * field validation refuses them. See the top of crds/clusterwidenetworkpolicies.metal-stack.io.yaml.
 */
describe("CRD unknown keys on an API server", async () => {
  const { kubectl, kubectlMissing, repoCrds, seed, startTestServer, tempFile } = await import("./apiserver/harness.ts");
  const { parsePolicy } = await import("../lib/api/policy.ts");
  type T = Awaited<ReturnType<typeof startTestServer>>;
  let t: T;
  const CWNP = "/apis/metal-stack.io/v1/namespaces/firewall/clusterwidenetworkpolicies";
  const FW = "/apis/metal-stack.io/v1/namespaces/firewall/firewalls";
  const send = async (path: string, body: unknown) => {
    const r = await fetch(`${t.server.url}${path}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    return { status: r.status, warning: r.headers.get("warning"), body: (await r.json()) as { message?: string; spec?: unknown } };
  };
  let n = 0;
  const policy = (spec: unknown) => ({ apiVersion: "metal-stack.io/v1", kind: "ClusterwideNetworkPolicy", metadata: { name: `u${++n}` }, spec });

  beforeAll(async () => {
    t = await startTestServer();
    await seed(t);
  });
  afterAll(async () => t.close());

  test("a typo in a port, a block or a rule is stored as written (never pruned into a wider rule), for any client", async () => {
    for (const q of ["", "?fieldValidation=Strict"]) {
      const spec = { ingress: [{ from: [{ cidr: "203.0.113.0/24", exept: ["203.0.113.0/28"] }], ports: [{ prot: 22 }] }], egress: [{ to: [{ cidr: "198.51.100.0/24" }], port: [{ port: 53 }] }] };
      const r = await send(`${CWNP}${q}`, policy(spec));
      expect(r.status).toBe(201);
      expect(r.warning).toBeNull();
      expect(r.body.spec).toEqual({ ingress: [{ from: [{ cidr: "203.0.113.0/24", exept: ["203.0.113.0/28"] }], ports: [{ protocol: "TCP", prot: 22 }] }], egress: [{ to: [{ cidr: "198.51.100.0/24" }], port: [{ port: 53 }] }] });
      // ... and the controller refuses it, naming each key's path.
      const parsed = parsePolicy(r.body);
      expect(parsed.ok).toBe(false);
      const problems = JSON.stringify(parsed.ok ? [] : parsed.problems);
      for (const key of ["prot", "exept", "port"]) expect(problems).toContain(key);
    }
  });

  test("a typo in the Firewall spec or a ratelimit is stored as written", async () => {
    const r = await send(FW, { apiVersion: "metal-stack.io/v1", kind: "Firewall", metadata: { name: "fw-typo" }, spec: { dryRun: true, ratelimits: [{ interface: "eth0", rate: 10, burst: 5 }] } });
    expect(r.status).toBe(201);
    expect(r.body.spec).toEqual({ interval: "10s", dryRun: true, ratelimits: [{ interface: "eth0", rate: 10, burst: 5 }] });
  });

  test("a typo outside those objects is pruned with a warning, or refused with fieldValidation=Strict", async () => {
    const warned = await send(CWNP, policy({ ingres: [{ ports: [{ port: 22 }] }] }));
    expect(warned.status).toBe(201);
    expect(warned.warning).toBe('299 - "unknown field \\"spec.ingres\\""');
    const strict = await send(`${CWNP}?fieldValidation=Strict`, policy({ ingres: [{ ports: [{ port: 22 }] }] }));
    expect(strict.status).toBe(400);
    expect(strict.body.message).toBe('ClusterwideNetworkPolicy in version "v1" cannot be handled as a ClusterwideNetworkPolicy: strict decoding error: unknown field "spec.ingres"');
  });

  test("the CEL construction self.all(k, k in [...]) on a port is refused as a real apiserver refuses it", async () => {
    const crd = structuredClone(repoCrds().find((c) => c.metadata.name === "clusterwidenetworkpolicies.metal-stack.io")) as unknown as {
      metadata: { name: string };
      spec: { versions: { schema: { openAPIV3Schema: { properties: { spec: { properties: { ingress: { items: { properties: { ports: { items: { "x-kubernetes-validations": unknown[] } } } } } } } } } } }[] };
    };
    const port = crd.spec.versions[0]?.schema.openAPIV3Schema.properties.spec.properties.ingress.items.properties.ports.items;
    port?.["x-kubernetes-validations"].push({ rule: "self.all(k, k in ['protocol', 'port', 'endPort'])", message: "unknown key" });
    crd.metadata.name = "clusterwidenetworkpolicies.metal-stack.io";
    const r = await fetch(`${t.server.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`, { method: "GET" });
    const current = (await r.json()) as { metadata: { resourceVersion: string } };
    const put = await fetch(`${t.server.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`, {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...crd, metadata: { ...crd.metadata, resourceVersion: current.metadata.resourceVersion } }),
    });
    expect(put.status).toBe(422);
    expect(((await put.json()) as { message: string }).message).toContain("cannot be range of a comprehension (must be list, map, or dynamic)");
  });

  test.skipIf(kubectlMissing("crds.test.ts"))("kubectl apply: a typo outside rules/blocks/ports is refused (strict); inside them it is kept for the controller", async () => {
    const bad = tempFile(t, "typo.yaml", JSON.stringify({ ...policy({ ingres: [{ ports: [{ port: 22 }] }] }), metadata: { name: "typo", namespace: "firewall" } }));
    const refused = await kubectl(t, ["apply", "-f", bad]);
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim()).toBe(
      `Error from server (BadRequest): error when creating "${bad}": ClusterwideNetworkPolicy in version "v1" cannot be handled as a ClusterwideNetworkPolicy: strict decoding error: unknown field "spec.ingres"`,
    );
    const kept = tempFile(t, "port-typo.yaml", JSON.stringify({ ...policy({ ingress: [{ ports: [{ prot: 22 }] }] }), metadata: { name: "port-typo", namespace: "firewall" } }));
    const applied = await kubectl(t, ["apply", "-f", kept]);
    expect(applied.stderr).toBe("");
    expect(applied.stdout.trim()).toBe("clusterwidenetworkpolicy.metal-stack.io/port-typo created");
    const got = await kubectl(t, ["get", "cwnp", "-n", "firewall", "port-typo", "-o", "jsonpath={.spec.ingress[0].ports[0]}"]);
    expect(JSON.parse(got.stdout)).toEqual({ protocol: "TCP", prot: 22 });
  });
});
