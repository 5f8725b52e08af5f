/**
 * Rate limiting as a pure plan (SPEC §4.8): from the wanted limits and what the
 * kernel has, the `ip`/`tc` commands that close the gap, and nothing when there
 * is no gap.
 *
 * Traffic received on an interface cannot be queued there (ingress has no
 * queue), so each limited interface gets an ingress qdisc whose one u32
 * match-all filter redirects every packet to an IFB device of ours; the IFB's
 * root TBF delays and drops to the rate. The kernel family we run on has no
 * police action and no matchall classifier, hence u32 `match u32 0 0`.
 *
 * Everything we create is recognisable: IFB devices are named `fcifb…` (and
 * carry an alias naming the interface they serve), our filter redirects to such
 * a device. Reconciliation only ever removes things with those marks, so other
 * IFB devices (for example the kernel's `ifb0`/`ifb1`) and other filters stay.
 *
 * @example
 * ```ts
 * import { emptyShapingState, planShaping } from "./plan.ts";
 * const plan = planShaping([{ interface: "vrf104009", rateMbit: 10 }], emptyShapingState());
 * console.log(plan.problems[0]?.message); // vrf104009 does not exist ...
 * ```
 * @module
 */
import { createHash } from "node:crypto";

/** One wanted limit: traffic received on `interface` at most `rateMbit` Mbit/s (10^6 bit/s). */
export interface RateLimitEntry {
  readonly interface: string;
  readonly rateMbit: number;
}

/** Something that kept one interface from being shaped as asked; the others still are. */
export interface ShapingProblem {
  readonly interface: string;
  readonly message: string;
}

/** Name prefix of the IFB devices this program owns, and nothing else. */
export const IFB_PREFIX = "fcifb";

/** Filter priority of our redirect on the ingress qdisc. High, so filters of others run first. */
export const FILTER_PREF = 49152;

/** How much the TBF may queue, expressed as delay; 50 ms keeps TCP near the rate without bloat. */
export const TBF_LATENCY_MS = 50;

/** Smallest TBF bucket: two jumbo frames, so no unsegmented packet is larger than the bucket (which TBF would drop). */
export const TBF_MIN_BURST = 32768;

// Kernel names are at most 15 bytes (IFNAMSIZ 16 with the terminator). Readable
// names are at most 14 and hashed ones exactly 15, so the two forms never clash.
const READABLE = /^[A-Za-z0-9_.-]{1,9}$/;

/**
 * The IFB device that shapes what `iface` receives: `fcifb<iface>` when that
 * fits, else `fcifb` + 3 characters of the name + 7 hex digits of its SHA-256.
 *
 * @example
 * ```ts
 * import { ifbNameFor } from "./plan.ts";
 * ifbNameFor("vrf104009"); // "fcifbvrf104009"
 * ifbNameFor("vlan1000000042").length; // 15
 * ```
 */
export function ifbNameFor(iface: string): string {
  if (READABLE.test(iface)) return `${IFB_PREFIX}${iface}`;
  const hash = createHash("sha256").update(iface).digest("hex").slice(0, 7);
  return `${IFB_PREFIX}${iface.slice(0, 3).replace(/[^A-Za-z0-9_.-]/g, "_")}${hash}`;
}

/** The alias written on our IFB device, so `ip link` tells an operator what it is for. */
export const ifbAlias = (iface: string): string => `firewall-controller: shapes traffic received on ${iface}`;

/** TBF settings for a rate, in the units `tc -j` reports them. */
export interface TbfParams {
  readonly rateBytesPerSec: number;
  readonly burstBytes: number;
  readonly latencyMs: number;
}

/**
 * TBF settings for `rateMbit`: a bucket of 5 ms at that rate (at least
 * {@link TBF_MIN_BURST}) and {@link TBF_LATENCY_MS} of queue. With these a
 * 10 Mbit/s limit measures about 9.6 Mbit/s of TCP goodput.
 *
 * @example
 * ```ts
 * import { tbfParams } from "./plan.ts";
 * tbfParams(10); // { rateBytesPerSec: 1250000, burstBytes: 32768, latencyMs: 50 }
 * ```
 */
export function tbfParams(rateMbit: number): TbfParams {
  const rateBytesPerSec = rateMbit * 125_000;
  return { rateBytesPerSec, burstBytes: Math.max(Math.ceil(rateBytesPerSec / 200), TBF_MIN_BURST), latencyMs: TBF_LATENCY_MS };
}

