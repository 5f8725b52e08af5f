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
import { isSubdomain } from "../api/meta.ts";
import { show } from "../api/problem.ts";

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
  readonly nft: string;
  readonly tc: string;
  readonly ip: string;
  readonly nftablesMetricsAddr: string;
  readonly nodeMetricsAddr: string;
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
}

const nonEmpty = (what: string) => v.pipe(v.string(), v.check((s) => s.length > 0, () => `needs ${what}`));

const listenAddr = v.pipe(
  v.string(),
  v.check((s) => /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):\d{1,5}$/.test(s) && Number(s.slice(s.lastIndexOf(":") + 1)) <= 65535, (i) => `${show(i.input)} is not a listen address (host:port or :port)`),
);

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
        for (const p of parts) {
          const r = parseCidr(p);
          if (!r.ok) addIssue({ message: r.message });
          else out.push(r.value);
        }
        return out;
      }),
    ),
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
  nft: { kind: "value", key: "nft", help: "path of the nft binary (default: nft from PATH)", schema: nonEmpty("a path") },
  tc: { kind: "value", key: "tc", help: "path of the tc binary (default: tc from PATH)", schema: nonEmpty("a path") },
  ip: { kind: "value", key: "ip", help: "path of the ip binary, for IFB devices (default: ip from PATH)", schema: nonEmpty("a path") },
  "nftables-metrics-addr": { kind: "value", key: "nftablesMetricsAddr", help: "nftables metrics listen address (default :9630)", schema: listenAddr },
  "node-metrics-addr": { kind: "value", key: "nodeMetricsAddr", help: "node metrics listen address (default :9100)", schema: listenAddr },
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
  nft: "nft",
  tc: "tc",
  ip: "ip",
  nftablesMetricsAddr: ":9630",
  nodeMetricsAddr: ":9100",
  healthAddr: "127.0.0.1:8080",
  suricataSocket: "/run/suricata-command.socket",
  enableIds: true,
  logLevel: "info",
  version: false,
  help: false,
};

export type FlagsResult = { ok: true; value: Flags } | { ok: false; message: string };

/** Parses argv (without the program name). */
export function parseFlags(argv: readonly string[]): FlagsResult {
  const out: Record<string, unknown> = { ...DEFAULTS };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (!arg.startsWith("--")) return { ok: false, message: `unexpected argument ${show(arg)}: flags start with -- (see --help)` };
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const spec = Object.hasOwn(SPECS, name) ? SPECS[name] : undefined;
    if (!spec) return { ok: false, message: `unknown flag --${name} (see --help)` };
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
    if (!r.success) return { ok: false, message: `--${name}: ${r.issues.map((x) => x.message).join("; ")}` };
    out[spec.key] = r.output;
  }
  return { ok: true, value: out as unknown as Flags };
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
    "Exit codes with --once: 0 applied (or printed), all valid; 2 applied (or printed), some objects rejected; 1 nothing applied.",
    "",
  ].join("\n");
}
