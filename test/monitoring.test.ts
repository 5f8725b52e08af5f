// The monitoring kit in deploy/ against real components: promtool checks the alert rules; the
// built binary runs inside the firewall namespace of a topology (standalone test API server,
// kubectl), a real Prometheus in the same namespace scrapes both endpoints every second and
// evaluates the alert rules, real TCP traffic moves the accounting counters, and every query
// of the dashboard and of the rules goes through Prometheus' query API.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { controllerCommand, ROOT } from "./cli-binary.ts";
import { kubectlMissing } from "./apiserver/harness.ts";
import { type Background, createTopology, HARNESS_TOOLS, needs, type Topology } from "./netns/topology.ts";
import { waitUntil } from "./wait-until.ts";

const PROMETHEUS = "/usr/bin/prometheus";
const PROMTOOL = "/usr/bin/promtool";
const RULES = join(ROOT, "deploy/prometheus-rules.yaml");
const DASHBOARD = join(ROOT, "deploy/grafana-dashboard.json");
const A = "203.0.113.5";
const PROM = "http://127.0.0.1:19090";
const NFT_TARGET = "127.0.0.1:19630";
const NODE_TARGET = "127.0.0.1:19100";

interface Rule { alert: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }
const rules = (): Rule[] => (parseYaml(readFileSync(RULES, "utf8")) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules);

interface Panel { type: string; title: string; id: number; datasource?: { uid: string }; targets?: { expr: string; datasource?: { uid: string } }[]; panels?: Panel[] }
interface Dashboard { schemaVersion: number; uid: string; panels: Panel[]; templating: { list: { name: string; type: string; query: unknown; regex?: string }[] } }
const dashboard = (): Dashboard => JSON.parse(readFileSync(DASHBOARD, "utf8")) as Dashboard;
const allPanels = (d: Dashboard): Panel[] => d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const dashboardExprs = (d: Dashboard): { title: string; expr: string }[] =>
  allPanels(d).flatMap((p) => (p.targets ?? []).map((t) => ({ title: p.title, expr: t.expr })));
/** Grafana's variables as they would be substituted for the test's firewall (Prometheus and the controller on 127.0.0.1). */
const substitute = (expr: string) => expr.replaceAll("$firewall", "127.0.0.1").replaceAll("$__rate_interval", "1m");

/** promtool alone needs no root: a tool check of its own (loud skip outside CI, failure in CI). */
function promtoolMissing(): boolean {
  try {
    accessSync(PROMTOOL, constants.X_OK);
    return false;
  } catch {
    if (process.env.CI === "true") throw new Error(`${PROMTOOL} is missing (apt-get install prometheus); CI=true, so this fails instead of skipping`);
    console.warn(`SKIPPING test/monitoring.test.ts promtool checks: ${PROMTOOL} is missing (apt-get install prometheus)`);
    return true;
  }
}