/** A network device as `ip -d -j link show` describes it. */
export interface LinkState {
  readonly name: string;
  /** `linkinfo.info_kind` (`ifb`, `veth`, `vlan`, …); undefined for plain devices. */
  readonly kind: string | undefined;
  readonly up: boolean;
  readonly alias: string | undefined;
}

/** A root qdisc as `tc -j qdisc show` describes it. */
export interface RootQdiscState {
  readonly kind: string;
  /** Present when kind is `tbf`. */
  readonly tbf?: { readonly rateBytesPerSec: number; readonly burstBytes: number; readonly latencyUs: number | undefined };
}

/** One action of a filter rule. */
export interface FilterAction {
  readonly kind: string;
  /** mirred: `redirect` or `mirror`. */
  readonly mirredAction?: string;
  /** mirred: `egress` or `ingress`. */
  readonly direction?: string;
  /** mirred: the target device. */
  readonly toDev?: string;
}

/** All filters at one priority of an ingress qdisc (what `tc filter del … pref N` removes). */
export interface FilterPrefState {
  readonly pref: number;
  readonly protocol: string;
  readonly kind: string;
  /** The rules that classify (u32 keys), without the hash tables tc also lists. */
  readonly rules: readonly { readonly matchAll: boolean; readonly actions: readonly FilterAction[] }[];
}

/** The ingress-side qdisc of a device and its filters. */
export interface IngressState {
  /** `ingress`, or `clsact` (someone else's: we never add to or remove it). */
  readonly kind: string;
  readonly filters: readonly FilterPrefState[];
}

/** What the kernel has that shaping cares about. */
export interface ShapingState {
  readonly links: ReadonlyMap<string, LinkState>;
  readonly rootQdiscs: ReadonlyMap<string, RootQdiscState>;
  readonly ingress: ReadonlyMap<string, IngressState>;
}

/** A kernel with no devices at all; handy for tests and dry runs. */
export const emptyShapingState = (): ShapingState => ({ links: new Map(), rootQdiscs: new Map(), ingress: new Map() });

/** One mutating command, with the interface it serves (for problems) and the binary that runs it. */
export interface ShapingCommand {
  readonly tool: "ip" | "tc";
  readonly args: readonly string[];
  /** The shaped interface (or, for a leftover IFB device, that device). */
  readonly interface: string;
}

/** What to run, in order, and what cannot be done. */
export interface ShapingPlan {
  readonly commands: readonly ShapingCommand[];
  readonly problems: readonly ShapingProblem[];
}

/** A wanted limit after the entry-level checks, with its device name and TBF settings. */
export interface DesiredShaping {
  readonly interface: string;
  readonly rateMbit: number;
  readonly ifb: string;
  readonly tbf: TbfParams;
}

/**
 * Checks the entries on their own (no kernel state): duplicates, our own
 * devices named as interfaces, device-name clashes. Shared by the planner and
 * the dry-run description so both tell the same story.
 *
 * @example
 * ```ts
 * import { desiredShaping } from "./plan.ts";
 * const { desired, problems } = desiredShaping([{ interface: "eth1", rateMbit: 5 }, { interface: "eth1", rateMbit: 7 }]);
 * console.log(desired.length, problems[0]?.message); // 1 "listed more than once; ..."
 * ```
 */
export function desiredShaping(entries: readonly RateLimitEntry[]): { desired: DesiredShaping[]; problems: ShapingProblem[] } {
  const desired: DesiredShaping[] = [];
  const problems: ShapingProblem[] = [];
  const byInterface = new Map<string, DesiredShaping>();
  const byIfb = new Map<string, string>();
  for (const e of entries) {
    const first = byInterface.get(e.interface);
    if (first !== undefined) {
      problems.push({
        interface: e.interface,
        message: `listed more than once; the first limit (${first.rateMbit} Mbit/s) applies, ${e.rateMbit} Mbit/s is ignored`,
      });
      continue;
    }
    if (e.interface.startsWith(IFB_PREFIX)) {
      problems.push({ interface: e.interface, message: `names a device with the prefix "${IFB_PREFIX}" that firewall-controller reserves for its own shaping devices; not shaped` });
      continue;
    }
    if (!Number.isSafeInteger(e.rateMbit) || e.rateMbit <= 0) {
      problems.push({ interface: e.interface, message: `rate ${e.rateMbit} is not a positive whole number of Mbit/s; not shaped` });
      continue;
    }
    const ifb = ifbNameFor(e.interface);
    const clash = byIfb.get(ifb);
    if (clash !== undefined) {
      problems.push({ interface: e.interface, message: `its shaping device name ${ifb} clashes with the one of ${clash}; not shaped` });
      continue;
    }
    const d: DesiredShaping = { interface: e.interface, rateMbit: e.rateMbit, ifb, tbf: tbfParams(e.rateMbit) };
    byInterface.set(e.interface, d);
    byIfb.set(ifb, e.interface);
    desired.push(d);
  }
  return { desired, problems };
}

