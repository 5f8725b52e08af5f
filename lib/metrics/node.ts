/**
 * node_exporter-compatible essentials for :9100 (SPEC §7); the pieces live in
 * `./node/`, one concept per file.
 *
 * @example
 * ```ts
 * import { nodeRegistry } from "./node.ts";
 * const registry = nodeRegistry({ procPath: "/proc" });
 * console.log((await registry.metrics()).includes("node_boot_time_seconds")); // true
 * ```
 * @module
 */
export { nodeRegistry, type NodeRegistryOptions } from "./node/registry.ts";
export { MAX_MOUNTS, MOUNT_POINTS_EXCLUDED, FS_TYPES_EXCLUDED } from "./node/mounts.ts";
export { MAX_DEVICES } from "./node/netdev.ts";
export { MAX_CPUS } from "./node/proc-stat.ts";
export { DEFAULT_STATFS_TIMEOUT_MS, MAX_STUCK, type StatfsFunction, type StatfsResult } from "./node/statfs-guard.ts";
