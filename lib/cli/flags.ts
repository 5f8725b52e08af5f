/**
 * The command line (SPEC §5) parsed into a typed value. `--name value`,
 * `--name=value`, and for booleans `--name`, `--name=true|false`. Unknown flags
 * and bad values are errors that name the flag.
 *
 * @example
 * ```ts
 * import { parseFlags } from "./flags.ts";
 * const r = parseFlags(["--once", "--manifests", "examples/", "--private-vrf=42"]);
 * if (r.ok) console.log(r.value.manifests, r.value.privateVrf); // "examples/" 42
 * ```
 * @module
 */
import * as v from "valibot";
import { type Cidr, parseAddress, parseCidr } from "../api/address.ts";
import { DEFAULT_RULESET_DIR } from "../api/firewall.ts";
import { isSubdomain } from "../api/meta.ts";
import { show } from "../api/problem.ts";
import { escapeText, groupDigits } from "../escape.ts";

export interface Flags {
  readonly once: boolean;
  readonly manifests: string | undefined;
  readonly dryRun: boolean;
  readonly kubeconfig: string | undefined;
  readonly firewallName: string;
  readonly clusterPrefixes: readonly Cidr[];
  readonly privateVrf: number | null;
  readonly serviceIp: string;
  readonly rulesetFile: string;
  /** The only directory a Firewall's `spec.ipv4rulefile` may name a file in (SPEC §4.7). */
  readonly rulesetDir: string;
  readonly nft: string;
  readonly tc: string;
  readonly ip: string;
  readonly nftablesMetricsAddr: string;
  readonly nodeMetricsAddr: string;
  readonly metricsPerPolicy: boolean;
  readonly dropLog: boolean;
  readonly dropLogSource: "auto" | "kmsg" | "journal";
  readonly journalDirectory: string | undefined;
  readonly stateDir: string;
  readonly healthAddr: string;
  readonly suricataSocket: string;
  readonly enableIds: boolean;
  readonly logLevel: "trace" | "debug" | "info" | "warn" | "error" | "fatal";
  readonly version: boolean;
  readonly help: boolean;
}

type Kind = "bool" | "value";

interface FlagSpec {
  readonly kind: Kind;
  readonly key: keyof Flags;
  readonly help: string;
  readonly schema?: v.GenericSchema<string, unknown>;
  /** Warnings about an accepted value (host bits cleared, say), for the caller to log. */
  readonly notes?: (raw: string) => string[];
}

// A value with a million bad parts (`--cluster-prefixes x,x,x,...`) must not give a million-part message.
const MAX_ISSUES_SHOWN = 3;

const joinIssues = (messages: readonly string[]): string =>
  messages.length <= MAX_ISSUES_SHOWN + 1
    ? messages.join("; ")
    : `${messages.slice(0, MAX_ISSUES_SHOWN).join("; ")}; and ${groupDigits(messages.length - MAX_ISSUES_SHOWN)} more problems`;

const nonEmpty = (what: string) => v.pipe(v.string(), v.check((s) => s.length > 0, () => `needs ${what}`));

const listenAddr = v.pipe(
  v.string(),
  v.check((s) => /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):\d{1,5}$/.test(s) && Number(s.slice(s.lastIndexOf(":") + 1)) <= 65535, (i) => `${show(i.input)} is not a listen address (host:port or :port)`),
);

/** A metrics listener may be switched off (empty address) where a real exporter already runs. */
const listenAddrOrOff = v.union([v.literal(""), listenAddr], (i) => `${show(i.input)} is not a listen address (host:port or :port; empty to switch it off)`);

