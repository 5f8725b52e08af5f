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
import { Controller, type ControllerDeps } from "../controller.ts";
import { FirewallError } from "../errors.ts";
import { startHealthServer } from "../health.ts";
import type { Flags } from "./flags.ts";
import { rejectionLine, stderrLine } from "./report.ts";

export async function runAgainstCluster(flags: Flags, deps: ControllerDeps, signal: AbortSignal): Promise<number> {
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
  deps.log.info({ health: health.port, firewall: flags.firewallName }, "controller started");
  await controller.run();
  await health.close();
  deps.log.info({}, "stopped; the rules stay as they are");
  return 0;
}
