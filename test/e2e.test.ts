// As an operator would run it: the built binary inside the firewall namespace,
// the test API server (standalone, `bun test/apiserver/main.ts`) on that
// namespace's loopback, and real kubectl applying the CRDs, the examples and
// policies. Traffic from the cluster host proves what the rules do.
import { hasOwner } from "./owners.ts";
import pkg from "../package.json" with { type: "json" };
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { controllerCommand, ROOT } from "./cli-binary.ts";
import { kubectlMissing, tableRows } from "./apiserver/harness.ts";
import { type Background, createTopology, needs, type Topology } from "./netns/topology.ts";
import { waitUntil } from "./wait-until.ts";

const env = needs(["ip", "nft", "tc"]);
const noKubectl = kubectlMissing("test/e2e.test.ts");
const A = "203.0.113.5";

const POLICY = (name: string, port: number) => `apiVersion: metal-stack.io/v1
kind: ClusterwideNetworkPolicy
metadata:
  name: ${name}
  namespace: firewall
spec:
  egress:
  - to:
    - cidr: ${A}/32
    ports:
    - port: ${port}
`;


describe.skipIf(env.skip || noKubectl)("end to end: binary, kubectl and the test API server in the firewall namespace", () => {
  let topo: Topology;
  let dir: string;
  let kubeconfig: string;
  let apiserver: Background;
  let controller: Background | undefined;

  const kubectl = (args: string[], stdin?: string) => topo.exec("firewall", ["kubectl", "--kubeconfig", kubeconfig, ...args], stdin === undefined ? {} : { stdin });
  const kubectlOk = async (args: string[], stdin?: string) => {
    const r = await kubectl(args, stdin);
    if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };
  const hasChain = (owner: string) => hasOwner(topo.executor("firewall"), owner);
  const flags = () => ["--kubeconfig", kubeconfig, "--private-vrf", "42", "--cluster-prefixes", "10.0.0.0/8,fd00:66::/64", "--ruleset-file", join(dir, "ruleset.v4"), "--ruleset-dir", dir, "--service-ip", "10.0.1.1", "--health-addr", "127.0.0.1:18080", "--state-dir", join(dir, "state")];

  beforeAll(async () => {
    topo = await createTopology();
    dir = mkdtempSync(join(tmpdir(), "fct-e2e-"));
    kubeconfig = join(dir, "kubeconfig");
    apiserver = topo.start("firewall", [process.execPath, join(ROOT, "test/apiserver/main.ts"), "--kubeconfig-out", kubeconfig]);
    await waitUntil("the API server's kubeconfig", async () => existsSync(kubeconfig));
    await kubectlOk(["create", "namespace", "firewall"]);
    // The namespaces of the example Services.
    const namespaces = new Set([...readFileSync(join(ROOT, "examples/services.yaml"), "utf8").matchAll(/^\s+namespace: (\S+)$/gm)].map((m) => m[1] as string));
    for (const ns of namespaces) await kubectlOk(["create", "namespace", ns]);
  });

  afterAll(async () => {
    await controller?.stop();
    await apiserver?.stop();
    await topo?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("--once against the cluster installs the CRDs, applies, and exits 0; an invalid policy makes it 2", async () => {
    await kubectlOk(["apply", "-f", join(ROOT, "crds")]);
    // The examples, but a Firewall whose ipv4rulefile is ours: the example's points into /etc.
    await kubectlOk(["apply", "-f", join(ROOT, "examples/policies.yaml"), "-f", join(ROOT, "examples/services.yaml")]);
    const fw = readFileSync(join(ROOT, "examples/firewall.yaml"), "utf8").replace(/ipv4rulefile: .*/, `ipv4rulefile: ${join(dir, "ruleset.v4")}`);
    expect(fw).toContain(dir);
    await kubectlOk(["apply", "-f", "-"], fw);
    const ok = await topo.exec("firewall", [...controllerCommand(), "--once", ...flags()]);
    expect(ok.stderr).not.toContain("error");
    expect(ok.code).toBe(0);
    expect(await hasChain("np.eg.tcp.allow-https")).toBe(true);
    // What the CRD's CEL rules can tell, the API server refuses, with the rule's message.
    const refused = await kubectl(["apply", "-f", "-"], POLICY("bad-except", 443).replace(`cidr: ${A}/32`, "cidr: 203.0.113.0/28\n      except: [198.51.100.0/24]"));
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim()).toBe(
      'The ClusterwideNetworkPolicy "bad-except" is invalid: spec.egress[0].to[0].except: Invalid value: "object": every except must lie inside the cidr of its own block (same address family): 198.51.100.0/24 not inside 203.0.113.0/28',
    );
    // What only the controller can tell (the element budget), it rejects: exit 2, status Invalid.
    const hosts = Array.from({ length: 100 }, (_, i) => `    - cidr: 198.18.${i}.1/32`).join("\n");
    const ports = Array.from({ length: 128 }, (_, i) => `    - port: ${2000 + 2 * i}`).join("\n");
    await kubectlOk(["apply", "-f", "-"], `apiVersion: metal-stack.io/v1\nkind: ClusterwideNetworkPolicy\nmetadata:\n  name: too-big\n  namespace: firewall\nspec:\n  egress:\n  - to:\n${hosts}\n    ports:\n${ports}\n`);
    const two = await topo.exec("firewall", [...controllerCommand(), "--once", ...flags()]);
    expect(two.code).toBe(2);
    // One reconcile, not a second one racing it from the caches' change notifications.
    expect(two.stderr).not.toContain("reconcile failed");
    expect(two.stderr).toContain("rejected ClusterwideNetworkPolicy firewall/too-big: spec: renders 12,800 map elements, more than the limit of 10,000 per object");
    const rows = tableRows(await kubectlOk(["get", "cwnp", "-n", "firewall"]));
    expect(rows.find((r) => r[0] === "too-big")?.[1]).toBe("Invalid");
    expect(rows.find((r) => r[0] === "allow-https")?.[1]).toBe("Ready");
    await kubectlOk(["delete", "cwnp", "-n", "firewall", "too-big"]);
    // The rules are in force, but the ruleset file cannot be written (its path is a directory): 3.
    mkdirSync(join(dir, "not-a-file.v4"));
    await kubectlOk(["apply", "-f", "-"], fw.replace(/ipv4rulefile: .*/, `ipv4rulefile: ${join(dir, "not-a-file.v4")}`));
    await kubectlOk(["apply", "-f", "-"], POLICY("one-more", 9443));
    const partial = await topo.exec("firewall", [...controllerCommand(), "--once", ...flags()]);
    expect(partial.code).toBe(3);
    expect(partial.stderr.match(/"msg":"ruleset applied"/g)).toHaveLength(1);
    expect(partial.stderr).toContain(`error: ruleset applied, but writing ${join(dir, "not-a-file.v4")} failed`);
    expect(await hasChain("np.eg.tcp.one-more")).toBe(true);
    // A Firewall this process never saw valid: nothing is applied on its behalf (its dryrun, its
    // ruleset file are unknown): exit 1, the kernel as it was.
    const tableBefore = (await topo.exec("firewall", ["nft", "list", "table", "inet", "firewall"])).stdout.replace(/packets \d+ bytes \d+/g, "");
    await kubectlOk(["apply", "-f", "-"], fw.replace(/ipv4rulefile: .*/, "ipv4rulefile: /etc/passwd"));
    await kubectlOk(["delete", "cwnp", "-n", "firewall", "one-more"]);
    const invalid = await topo.exec("firewall", [...controllerCommand(), "--once", ...flags()]);
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toContain("rejected Firewall firewall/firewall: spec.ipv4rulefile: \"/etc/passwd\" is outside");
    expect(invalid.stderr).toContain("error: Firewall firewall/firewall is invalid and this controller has not seen a valid version of it since it started");
    expect((await topo.exec("firewall", ["nft", "list", "table", "inet", "firewall"])).stdout.replace(/packets \d+ bytes \d+/g, "")).toBe(tableBefore);
    await kubectlOk(["apply", "-f", "-"], fw);
  }, 60_000);

  test("long-running: a policy applied with kubectl is in the kernel within a second, a deleted one is gone", async () => {
    controller = topo.start("firewall", [...controllerCommand(), ...flags()]);
    const probe = "fetch('http://127.0.0.1:18080/readyz').then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))";
    await waitUntil("ready", async () => (await topo.exec("firewall", [process.execPath, "-e", probe])).code === 0, 15_000);
    // Its own metrics on :9630 (the default listen address).
    const scrape = await topo.exec("firewall", [process.execPath, "-e", "fetch('http://127.0.0.1:9630/metrics').then(async (r) => { console.log(r.status); console.log(await r.text()); })"]);
    expect(scrape.stdout.split("\n")[0]).toBe("200");
    expect(scrape.stdout).toContain(`firewall_controller_build_info{version="${pkg.version}"} 1`);
    expect(scrape.stdout).toContain("firewall_controller_ready 1");
    await kubectlOk(["apply", "-f", "-"], POLICY("web-8443", 8443));
    const ms = await waitUntil("policy in the kernel", () => hasChain("np.eg.tcp.web-8443"));
    expect(ms).toBeLessThan(1000);
    expect(await topo.tcpConnect("cluster", A, 8443)).toBe(true);
    await kubectlOk(["delete", "cwnp", "-n", "firewall", "web-8443"]);
    await waitUntil("policy removed", async () => !(await hasChain("np.eg.tcp.web-8443")));
    expect(await topo.tcpConnect("cluster", A, 8443)).toBe(false);
  }, 60_000);

  test("kubectl shows the exporter Services and Endpoints, and the Firewall's status", async () => {
    await waitUntil("exporter endpoints", async () => (await kubectl(["get", "ep", "-n", "firewall"])).stdout.includes("10.0.1.1:9630"));
    const svc = await kubectlOk(["get", "svc,ep", "-n", "firewall"]);
    for (const s of ["nftables-exporter", "node-exporter", "10.0.1.1:9630", "10.0.1.1:9100"]) expect(svc).toContain(s);
    expect(svc).toContain("None");
    const described = await kubectlOk(["describe", "firewall", "-n", "firewall", "firewall"]);
    expect(described).toContain("RulesApplied");
    expect(described).toContain("Last Run:");
  });

  test("SIGTERM: exits 0 and leaves the rules in place", async () => {
    const r = await controller?.stop();
    controller = undefined;
    expect({ code: r?.code, stderr: r?.stderr.split("\n").filter((l) => !l.startsWith("{")).join("\n") }).toEqual({ code: 0, stderr: "" });
    expect(await hasChain("np.eg.tcp.allow-https")).toBe(true);
    expect(readFileSync(join(dir, "ruleset.v4"), "utf8")).toContain("table inet firewall");
    writeFileSync(join(dir, "done"), "");
  });
});