const SPECS: Record<string, FlagSpec> = {
  once: { kind: "bool", key: "once", help: "reconcile once, then exit" },
  manifests: { kind: "value", key: "manifests", help: "read Firewall, ClusterwideNetworkPolicy and Service objects from a YAML file or directory instead of the API server", schema: nonEmpty("a path") },
  "dry-run": { kind: "bool", key: "dryRun", help: "print the rendered ruleset (and shaping plan as comments) to stdout; apply nothing" },
  kubeconfig: { kind: "value", key: "kubeconfig", help: "default: $KUBECONFIG, then in-cluster config", schema: nonEmpty("a path") },
  "firewall-name": {
    kind: "value", key: "firewallName", help: "name of the Firewall object in namespace firewall (default firewall)",
    schema: v.pipe(v.string(), v.check(isSubdomain, (i) => `${show(i.input)} is not a valid object name`)),
  },
  "cluster-prefixes": {
    kind: "value", key: "clusterPrefixes", help: "comma-separated CIDRs of the cluster (default 10.0.0.0/8)",
    schema: v.pipe(
      v.string(),
      v.rawTransform(({ dataset, addIssue, NEVER }) => {
        const parts = dataset.value.split(",").map((s) => s.trim()).filter((s) => s !== "");
        if (parts.length === 0) {
          addIssue({ message: "needs at least one CIDR" });
          return NEVER;
        }
        const out: Cidr[] = [];
        let bad = 0;
        for (const p of parts) {
          const r = parseCidr(p);
          if (r.ok) out.push(r.value);
          // Messages only for the first few: a million bad parts must not build a million messages.
          else if (++bad <= MAX_ISSUES_SHOWN) addIssue({ message: r.message });
        }
        if (bad > MAX_ISSUES_SHOWN) addIssue({ message: `and ${groupDigits(bad - MAX_ISSUES_SHOWN)} more that are not CIDR blocks` });
        return out;
      }),
    ),
    // Apart from the schema: notes are not issues, and the schema's output is the flag's value.
    notes: (raw) => {
      const notes: string[] = [];
      let more = 0;
      for (const p of raw.split(",")) {
        const r = parseCidr(p.trim());
        if (!r.ok || !r.value.hostBitsSet) continue;
        if (notes.length < MAX_ISSUES_SHOWN) notes.push(`${show(p.trim())} has host bits set; using ${r.value.text}`);
        else more++;
      }
      if (more > 0) notes.push(`and ${groupDigits(more)} more with host bits set`);
      return notes;
    },
  },
  "private-vrf": {
    kind: "value", key: "privateVrf", help: "private (cluster-facing) interfaces are vlanN and vrfN",
    schema: v.pipe(v.string(), v.check((s) => /^\d{1,10}$/.test(s) && Number(s) <= 4294967295, (i) => `${show(i.input)} is not a VRF number`), v.transform(Number)),
  },
  "service-ip": {
    kind: "value", key: "serviceIp", help: "address of this firewall as seen from the cluster (default 172.17.0.1)",
    schema: v.pipe(v.string(), v.check((s) => parseAddress(s).ok, (i) => `${show(i.input)} is not an IP address`)),
  },
  "ruleset-file": { kind: "value", key: "rulesetFile", help: "where the applied ruleset is persisted (default /etc/nftables/firewall-controller.v4)", schema: nonEmpty("a path") },
  "ruleset-dir": {
    kind: "value", key: "rulesetDir", help: "the only directory a Firewall's spec.ipv4rulefile may name a file in (default /etc/nftables/)",
    schema: v.pipe(v.string(), v.check((s) => s.startsWith("/") && !s.includes("\0"), (i) => `${show(i.input)} is not an absolute path`)),
  },
  nft: { kind: "value", key: "nft", help: "path of the nft binary (default: nft from PATH)", schema: nonEmpty("a path") },
  tc: { kind: "value", key: "tc", help: "path of the tc binary (default: tc from PATH)", schema: nonEmpty("a path") },
  ip: { kind: "value", key: "ip", help: "path of the ip binary, for IFB devices (default: ip from PATH)", schema: nonEmpty("a path") },
  "nftables-metrics-addr": { kind: "value", key: "nftablesMetricsAddr", help: "nftables and controller metrics listen address (default :9630; empty: off)", schema: listenAddrOrOff },
  "node-metrics-addr": { kind: "value", key: "nodeMetricsAddr", help: "node metrics listen address (default :9100; empty: off)", schema: listenAddrOrOff },
  "drop-log": { kind: "bool", key: "dropLog", help: "ship the kernel's drop log from /dev/kmsg to the droptailer server (default true)" },
  "drop-log-source": {
    kind: "value", key: "dropLogSource", help: "auto (the journal where journald runs, else /dev/kmsg), kmsg or journal (default auto)",
    schema: v.picklist(["auto", "kmsg", "journal"], (i) => `${show(i.input)} is not one of auto, kmsg, journal`),
  },
  "journal-directory": { kind: "value", key: "journalDirectory", help: "read this journal directory instead of the system's (journal source)", schema: nonEmpty("a path") },
  "state-dir": { kind: "value", key: "stateDir", help: "where the drop log keeps the position of the last shipped event (default /var/lib/firewall-controller)", schema: nonEmpty("a path") },
  "metrics-per-policy": { kind: "bool", key: "metricsPerPolicy", help: "export nftables_rule_* series of every policy and service chain (default true; false for very large rulesets)" },
  "health-addr": { kind: "value", key: "healthAddr", help: "/healthz and /readyz listen address (default 127.0.0.1:8080)", schema: listenAddr },
  "suricata-socket": { kind: "value", key: "suricataSocket", help: "suricata unix command socket (default /run/suricata-command.socket)", schema: nonEmpty("a path") },
  "enable-ids": { kind: "bool", key: "enableIds", help: "read IDS statistics from suricata (default true)" },
  "log-level": {
    kind: "value", key: "logLevel", help: "trace, debug, info, warn, error or fatal (default info)",
    schema: v.picklist(["trace", "debug", "info", "warn", "error", "fatal"], (i) => `${show(i.input)} is not one of trace, debug, info, warn, error, fatal`),
  },
  version: { kind: "bool", key: "version", help: "print the version and exit" },
  help: { kind: "bool", key: "help", help: "print this help and exit" },
};

