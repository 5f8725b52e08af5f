/**
 * The only code that runs `nft`. A tiny interface over the binary so the
 * applier can be tested against an in-memory table (`FakeNft`, lib/nft/fake.ts), and so every
 * call goes through the injected executor (inside a namespace in tests).
 *
 * @example
 * ```ts
 * import { runCommand } from "../exec.ts";
 * import { nftClient } from "./client.ts";
 * const nft = nftClient("nft", runCommand);
 * console.log(await nft.inventory("firewall"));
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import type { CommandResult, Executor } from "../exec.ts";
import * as v from "valibot";
import { FirewallError } from "../errors.ts";
import { type ElementLoad, elementBatch, type EncodedBatch } from "./element-batch.ts";

/** Names of what exists in one `inet` table. */
export interface TableInventory {
  readonly chains: readonly string[];
  readonly sets: readonly string[];
  readonly maps: readonly string[];
}

/** One map element's counter and the comment naming its owner (null: no comment). */
export interface ElementCount {
  readonly comment: string | null;
  readonly packets: number;
  readonly bytes: number;
}

/**
 * Reads the kernel without `nft` (lib/nft/netlink.ts): where given, the client uses it for the
 * generation and element counters, which `nft` can only answer by filling its whole cache.
 */
export interface KernelReader {
  generation(): number;
  setElementCounters(family: "inet", table: string, set: string): readonly ElementCount[];
  /** Commits one batch of elements and chains (lib/nft/element-batch.ts), all or nothing. */
  commit?(batch: EncodedBatch): void;
  /** The counters of the elements with these keys only (`type`: the map's key type). */
  elementCountersByKey?(family: "inet", table: string, set: string, type: string, keys: readonly string[]): readonly ElementCount[];
}

export interface NftClient {
  /** What `table inet <table>` holds, or null when it holds nothing (or does not exist). */
  inventory(table: string): Promise<TableInventory | null>;
  /** `nft -c -f -`: would the script apply? */
  check(script: string): Promise<CommandResult>;
  /** `nft -f -`: apply the script as one transaction. */
  run(script: string): Promise<CommandResult>;
  /** Values of the named counters of `table inet <table>` (empty when there is none). */
  counters(table: string): Promise<Map<string, { packets: number; bytes: number }>>;
  /**
   * A hash of everything in `table inet <table>` that decides what passes
   * (chains, rules, sets, maps and their elements, counter names), leaving out
   * handles, counter values and chains whose name starts with `ignorePrefix`.
   */
  fingerprint(table: string, ignorePrefix: string): Promise<string>;
  /** `nft -j list ...` and similar read-only calls, parsed. */
  json(args: readonly string[]): Promise<unknown>;
  /** The counter and comment of every element of one of our maps. */
  elementCounters(table: string, map: string): Promise<readonly ElementCount[]>;
  /** The nf_tables ruleset generation; absent where it cannot be read. */
  generation?(): Promise<number>;
  /** The counter and comment of the elements of one of our maps with these keys (`type`: its key type); absent where netlink cannot be read. */
  elementCountersByKey?(table: string, map: string, type: string, keys: readonly string[]): Promise<readonly ElementCount[]>;
  /**
   * Deletes and adds map elements and deletes and adds empty (marker) chains in one transaction,
   * onto `load.generation` only when it is given (else nothing of it is applied and it throws);
   * absent where netlink cannot write. Elements go in at the kernel's speed, without nft's parser
   * and without the listing of every interval map nft does before any deletion.
   */
  applyElements?(load: ElementLoad): Promise<void>;
}

interface NftJson {
  nftables?: Record<string, { family?: string; table?: string; name?: string; packets?: number; bytes?: number }>[];
}

const ElemJson = v.looseObject({ elem: v.looseObject({ comment: v.optional(v.string()), counter: v.optional(v.looseObject({ packets: v.number(), bytes: v.number() })) }) });

