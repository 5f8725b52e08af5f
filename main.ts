/**
 * firewall-controller: parses flags and wires the parts together. No logic here.
 * @module
 */
import { hostname } from "node:os";
import pkg from "./package.json" with { type: "json" };
import { removeFileIfRegular, writeFileAtomic } from "./lib/atomic-file.ts";
import { helpText, parseFlags } from "./lib/cli/flags.ts";
import { runOnce } from "./lib/cli/once.ts";
import { runAgainstCluster } from "./lib/cli/run.ts";
import { escapeText } from "./lib/escape.ts";
import { runCommand } from "./lib/exec.ts";
import { clusterApi } from "./lib/kube/api.ts";
import { loadKubeConfig } from "./lib/kube/config.ts";
import { EventRecorder } from "./lib/kube/events.ts";
import { createLogger } from "./lib/log.ts";
import { GC_TIMER_INTERVAL_MS, runTuned } from "./lib/runtime-tuning.ts";
import { DropLog } from "./lib/droptailer/drop-log.ts";
import { dropLogSource } from "./lib/droptailer/source.ts";
import { SuricataClient } from "./lib/ids/suricata.ts";
import { ControllerMetrics } from "./lib/metrics/controller.ts";
import { nftablesRegistry } from "./lib/metrics/nftables.ts";
import { nodeRegistry } from "./lib/metrics/node.ts";
import { readSnapshot } from "./lib/nft/snapshot.ts";
import { collectStats } from "./lib/stats/collect.ts";
import { KernelSnapshots, SCRAPE_MAX_AGE_MS } from "./lib/stats/kernel-snapshot.ts";
import { statsSnapshot, type TableModel } from "./lib/stats/model-snapshot.ts";
import { nftClient } from "./lib/nft/client.ts";
import { kernelReader } from "./lib/nft/netlink.ts";
import { tcShaper } from "./lib/tc/shaper.ts";

/** Errors name flags, paths and values the user typed: they pass the output gate. */
const fail = (message: string) => process.stderr.write(`error: ${escapeText(message, { max: 4096 })}\n`);

async function main(argv: readonly string[]): Promise<number> {
  const parsed = parseFlags(argv);
  if (!parsed.ok) {
    fail(parsed.message);
    return 1;
  }
  const flags = parsed.value;
  if (flags.help) {
    process.stdout.write(helpText());
    return 0;
  }
  if (flags.version) {
    process.stdout.write(`firewall-controller ${pkg.version}\n`);
    return 0;
  }
  const log = createLogger(flags.logLevel);
  if (!flags.once) {
    const failure = runTuned();
    if (failure !== undefined) log.warn(`could not restart with the tuned runtime settings (Bun's idle GC timer at ${GC_TIMER_INTERVAL_MS / 1000} s, no allocator scavenger thread): ${failure}; running with Bun's defaults, which cost more CPU`);
  }
  for (const note of parsed.notes) log.warn({ code: "bad_flag" }, note);
  const netlink = kernelReader();
  const kernel = {
    nft: nftClient(flags.nft, runCommand, netlink),
    shaper: tcShaper({ tc: flags.tc, ip: flags.ip, exec: runCommand }),
    writeFile: writeFileAtomic,
    removeFile: removeFileIfRegular,
  };
  if (flags.manifests !== undefined) {
    if (!flags.once) {
      fail("--manifests reads files once; add --once (the long-running mode watches the API server)");
      return 1;
    }
    return runOnce(flags, { ...kernel, log, stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s) });
  }
  if (flags.dryRun) {
    fail("--dry-run needs --once --manifests PATH");
    return 1;
  }
  let api;
  try {
    api = clusterApi(loadKubeConfig(flags.kubeconfig));
  } catch (e) {
    fail(e instanceof Error ? e.message : String(e));
    return 1;
  }
  const stop = new AbortController();
  for (const sig of ["SIGTERM", "SIGINT"] as const) process.once(sig, () => stop.abort());
  const events = new EventRecorder(api, { component: "firewall-controller", host: hostname() });
  const metrics = new ControllerMetrics({ version: pkg.version });
  // With netlink, statistics and scrapes read our table's counters from the kernel and never list it.
  const snapshots = netlink ? new KernelSnapshots({ nftPath: flags.nft, exec: runCommand, kernel: netlink }) : undefined;
  const snapshot = () => (snapshots ? snapshots.read({ maxAgeMs: SCRAPE_MAX_AGE_MS }) : readSnapshot(flags.nft, runCommand));
  const suricata = flags.enableIds ? new SuricataClient({ socketPath: flags.suricataSocket, signal: stop.signal }) : undefined;
  const statistics = (model?: TableModel, intervalMs?: number) =>
    collectStats({ snapshot: () => (snapshots ? snapshots.readForInterval(intervalMs ?? 0) : statsSnapshot(flags.nft, runCommand, model, kernel.nft)), ...(suricata ? { ids: () => suricata.collect() } : {}) });
  const registries = {
    nftables: [nftablesRegistry(() => snapshot().catch(() => null), { perPolicySeries: flags.metricsPerPolicy }), metrics.registry],
    node: [nodeRegistry()],
  };
  // The drop log runs beside the controller (long-running mode only): it never blocks reconciling.
  const dropLog = flags.dropLog && !flags.once
    ? new DropLog({
      stateDir: flags.stateDir,
      signal: stop.signal,
      source: dropLogSource(flags.dropLogSource),
      ...(flags.journalDirectory ? { journal: { directory: flags.journalDirectory } } : {}),
      onProblem: (m) => log.warn({ code: "drop_log" }, m),
    })
    : undefined;
  if (dropLog) {
    metrics.droptailerFrom(() => dropLog.status());
    void dropLog.run();
  }
  const applied = snapshots ? { applied: (m: Parameters<KernelSnapshots["applied"]>[0]) => snapshots.applied(m) } : {};
  return runAgainstCluster(flags, { ...kernel, api, events, log, metrics, statistics, registries, ...applied, ...(dropLog ? { dropLog } : {}) }, stop.signal);
}

process.exitCode = await main(process.argv.slice(2));
// Open handles (a watch being torn down) must not keep a finished run alive.
process.exit();
