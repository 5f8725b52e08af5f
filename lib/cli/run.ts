/**
 * The two ways of running against the cluster: `--once` (one reconcile, exit
 * code of SPEC §5) and the long-running controller (until SIGTERM/SIGINT,
 * leaving the rules in place), with `/healthz` and `/readyz`.
 *
 * @example
 * ```ts
 * import { runAgainstCluster } from "./run.ts";
 * // const code = await runAgainstCluster(flags, deps, signal);
 * ```
 * @module
 */
import type { Registry } from "prom-client";
import { Controller, type ControllerDeps } from "../controller.ts";
import { FirewallError } from "../errors.ts";
import { startHealthServer } from "../health.ts";
import { type MetricsServer, startMetricsServer } from "../metrics/server.ts";
import type { Flags } from "./flags.ts";
import { rejectionLine, stderrLine } from "./report.ts";

/** What each metrics listener serves (SPEC §7): the nftables and controller families on one, node ones on the other. */
export interface MetricsRegistries {
  readonly nftables: readonly Registry[];
  readonly node: readonly Registry[];
}

export async function runAgainstCluster(flags: Flags, deps: ControllerDeps & { readonly registries?: MetricsRegistries }, signal: AbortSignal): Promise<number> {
  const controller = new Controller(
    {
      firewallName: flags.firewallName,
      clusterPrefixes: flags.clusterPrefixes,
      privateVrf: flags.privateVrf,
      serviceIp: flags.serviceIp,
      rulesetFile: flags.rulesetFile,
      rulesetDir: flags.rulesetDir,
    },
    deps,
    signal,
  );
  if (flags.once) {
    try {
      const r = await controller.runOnce();
      for (const rejection of r.rejected) process.stderr.write(rejectionLine(rejection));
      if (r.failure) process.stderr.write(stderrLine(`error: ${r.failure}`));
      deps.log.info({ exitCode: r.exitCode }, "reconciled once against the cluster");
      return r.exitCode;
    } catch (e) {
      const err = e instanceof FirewallError ? e : new FirewallError("api_failed", String(e));
      deps.log.error({ code: err.code }, err.message);
      process.stderr.write(stderrLine(`error: ${err.message}`));
      return 1;
    }
  }
  const health = await startHealthServer(flags.healthAddr, { live: () => true, ready: () => controller.readiness() }, signal).catch((e: Error) => {
    throw new FirewallError("bad_flag", `--health-addr ${flags.healthAddr}: cannot listen (${e.message})`);
  });
  const servers: MetricsServer[] = [];
  for (const [flag, addr, registries] of [
    ["--nftables-metrics-addr", flags.nftablesMetricsAddr, deps.registries?.nftables ?? []],
    ["--node-metrics-addr", flags.nodeMetricsAddr, deps.registries?.node ?? []],
  ] as const) {
    if (addr === "" || registries.length === 0) continue;
    servers.push(await startMetricsServer(addr, registries, signal).catch((e: Error) => {
      throw new FirewallError("bad_flag", `${flag} ${addr}: cannot listen (${e.message})`);
    }));
  }
  deps.log.info({ health: health.port, metrics: servers.map((m) => m.port), firewall: flags.firewallName }, "controller started");
  await controller.run();
  await health.close();
  for (const m of servers) await m.close();
  deps.log.info({}, "stopped; the rules stay as they are");
  return 0;
}