describe.skipIf(promtoolMissing())("deploy/: the alert rules and the dashboard as files", () => {
  test("promtool check rules is clean", () => {
    const r = spawnSync(PROMTOOL, ["check", "rules", RULES], { encoding: "utf8" });
    expect({ code: r.status, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    expect(r.stdout).toContain(`SUCCESS: ${rules().length} rules found`);
  });

  test("every rule has a severity and a summary and description", () => {
    const names = rules().map((r) => r.alert);
    expect(names).toEqual([
      "FirewallControllerDown",
      "FirewallControllerAbsent",
      "FirewallControllerReconcileFailing",
      "FirewallControllerNotReady",
      "FirewallControllerRulesNotApplied",
      "NftablesMetricsDown",
      "FirewallDropRateHigh",
    ]);
    for (const r of rules()) {
      expect([r.alert, ["critical", "warning", "info"].includes(r.labels?.severity ?? "")]).toEqual([r.alert, true]);
      expect([r.alert, Boolean(r.annotations?.summary), Boolean(r.annotations?.description)]).toEqual([r.alert, true, true]);
    }
    expect(rules().find((r) => r.alert === "FirewallControllerNotReady")?.for).toBe("5m");
  });

  test("the dashboard: schema 38, the two variables, every panel on ${DS_PROMETHEUS}, unique ids", () => {
    const d = dashboard();
    expect(d.schemaVersion).toBe(38);
    expect(d.templating.list.map((v) => [v.name, v.type])).toEqual([["DS_PROMETHEUS", "datasource"], ["firewall", "query"]]);
    const panels = allPanels(d);
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    for (const p of panels.filter((p) => p.type !== "row")) {
      expect([p.title, p.datasource?.uid]).toEqual([p.title, "${DS_PROMETHEUS}"]);
      expect([p.title, (p.targets ?? []).length > 0]).toEqual([p.title, true]);
      for (const t of p.targets ?? []) expect([p.title, t.datasource?.uid, t.expr.includes('instance=~"$firewall:[0-9]+"')]).toEqual([p.title, "${DS_PROMETHEUS}", true]);
    }
    const exprs = dashboardExprs(d).map((e) => e.expr).join("\n");
    for (const needed of ["(in|ex)ternal_(in|out)", "drop_total", 'nftables_rule_bytes{', 'comment=~"accept traffic for .*"', "topk(10", "firewall_controller_reconciles_total", "histogram_quantile(0.99", "firewall_controller_ready", "firewall_controller_last_successful_reconcile_timestamp_seconds", "node_cpu_seconds_total", "node_memory_MemAvailable_bytes", "node_network_receive_bytes_total"]) {
      expect([needed, exprs.includes(needed)]).toEqual([needed, true]);
    }
  });
});

const env = needs([...HARNESS_TOOLS, "nft", "tc", PROMETHEUS, PROMTOOL]);
const noKubectl = env.skip ? true : kubectlMissing("test/monitoring.test.ts");

describe.skipIf(env.skip || noKubectl)("monitoring: a real Prometheus scrapes the built binary in the firewall namespace", () => {
  let topo: Topology;
  let dir: string;
  let kubeconfig: string;
  let apiserver: Background | undefined;
  let controller: Background | undefined;
  let prometheus: Background | undefined;

  const kubectlOk = async (args: string[], stdin?: string) => {
    const r = await topo.exec("firewall", ["kubectl", "--kubeconfig", kubeconfig, ...args], stdin === undefined ? {} : { stdin });
    if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  };
  /** GETs URLs from inside the firewall namespace (where Prometheus and the controller listen); one process for all. */
  const getAll = async (urls: string[]): Promise<{ status: number; body: string }[]> => {
    const script = `const urls = JSON.parse(await Bun.stdin.text());
const out = await Promise.all(urls.map((u) => fetch(u).then(async (r) => ({ status: r.status, body: await r.text() }), (e) => ({ status: 0, body: String(e) }))));
console.log(JSON.stringify(out));`;
    const r = await topo.exec("firewall", [process.execPath, "-e", script], { stdin: JSON.stringify(urls) });
    if (r.code !== 0) throw new Error(`fetch in the firewall namespace: ${r.stderr}`);
    return JSON.parse(r.stdout) as { status: number; body: string }[];
  };
  interface QueryAnswer { status: string; errorType?: string; error?: string; data?: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] } }
  const queryAll = async (exprs: string[]): Promise<QueryAnswer[]> =>
    (await getAll(exprs.map((e) => `${PROM}/api/v1/query?query=${encodeURIComponent(e)}`))).map((r) => {
      try {
        return JSON.parse(r.body) as QueryAnswer;
      } catch {
        return { status: `HTTP ${r.status}`, error: r.body };
      }
    });
  const query = async (expr: string) => (await queryAll([expr]))[0] as QueryAnswer;
  const scalarOf = (a: QueryAnswer) => a.data?.result.reduce((s, r) => s + Number(r.value[1]), 0);

  beforeAll(async () => {
    topo = await createTopology();
    dir = mkdtempSync(join(tmpdir(), "fct-monitoring-"));
    kubeconfig = join(dir, "kubeconfig");
    apiserver = topo.start("firewall", [process.execPath, join(ROOT, "test/apiserver/main.ts"), "--kubeconfig-out", kubeconfig]);
    await waitUntil("the API server's kubeconfig", async () => existsSync(kubeconfig));
    await kubectlOk(["create", "namespace", "firewall"]);
    await kubectlOk(["apply", "-f", join(ROOT, "crds")]);
    await kubectlOk(["apply", "-f", "-"], `apiVersion: metal-stack.io/v1
kind: Firewall
metadata:
  name: firewall
  namespace: firewall
spec:
  interval: 2s
  ipv4rulefile: ${join(dir, "ruleset.v4")}
  internalprefixes: ["10.0.0.0/8", "fd00::/8"]
---
apiVersion: metal-stack.io/v1
kind: ClusterwideNetworkPolicy
metadata:
  name: allow-https
  namespace: firewall
spec:
  egress:
  - to:
    - cidr: ${A}/32
    ports:
    - protocol: TCP
      port: 443
`);
    controller = topo.start("firewall", [
      ...controllerCommand(), "--kubeconfig", kubeconfig, "--private-vrf", "42", "--cluster-prefixes", "10.0.0.0/8,fd00:66::/64",
      "--ruleset-file", join(dir, "ruleset.v4"), "--ruleset-dir", dir, "--service-ip", "10.0.1.1", "--health-addr", "127.0.0.1:18080",
      "--nftables-metrics-addr", NFT_TARGET, "--node-metrics-addr", NODE_TARGET, "--enable-ids=false", "--state-dir", join(dir, "state"),
    ]);
    await waitUntil("the controller ready", async () => (await getAll(["http://127.0.0.1:18080/readyz"]))[0]?.status === 200, 20_000);

    mkdirSync(join(dir, "data"));
    writeFileSync(join(dir, "prometheus.yml"), `global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - ${RULES}
scrape_configs:
  - job_name: firewall-controller-nftables
    static_configs: [{ targets: ["${NFT_TARGET}"] }]
  - job_name: firewall-controller-node
    static_configs: [{ targets: ["${NODE_TARGET}"] }]
`);
    prometheus = topo.start("firewall", [PROMETHEUS, `--config.file=${join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${join(dir, "data")}`, "--web.listen-address=127.0.0.1:19090"]);
    await waitUntil("both Prometheus targets up", async () => {
      const [r] = await getAll([`${PROM}/api/v1/targets`]);
      if (r?.status !== 200) return false;
      const targets = (JSON.parse(r.body) as { data: { activeTargets: { scrapePool: string; health: string }[] } }).data.activeTargets;
      return targets.length === 2 && targets.every((t) => t.health === "up");
    }, 30_000, 100);
  }, 90_000);

  afterAll(async () => {
    await prometheus?.stop();
    await controller?.stop();
    await apiserver?.stop();
    await topo?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("the counters and node metrics are in Prometheus, and external_out moves with real traffic", async () => {
    const externalOut = 'sum(nftables_counter_bytes{name="external_out",table="firewall",family="inet"})';
    const policy = 'sum(nftables_rule_bytes{comment="accept traffic for np allow-https tcp",table="firewall",family="inet"})';
    await waitUntil("external_out and node_network_receive_bytes_total in Prometheus", async () => {
      const [a, b] = await queryAll([externalOut, 'node_network_receive_bytes_total{device="vlan42"}']);
      return (a?.data?.result.length ?? 0) > 0 && (b?.data?.result.length ?? 0) > 0;
    }, 15_000, 200);
    const before = scalarOf(await query(externalOut)) as number;
    const policyBefore = scalarOf(await query(policy)) ?? 0;
    const received = (await query("node_network_receive_bytes_total")).data?.result.map((r) => r.metric.device).sort();
    expect(received).toEqual(["lo", "vlan42", "vrf104009"]);
    for (let i = 0; i < 5; i++) expect(await topo.tcpConnect("cluster", A, 443)).toBe(true);
    // Nothing else is forwarded in the topology, so the counter moves only by this traffic.
    await waitUntil("external_out grows in Prometheus", async () => (scalarOf(await query(externalOut)) ?? 0) > before, 15_000, 200);
    await waitUntil("the policy's counter grows in Prometheus", async () => (scalarOf(await query(policy)) ?? 0) > policyBefore, 15_000, 200);
  }, 60_000);

  test("every query of the dashboard and of the alert rules is valid PromQL for Prometheus", async () => {
    const exprs = [...dashboardExprs(dashboard()).map((e) => ({ what: `dashboard "${e.title}"`, expr: substitute(e.expr) })), ...rules().map((r) => ({ what: `rule ${r.alert}`, expr: r.expr }))];
    expect(exprs.length).toBeGreaterThan(30);
    for (const e of exprs) expect([e.what, e.expr.includes("$")]).toEqual([e.what, false]);
    const answers = await queryAll(exprs.map((e) => e.expr));
    const bad = exprs.map((e, i) => ({ ...e, answer: answers[i] })).filter((e) => e.answer?.status !== "success" || /parse error/.test(e.answer?.error ?? ""));
    expect(bad).toEqual([]);
    // With data behind them (rates once two scrapes are in the window): the variable
    // substitution matches the targets' instances, the metric names and labels exist.
    expect(new Set(dashboardExprs(dashboard()).map((e) => e.title)).size).toBeGreaterThan(15);
    let withData = new Set<number>();
    // Every query of every panel (the rules' are empty on a healthy firewall: nothing to alert on).
    const missing = () => exprs.flatMap((e, i) => (e.what.startsWith("dashboard") && !withData.has(i) ? [`${e.what}: ${e.expr}`] : []));
    await waitUntil("data behind every query of the dashboard", async () => {
      const now = await queryAll(exprs.map((e) => e.expr));
      withData = new Set(exprs.flatMap((_, i) => ((now[i]?.data?.result.length ?? 0) > 0 ? [i] : [])));
      return missing().length === 0;
    }, 15_000, 250).catch(() => undefined);
    expect(missing()).toEqual([]);
  }, 30_000);

  test("Prometheus evaluates every alert rule without error, and none of them fires", async () => {
    await waitUntil("every rule evaluated", async () => {
      const [r] = await getAll([`${PROM}/api/v1/rules`]);
      const groups = (JSON.parse(r?.body ?? "{}") as { data?: { groups: { rules: { lastEvaluation: string }[] }[] } }).data?.groups ?? [];
      const all = groups.flatMap((g) => g.rules);
      return all.length === rules().length && all.every((x) => !x.lastEvaluation.startsWith("0001-"));
    }, 15_000, 200);
    const [r] = await getAll([`${PROM}/api/v1/rules`]);
    const evaluated = (JSON.parse(r?.body ?? "{}") as { data: { groups: { rules: { name: string; health: string; lastError?: string; state: string }[] }[] } }).data.groups.flatMap((g) => g.rules);
    expect(evaluated.map((x) => ({ name: x.name, health: x.health, lastError: x.lastError ?? "", state: x.state }))).toEqual(
      rules().map((x) => ({ name: x.alert, health: "ok", lastError: "", state: "inactive" })),
    );
  }, 30_000);

  test("promtool check metrics on both endpoints: only the lints inherited from the exporters' names", async () => {
    const lint = async (target: string) => {
      const r = await topo.exec("firewall", ["sh", "-c", `${process.execPath} -e 'process.stdout.write(await (await fetch("http://${target}/metrics")).text())' | ${PROMTOOL} check metrics`]);
      return `${r.stdout}${r.stderr}`.split("\n").map((l) => l.trim()).filter(Boolean).sort();
    };
    expect(await lint(NFT_TARGET)).toEqual([
      'nftables_counter_bytes counter metrics should have "_total" suffix',
      "nftables_counter_bytes metric name should not include type 'counter'",
      'nftables_counter_packets counter metrics should have "_total" suffix',
      "nftables_counter_packets metric name should not include type 'counter'",
      'nftables_rule_bytes counter metrics should have "_total" suffix',
      'nftables_rule_packets counter metrics should have "_total" suffix',
    ]);
    expect(await lint(NODE_TARGET)).toEqual([
      "node_memory_MemAvailable_bytes metric names should be written in 'snake_case' not 'camelCase'",
      "node_memory_MemFree_bytes metric names should be written in 'snake_case' not 'camelCase'",
      "node_memory_MemTotal_bytes metric names should be written in 'snake_case' not 'camelCase'",
    ]);
  }, 30_000);
});