// tc shows the target of a mirred action whose device was deleted as "*".
const dangling = (a: FilterAction): boolean => a.kind === "mirred" && (a.toDev === undefined || a.toDev === "*" || a.toDev === "");

/**
 * Ours: some rule of this priority sends to one of our IFB devices, or it sits at
 * our priority and only redirects to a device that no longer exists (someone
 * deleted our IFB). Such a dangling redirect drops everything the interface
 * receives, so it must be recognised to be repaired or removed.
 */
const isOurs = (f: FilterPrefState): boolean =>
  f.rules.some((r) => r.actions.some((a) => a.toDev?.startsWith(IFB_PREFIX))) ||
  (f.pref === FILTER_PREF && f.rules.length > 0 && f.rules.every((r) => r.actions.length > 0 && r.actions.every(dangling)));

/** Exactly the filter we would add for `ifb`. */
function isExactRedirect(f: FilterPrefState, ifb: string): boolean {
  const rule = f.rules[0];
  const action = rule?.actions[0];
  return (
    f.pref === FILTER_PREF && f.protocol === "all" && f.kind === "u32" && f.rules.length === 1 &&
    rule !== undefined && rule.matchAll && rule.actions.length === 1 && action !== undefined &&
    action.kind === "mirred" && action.mirredAction === "redirect" && action.direction === "egress" && action.toDev === ifb
  );
}

// tc turns the burst into timer ticks and back, so the kernel reports it a few bytes off.
function tbfMatches(q: RootQdiscState | undefined, want: TbfParams): boolean {
  const t = q?.kind === "tbf" ? q.tbf : undefined;
  if (t === undefined || t.latencyUs === undefined) return false;
  return (
    t.rateBytesPerSec === want.rateBytesPerSec &&
    Math.abs(t.burstBytes - want.burstBytes) <= Math.max(2, want.burstBytes * 0.005) &&
    Math.abs(t.latencyUs - want.latencyMs * 1000) <= 1000
  );
}

/** The `tc qdisc replace` arguments that give `ifb` the TBF for `tbf`. */
export function tbfArgs(ifb: string, tbf: TbfParams): string[] {
  const mbit = tbf.rateBytesPerSec / 125_000;
  return ["qdisc", "replace", "dev", ifb, "root", "tbf", "rate", `${mbit}mbit`, "burst", String(tbf.burstBytes), "latency", `${tbf.latencyMs}ms`];
}

/** The `tc filter add` arguments of our match-all redirect from `iface` to `ifb`. */
export function redirectArgs(iface: string, ifb: string): string[] {
  return [
    "filter", "add", "dev", iface, "parent", "ffff:", "protocol", "all", "pref", String(FILTER_PREF),
    "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", ifb,
  ];
}

/**
 * The commands that turn `state` into the shaping `entries` ask for. Removals
 * come first (redirects before the devices they point to), then creations in
 * entry order. An up-to-date kernel yields no command at all.
 *
 * @example
 * ```ts
 * import { planShaping, type ShapingState } from "./plan.ts";
 * const state: ShapingState = {
 *   links: new Map([["eth1", { name: "eth1", kind: undefined, up: true, alias: undefined }]]),
 *   rootQdiscs: new Map(),
 *   ingress: new Map(),
 * };
 * for (const c of planShaping([{ interface: "eth1", rateMbit: 10 }], state).commands) console.log(c.tool, c.args.join(" "));
 * // ip link add name fcifbeth1 type ifb
 * // ip link set dev fcifbeth1 alias ... up
 * // tc qdisc replace dev fcifbeth1 root tbf rate 10mbit burst 32768 latency 50ms
 * // tc qdisc add dev eth1 handle ffff: ingress
 * // tc filter add dev eth1 parent ffff: protocol all pref 49152 u32 match u32 0 0 action mirred egress redirect dev fcifbeth1
 * ```
 */
