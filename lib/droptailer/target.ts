/**
 * Where the drop log ships to (SPEC §10), from the cluster's objects: the CA,
 * client certificate and key from Secret `firewall/droptailer-client` (keys
 * `ca.crt` + `tls.crt` + `tls.key`, or `ca.crt` + `droptailer-client.crt` +
 * `droptailer-client.key`), and the IP of the Running pod in `firewall` whose
 * name starts with `droptailer` or that is labelled `app=droptailer`.
 *
 * @example
 * ```ts
 * import { droptailerTarget } from "./target.ts";
 * droptailerTarget(undefined, []); // { ok: false, reason: "Secret firewall/droptailer-client not found" }
 * ```
 * @module
 */
import type { KubeObject } from "../kube/api.ts";
import type { DropTarget } from "./client.ts";

export const DROPTAILER_SECRET = "droptailer-client";

export type TargetResult = { readonly ok: true; readonly target: DropTarget } | { readonly ok: false; readonly reason: string };

/** PEM data of a Secret is base64 in `data`; at most 1 MiB each (a certificate chain is a few KiB). */
function pem(secret: KubeObject, key: string): Uint8Array | undefined {
  const data = (secret as { data?: Record<string, unknown> }).data?.[key];
  if (typeof data !== "string" || data.length === 0 || data.length > 1_400_000) return undefined;
  return new Uint8Array(Buffer.from(data, "base64"));
}

const isDroptailerPod = (p: KubeObject) => p.metadata.name.startsWith("droptailer") || p.metadata.labels?.app === "droptailer";

export function droptailerTarget(secret: KubeObject | undefined, pods: readonly KubeObject[]): TargetResult {
  if (!secret) return { ok: false, reason: `Secret firewall/${DROPTAILER_SECRET} not found` };
  const ca = pem(secret, "ca.crt");
  const cert = pem(secret, "tls.crt") ?? pem(secret, "droptailer-client.crt");
  const key = pem(secret, "tls.key") ?? pem(secret, "droptailer-client.key");
  if (!ca || !cert || !key) return { ok: false, reason: `Secret firewall/${DROPTAILER_SECRET} lacks ca.crt with tls.crt + tls.key (or droptailer-client.crt + droptailer-client.key)` };
  // Sorted by name, so two candidate pods give a stable choice.
  const running = pods
    .filter((p) => isDroptailerPod(p) && (p as { status?: { phase?: unknown } }).status?.phase === "Running")
    .map((p) => ({ name: p.metadata.name, ip: (p as { status?: { podIP?: unknown } }).status?.podIP }))
    .filter((p): p is { name: string; ip: string } => typeof p.ip === "string" && p.ip !== "")
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const pod = running[0];
  if (!pod) return { ok: false, reason: "no Running droptailer pod in namespace firewall (named droptailer… or labelled app=droptailer)" };
  return { ok: true, target: { address: pod.ip, ca, cert, key } };
}
