import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCommand } from "../lib/exec.ts";
import pkg from "../package.json" with { type: "json" };
import { controllerCommand, ROOT } from "./cli-binary.ts";

const run = (args: string[]) => runCommand([...controllerCommand(), ...args]);

const POLICY = (name: string, spec: string) => `apiVersion: metal-stack.io/v1
kind: ClusterwideNetworkPolicy
metadata:
  name: ${name}
  namespace: firewall
spec:
${spec}
`;

function withManifests(docs: string[], fn: (dir: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), "fct-cli-"));
    try {
      docs.forEach((d, i) => writeFileSync(join(dir, `${i}.yaml`), d));
      await fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

describe("command line", () => {
  test("--help lists every flag of the SPEC and exits 0", async () => {
    const r = await run(["--help"]);
    expect(r.code).toBe(0);
    for (const f of ["--once", "--manifests", "--dry-run", "--kubeconfig", "--firewall-name", "--cluster-prefixes", "--private-vrf", "--service-ip", "--ruleset-file", "--nft", "--tc", "--nftables-metrics-addr", "--node-metrics-addr", "--health-addr", "--suricata-socket", "--enable-ids", "--log-level", "--version"]) {
      expect(r.stdout).toContain(f);
    }
  });

  test("--help documents the exit codes, the partial one included", async () => {
    const r = await run(["--help"]);
    expect(r.stdout).toContain("1 nothing changed");
    expect(r.stdout).toContain("3 partly applied: the rules are in force, but writing the ruleset file or shaping failed.");
  });

  test(
    "a hostile object name in a log line is escaped: no control characters reach the terminal",
    withManifests([`apiVersion: metal-stack.io/v1\nkind: ClusterwideNetworkPolicy\nmetadata:\n  name: "evil\\e[31m\\nrejected x"\n  namespace: firewall\nspec: {egress: [{ports: [{port: 443}]}]}\n`], async (dir) => {
      const r = await run(["--once", "--dry-run", "--manifests", dir]);
      expect(r.code).toBe(2);
      // eslint-disable-next-line no-control-regex
      expect(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/.test(r.stderr)).toBe(false);
      expect(r.stderr.split("\n").filter((l) => l.startsWith("rejected "))).toHaveLength(1);
    }),
  );

  test("--version prints the package version", async () => {
    const r = await run(["--version"]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(`firewall-controller ${pkg.version}`);
  });

  test("an unknown flag exits 1 and names the flag", async () => {
    const r = await run(["--once", "--bogus-flag", "x"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("--bogus-flag");
  });

  test("a bad flag value exits 1 and names flag and value", async () => {
    const r = await run(["--once", "--cluster-prefixes", "10.0.0.0/8,banana"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("--cluster-prefixes");
    expect(r.stderr).toContain("banana");
  });

  test("dry run of the examples prints the table and exits 0", async () => {
    const r = await run(["--once", "--dry-run", "--manifests", join(ROOT, "examples")]);
    expect(r.stderr).not.toContain("rejected ");
    expect(r.code).toBe(0);
    expect(r.stdout.startsWith("table inet firewall {")).toBe(true);
    expect(r.stdout).toContain("# shaping:");
  });

  test(
    "an invalid policy exits 2, is named on stderr with path and value, and the valid one is still rendered",
    withManifests(
      [
        POLICY("good", "  egress:\n  - to:\n    - cidr: 198.51.100.0/24\n    ports:\n    - port: 443"),
        POLICY("bad", "  egress:\n  - to:\n    - cidr: 203.0.113.0/28\n      except:\n      - 198.51.100.0/24"),
      ],
      async (dir) => {
        const r = await run(["--once", "--dry-run", "--manifests", dir]);
        expect(r.code).toBe(2);
        expect(r.stderr).toContain("ClusterwideNetworkPolicy firewall/bad");
        expect(r.stderr).toContain("spec.egress[0].to[0].except[0]: 198.51.100.0/24 is not inside cidr 203.0.113.0/28");
        expect(r.stdout).toContain("accept traffic for np good tcp");
        expect(r.stdout).not.toContain("np bad");
      },
    ),
  );

  test(
    "objects out of scope are not rejections: exit 0",
    withManifests(
      [
        POLICY("elsewhere", "  egress:\n  - ports:\n    - port: 22").replace("namespace: firewall", "namespace: default"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: internal\n  namespace: shop\nspec:\n  type: ClusterIP\n  ports:\n  - port: 80\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: firewall\n",
      ],
      async (dir) => {
        const r = await run(["--once", "--dry-run", "--manifests", dir]);
        expect(r.code).toBe(0);
        expect(r.stdout).not.toContain("elsewhere");
      },
    ),
  );

  test("--once against an unreachable API server exits 1 and says so, in our words", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fct-cli-"));
    try {
      const kubeconfig = join(dir, "kubeconfig");
      writeFileSync(kubeconfig, "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'http://127.0.0.1:1', insecure-skip-tls-verify: true}\nusers:\n- name: u\n  user: {token: x}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n");
      const r = await run(["--once", "--kubeconfig", kubeconfig, "--ruleset-file", join(dir, "r.v4")]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("error:");
      expect(r.stderr).toContain("unreachable");
      // In our words, without the runtime's hints for programmers; log lines carry level names.
      expect(r.stderr).not.toContain("verbose");
      const levels = r.stderr.split("\n").filter((l) => l.startsWith("{")).map((l) => (JSON.parse(l) as { level: unknown }).level);
      expect(levels.length).toBeGreaterThan(0);
      for (const level of levels) expect(["trace", "debug", "info", "warn", "error", "fatal"]).toContain(level as string);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("without --once, --manifests is refused (the long-running mode watches the API server)", async () => {
    const r = await run(["--manifests", join(ROOT, "examples")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("--once");
  });

  test("--manifests naming a device or a FIFO is refused unopened: exit 1, named, no hang", async () => {
    const zero = await run(["--once", "--dry-run", "--manifests", "/dev/zero"]);
    expect(zero.code).toBe(1);
    expect(zero.stderr).toContain("/dev/zero");
    expect(zero.stdout).toBe("");
    const dir = mkdtempSync(join(tmpdir(), "fct-cli-"));
    try {
      const fifo = join(dir, "objects.yaml");
      expect((await runCommand(["mkfifo", fifo])).code).toBe(0);
      const r = await run(["--once", "--dry-run", "--manifests", fifo]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(fifo);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a missing manifests path exits 1 and names the path", async () => {
    const r = await run(["--once", "--dry-run", "--manifests", "/nonexistent/fct"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("/nonexistent/fct");
    expect(r.stdout).toBe("");
  });

  test(
    "a YAML syntax error exits 1, names the file, and applies nothing",
    withManifests(["kind: [unclosed\n"], async (dir) => {
      const r = await run(["--once", "--dry-run", "--manifests", dir]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("0.yaml");
      expect(r.stdout).toBe("");
    }),
  );
});