export function planShaping(entries: readonly RateLimitEntry[], state: ShapingState): ShapingPlan {
  const { desired, problems } = desiredShaping(entries);
  const removals: ShapingCommand[] = [];
  const deletions: ShapingCommand[] = [];
  const creations: ShapingCommand[] = [];
  const ip = (iface: string, ...args: string[]): ShapingCommand => ({ tool: "ip", args, interface: iface });
  const tc = (iface: string, ...args: string[]): ShapingCommand => ({ tool: "tc", args, interface: iface });

  const wanted = new Map(desired.map((d) => [d.interface, d]));
  // A limited interface that is missing keeps its IFB device: it is cheap, and
  // an interface that flaps should not make us churn devices.
  const keptIfbs = new Set(desired.map((d) => d.ifb));

  // Redirects to our devices from interfaces that are no longer limited.
  for (const [dev, ingress] of state.ingress) {
    if (wanted.has(dev) || ingress.kind !== "ingress") continue;
    const ours = ingress.filters.filter(isOurs);
    if (ours.length === 0) continue;
    if (ours.length === ingress.filters.length) removals.push(tc(dev, "qdisc", "del", "dev", dev, "handle", "ffff:", "ingress"));
    else for (const f of ours) removals.push(tc(dev, "filter", "del", "dev", dev, "parent", "ffff:", "pref", String(f.pref)));
  }
  for (const link of state.links.values()) {
    if (link.kind === "ifb" && link.name.startsWith(IFB_PREFIX) && !keptIfbs.has(link.name)) {
      deletions.push(ip(link.name, "link", "del", "dev", link.name));
    }
  }

  for (const d of desired) {
    const iface = d.interface;
    if (!state.links.has(iface)) {
      problems.push({ interface: iface, message: `interface ${iface} does not exist; its limit of ${d.rateMbit} Mbit/s is not applied` });
      continue;
    }
    const ingress = state.ingress.get(iface);
    if (ingress !== undefined && ingress.kind !== "ingress") {
      problems.push({ interface: iface, message: `interface ${iface} has a ${ingress.kind} qdisc that firewall-controller did not create; not shaped` });
      continue;
    }
    const ifbLink = state.links.get(d.ifb);
    if (ifbLink !== undefined && ifbLink.kind !== "ifb") {
      problems.push({ interface: iface, message: `device ${d.ifb} exists but is a ${ifbLink.kind ?? "plain"} device, not an IFB; not shaped` });
      continue;
    }
    const ours = ingress?.filters.filter(isOurs) ?? [];
    const exact = ours.find((f) => isExactRedirect(f, d.ifb));
    const prefTaken = ingress?.filters.some((f) => f.pref === FILTER_PREF && !isOurs(f)) ?? false;
    if (exact === undefined && prefTaken) {
      problems.push({ interface: iface, message: `filter priority ${FILTER_PREF} on ${iface} is taken by a filter firewall-controller did not create; not shaped` });
      continue;
    }

    const alias = ifbAlias(iface);
    if (ifbLink === undefined) {
      creations.push(ip(iface, "link", "add", "name", d.ifb, "type", "ifb"));
      creations.push(ip(iface, "link", "set", "dev", d.ifb, "alias", alias, "up"));
    } else if (!ifbLink.up || ifbLink.alias !== alias) {
      creations.push(ip(iface, "link", "set", "dev", d.ifb, "alias", alias, "up"));
    }
    if (ifbLink === undefined || !tbfMatches(state.rootQdiscs.get(d.ifb), d.tbf)) creations.push(tc(iface, ...tbfArgs(d.ifb, d.tbf)));
    // Stale redirects (to another device, or altered) go before the right one comes in.
    for (const f of ours) {
      if (f !== exact) removals.push(tc(iface, "filter", "del", "dev", iface, "parent", "ffff:", "pref", String(f.pref)));
    }
    if (ingress === undefined) creations.push(tc(iface, "qdisc", "add", "dev", iface, "handle", "ffff:", "ingress"));
    if (exact === undefined) creations.push(tc(iface, ...redirectArgs(iface, d.ifb)));
  }
  return { commands: [...removals, ...deletions, ...creations], problems };
}