const DEFAULT_CLUSTER = parseCidr("10.0.0.0/8");

export const DEFAULTS: Flags = {
  once: false,
  manifests: undefined,
  dryRun: false,
  kubeconfig: undefined,
  firewallName: "firewall",
  clusterPrefixes: DEFAULT_CLUSTER.ok ? [DEFAULT_CLUSTER.value] : [],
  privateVrf: null,
  serviceIp: "172.17.0.1",
  rulesetFile: "/etc/nftables/firewall-controller.v4",
  rulesetDir: DEFAULT_RULESET_DIR,
  nft: "nft",
  tc: "tc",
  ip: "ip",
  nftablesMetricsAddr: ":9630",
  nodeMetricsAddr: ":9100",
  metricsPerPolicy: true,
  dropLog: true,
  dropLogSource: "auto",
  journalDirectory: undefined,
  stateDir: "/var/lib/firewall-controller",
  healthAddr: "127.0.0.1:8080",
  suricataSocket: "/run/suricata-command.socket",
  enableIds: true,
  logLevel: "info",
  version: false,
  help: false,
};

/**
 * Parsed flags with notes (warnings about accepted values, e.g. host bits
 * cleared in `--cluster-prefixes`, for the caller to log), or why not.
 */
export type FlagsResult = { ok: true; value: Flags; notes: readonly string[] } | { ok: false; message: string };

/**
 * Parses argv (without the program name). Every piece of an argument that
 * appears in a message (a flag name, a value) is escaped and cut (SPEC §8).
 */
export function parseFlags(argv: readonly string[]): FlagsResult {
  const out: Record<string, unknown> = { ...DEFAULTS };
  const notes: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (!arg.startsWith("--")) return { ok: false, message: `unexpected argument ${show(arg)}: flags start with -- (see --help)` };
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const spec = Object.hasOwn(SPECS, name) ? SPECS[name] : undefined;
    if (!spec) return { ok: false, message: `unknown flag --${escapeText(name, { max: 64 })} (see --help)` };
    let raw: string | undefined = eq < 0 ? undefined : arg.slice(eq + 1);
    if (spec.kind === "bool") {
      if (raw === undefined) out[spec.key] = true;
      else if (raw === "true" || raw === "false") out[spec.key] = raw === "true";
      else return { ok: false, message: `--${name}: ${show(raw)} is not true or false` };
      continue;
    }
    if (raw === undefined) {
      raw = argv[i + 1];
      if (raw === undefined || (raw.startsWith("--") && raw.length > 2)) return { ok: false, message: `--${name} needs a value` };
      i++;
    }
    const r = v.safeParse(spec.schema as v.GenericSchema<string, unknown>, raw);
    if (!r.success) return { ok: false, message: `--${name}: ${joinIssues(r.issues.map((x) => x.message))}` };
    out[spec.key] = r.output;
    if (spec.notes) notes.push(...spec.notes(raw).map((n) => `--${name}: ${n}`));
  }
  return { ok: true, value: out as unknown as Flags, notes };
}

/** The `--help` text. */
export function helpText(): string {
  const rows = Object.entries(SPECS).map(([name, s]) => {
    const left = `  --${name}${s.kind === "value" ? " VALUE" : ""}`;
    return `${left.padEnd(30)}${s.help}`;
  });
  return [
    "firewall-controller: ClusterwideNetworkPolicies and LoadBalancer Services to nftables, tc shaping, metrics and drop logs.",
    "",
    "usage: firewall-controller [flags]",
    "",
    ...rows,
    "",
    "Exit codes with --once: 0 applied (or printed), all valid; 2 applied (or printed), some objects rejected;",
    "1 nothing changed (bad input or flags, nft refused, API server unreachable, Firewall object absent);",
    "3 partly applied: the rules are in force, but writing the ruleset file or shaping failed.",
    "",
  ].join("\n");
}
