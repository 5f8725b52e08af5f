/**
 * Reads what shaping cares about from the kernel: devices (`ip -d -j link
 * show`), qdiscs (`tc -j qdisc show`) and, for each device with an ingress
 * qdisc, its filters (`tc -j filter show dev X parent ffff:`). Read-only.
 *
 * @example
 * ```ts
 * import { runCommand } from "../exec.ts";
 * import { observeShaping } from "./observe.ts";
 * const state = await observeShaping({ exec: runCommand });
 * console.log([...state.ingress.keys()]);
 * ```
 * @module
 */
import { FirewallError } from "../errors.ts";
import type { Executor } from "../exec.ts";
import type { FilterAction, FilterPrefState, IngressState, LinkState, RootQdiscState, ShapingState } from "./plan.ts";

/** How to reach the kernel: an executor (inside a namespace in tests) and the binaries' paths. */
export interface ShapingDeps {
  readonly exec: Executor;
  /** Path of `tc`; default "tc". */
  readonly tc?: string;
  /** Path of `ip`; default "ip". */
  readonly ip?: string;
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === "number" && Number.isFinite(v) ? v : undefined);

async function readJson(deps: ShapingDeps, argv: readonly string[]): Promise<Json[]> {
  const r = await deps.exec(argv);
  if (r.code !== 0) {
    throw new FirewallError("shaping_failed", `cannot read shaping state: \`${argv.join(" ")}\` failed: ${r.stderr.trim() || `exit ${r.code}`}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(r.stdout.trim() === "" ? "[]" : r.stdout);
  } catch (e) {
    throw new FirewallError("shaping_failed", `cannot read shaping state: \`${argv.join(" ")}\` printed no JSON`, { cause: e });
  }
  if (!Array.isArray(parsed)) throw new FirewallError("shaping_failed", `cannot read shaping state: \`${argv.join(" ")}\` printed no JSON list`);
  return parsed.filter(isObject);
}

/** Devices by name, from `ip -d -j link show`. */
export function parseLinks(list: readonly Json[]): Map<string, LinkState> {
  const links = new Map<string, LinkState>();
  for (const l of list) {
    const name = str(l.ifname);
    if (name === undefined) continue;
    const flags = Array.isArray(l.flags) ? l.flags : [];
    const kind = isObject(l.linkinfo) ? str(l.linkinfo.info_kind) : undefined;
    links.set(name, { name, kind, up: flags.includes("UP"), alias: str(l.ifalias) });
  }
  return links;
}

/** Root qdiscs and ingress-side qdiscs by device, from `tc -j qdisc show`. */
export function parseQdiscs(list: readonly Json[]): { roots: Map<string, RootQdiscState>; ingressKinds: Map<string, string> } {
  const roots = new Map<string, RootQdiscState>();
  const ingressKinds = new Map<string, string>();
  for (const q of list) {
    const dev = str(q.dev);
    const kind = str(q.kind);
    if (dev === undefined || kind === undefined) continue;
    if (kind === "ingress" || kind === "clsact") {
      ingressKinds.set(dev, kind);
    } else if (q.root === true) {
      const o = isObject(q.options) ? q.options : {};
      const rate = num(o.rate);
      const burst = num(o.burst);
      roots.set(
        dev,
        kind === "tbf" && rate !== undefined && burst !== undefined
          ? { kind, tbf: { rateBytesPerSec: rate, burstBytes: burst, latencyUs: num(o.lat) } }
          : { kind },
      );
    }
  }
  return { roots, ingressKinds };
}

function parseAction(a: Json): FilterAction {
  const kind = str(a.kind) ?? "";
  const mirredAction = str(a.mirred_action);
  const direction = str(a.direction);
  const toDev = str(a.to_dev);
  return {
    kind,
    ...(mirredAction === undefined ? {} : { mirredAction }),
    ...(direction === undefined ? {} : { direction }),
    ...(toDev === undefined ? {} : { toDev }),
  };
}

/**
 * Filters of one ingress qdisc grouped by priority, from `tc -j filter show`.
 * tc lists a priority, its hash tables and its rules as separate entries; only
 * rules (entries with actions) are kept.
 */
export function parseFilters(list: readonly Json[]): FilterPrefState[] {
  const byPref = new Map<number, { pref: number; protocol: string; kind: string; rules: FilterPrefState["rules"][number][] }>();
  for (const f of list) {
    const pref = num(f.pref);
    if (pref === undefined) continue;
    let group = byPref.get(pref);
    if (group === undefined) {
      group = { pref, protocol: str(f.protocol) ?? "", kind: str(f.kind) ?? "", rules: [] };
      byPref.set(pref, group);
    }
    const o = isObject(f.options) ? f.options : undefined;
    if (o === undefined || !Array.isArray(o.actions)) continue;
    const m = isObject(o.match) ? o.match : undefined;
    group.rules.push({
      matchAll: m !== undefined && str(m.value) === "0" && str(m.mask) === "0",
      actions: o.actions.filter(isObject).map(parseAction),
    });
  }
  return [...byPref.values()];
}

/**
 * Everything {@link import("./plan.ts").planShaping} needs to know, in 2 + n
 * commands (n: devices with an ingress qdisc).
 *
 * @example
 * ```ts
 * import { runCommand } from "../exec.ts";
 * import { observeShaping } from "./observe.ts";
 * const s = await observeShaping({ exec: runCommand, tc: "/usr/sbin/tc", ip: "/usr/sbin/ip" });
 * console.log(s.links.size);
 * ```
 */
export async function observeShaping(deps: ShapingDeps): Promise<ShapingState> {
  const ip = deps.ip ?? "ip";
  const tc = deps.tc ?? "tc";
  const [links, qdiscs] = await Promise.all([
    readJson(deps, [ip, "-d", "-j", "link", "show"]).then(parseLinks),
    readJson(deps, [tc, "-j", "qdisc", "show"]).then(parseQdiscs),
  ]);
  const read = await Promise.all(
    [...qdiscs.ingressKinds].map(async ([dev, kind]): Promise<[string, IngressState]> => {
      // A clsact qdisc is never ours; its filters do not matter to the plan.
      const filters = kind === "ingress" ? parseFilters(await readJson(deps, [tc, "-j", "filter", "show", "dev", dev, "parent", "ffff:"])) : [];
      return [dev, { kind, filters }];
    }),
  );
  // Built in the kernel's order, not in the order the reads finished, so plans are reproducible.
  return { links, rootQdiscs: qdiscs.roots, ingress: new Map(read) };
}
