/**
 * Which kernel log the drop log reads (SPEC §10): the systemd journal where
 * journald runs (its socket exists), else `/dev/kmsg`; a flag may force one.
 *
 * @example
 * ```ts
 * import { dropLogSource } from "./source.ts";
 * dropLogSource("kmsg"); // "kmsg"
 * dropLogSource("auto", () => false); // "kmsg": no journald
 * ```
 * @module
 */
import { existsSync } from "node:fs";

/** journald's socket: present while it runs. */
const JOURNALD_SOCKET = "/run/systemd/journal/socket";

export function dropLogSource(flag: "auto" | "kmsg" | "journal", journaldRuns: () => boolean = () => existsSync(JOURNALD_SOCKET)): "kmsg" | "journal" {
  if (flag !== "auto") return flag;
  return journaldRuns() ? "journal" : "kmsg";
}