export function nftClient(nftPath: string, exec: Executor, kernel?: KernelReader): NftClient {
  const json = async (args: readonly string[]): Promise<unknown> => {
    const r = await exec([nftPath, "-j", ...args]);
    if (r.code !== 0) throw new FirewallError("nft_unavailable", `${nftPath} -j ${args.join(" ")} failed: ${r.stderr.trim() || `exit ${r.code}`}`);
    return JSON.parse(r.stdout || "{}");
  };
  return {
    json,
    ...(kernel ? { generation: async () => kernel.generation() } : {}),
    ...(kernel?.elementCountersByKey ? { elementCountersByKey: async (table: string, map: string, type: string, keys: readonly string[]) => kernel.elementCountersByKey?.("inet", table, map, type, keys) ?? [] } : {}),
    ...(kernel?.commit ? { applyElements: async (load: ElementLoad) => kernel.commit?.(elementBatch(load)) } : {}),
    async elementCounters(table, map) {
      if (kernel) return kernel.setElementCounters("inet", table, map);
      const doc = (await json(["list", "map", "inet", table, map])) as { nftables?: { map?: { elem?: unknown[] } }[] };
      const elems = doc.nftables?.find((o) => o.map)?.map?.elem ?? [];
      return elems.flatMap((e) => {
        // A map's element is a pair [key, value]; the key carries the counter and the comment.
        const key = Array.isArray(e) ? e[0] : undefined;
        if (!v.is(ElemJson, key)) return [];
        const { comment, counter } = key.elem;
        return [{ comment: comment ?? null, packets: counter?.packets ?? 0, bytes: counter?.bytes ?? 0 }];
      });
    },
    async inventory(table) {
      // `list tables` would fill nft's whole cache (half a second at 10,000 policies); these three do not.
      // -t (terse) leaves out set elements: listing a 10,000-element map just to learn its name is waste.
      const [chains, sets, maps] = (await Promise.all([
        json(["-t", "list", "chains", "inet"]),
        json(["-t", "list", "sets", "inet"]),
        json(["-t", "list", "maps", "inet"]),
      ])) as NftJson[];
      const names = (doc: NftJson | undefined, kind: string) =>
        (doc?.nftables ?? []).flatMap((o) => {
          const x = o[kind];
          return x && x.table === table && x.family === "inet" && x.name ? [x.name] : [];
        });
      const inv = { chains: names(chains, "chain"), sets: names(sets, "set"), maps: names(maps, "map") };
      return inv.chains.length + inv.sets.length + inv.maps.length === 0 ? null : inv;
    },
    async counters(table) {
      const out = new Map<string, { packets: number; bytes: number }>();
      const doc = (await json(["list", "counters", "inet"])) as NftJson;
      for (const o of doc.nftables ?? []) {
        const c = o.counter;
        if (c && c.table === table && c.name) out.set(c.name, { packets: c.packets ?? 0, bytes: c.bytes ?? 0 });
      }
      return out;
    },
    async fingerprint(table, ignorePrefix) {
      // The text listing: a third cheaper than JSON for nft, and no 14 MB JSON.parse at 10,000 policies.
      const r = await exec([nftPath, "list", "table", "inet", table]);
      if (r.code !== 0) throw new FirewallError("nft_unavailable", `${nftPath} list table inet ${table} failed: ${r.stderr.trim() || `exit ${r.code}`}`);
      const ignored = new RegExp(`^\\tchain ${ignorePrefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\S* \\{\\n\\t\\}$`, "gm");
      const text = r.stdout.replace(/packets \d+ bytes \d+/g, "").replace(ignored, "").replace(/\n{2,}/g, "\n");
      return createHash("sha256").update(text).digest("hex").slice(0, 16);
    },
    check: (script) => exec([nftPath, "-c", "-f", "-"], { stdin: script }),
    run: (script) => exec([nftPath, "-f", "-"], { stdin: script }),
  };
}
