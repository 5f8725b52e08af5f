/**
 * The dependencies of a Controller under test: the real nft and tc running
 * through `exec` (a network namespace's executor), real ruleset files, Events
 * into the test API server, statistics from that namespace's nft (no IDS), and
 * a silent logger (`FCT_LOG=debug` to see it).
 *
 * @example
 * ```ts
 * import { controllerDeps } from "./controller-deps.ts";
 * // const deps = controllerDeps(api, topo.executor("firewall"), { host: "fw-a" });
 * ```
 * @module
 */
import { removeFileIfRegular, writeFileAtomic } from "../lib/atomic-file.ts";
import type { ControllerDeps } from "../lib/controller.ts";
import type { Executor } from "../lib/exec.ts";
import type { ClusterApi } from "../lib/kube/api.ts";
import { EventRecorder } from "../lib/kube/events.ts";
import { createLogger } from "../lib/log.ts";
import { type KernelReader, nftClient } from "../lib/nft/client.ts";
import { type KernelCounters, KernelSnapshots } from "../lib/stats/kernel-snapshot.ts";
import { statsSnapshot } from "../lib/stats/model-snapshot.ts";
import { collectStats } from "../lib/stats/collect.ts";
import { tcShaper } from "../lib/tc/shaper.ts";

/** `kernel`: the netlink reader of the namespace `exec` runs in (lib/nft/netlink.ts), as in production; absent, the client falls back to nft. */
export function controllerDeps(api: ClusterApi, exec: Executor, options: { host?: string; overrides?: Partial<ControllerDeps>; kernel?: KernelReader & KernelCounters } = {}): ControllerDeps {
  const nft = nftClient("nft", exec, options.kernel);
  // With netlink, as main.ts wires it: statistics from the kernel's counters and the applied ruleset.
  const snapshots = options.kernel ? new KernelSnapshots({ nftPath: "nft", exec, kernel: options.kernel }) : undefined;
  return {
    api,
    nft,
    shaper: tcShaper({ tc: "tc", ip: "ip", exec }),
    writeFile: writeFileAtomic,
    removeFile: removeFileIfRegular,
    events: new EventRecorder(api, { component: "firewall-controller", host: options.host ?? "test" }),
    log: createLogger(process.env.FCT_LOG ?? "silent"),
    statistics: (model, intervalMs) => collectStats({ snapshot: () => (snapshots ? snapshots.readForInterval(intervalMs ?? 0) : statsSnapshot("nft", exec, model, nft)) }),
    ...(snapshots ? { applied: (m: Parameters<KernelSnapshots["applied"]>[0]) => snapshots.applied(m) } : {}),
    ...options.overrides,
  };
}
