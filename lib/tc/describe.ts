/**
 * The shaping part of `--dry-run` output: comment lines that say, without
 * asking the kernel, what the rate limits will do.
 *
 * @example
 * ```ts
 * import { describeShaping } from "./describe.ts";
 * console.log(describeShaping([{ interface: "vrf104009", rateMbit: 10 }]).join("\n"));
 * // # shaping: traffic received on vrf104009 limited to 10 Mbit/s (ingress redirect to IFB fcifbvrf104009, tbf rate 10mbit burst 32768 latency 50ms)
 * ```
 * @module
 */
import { desiredShaping, IFB_PREFIX, type RateLimitEntry } from "./plan.ts";

/**
 * One `# shaping: …` line per limit and per problem found in the entries alone;
 * a missing interface is only known when applying.
 *
 * @example
 * ```ts
 * import { describeShaping } from "./describe.ts";
 * describeShaping([]); // ["# shaping: no rate limits; shaping set up earlier by firewall-controller (fcifb* devices) is removed"]
 * ```
 */
export function describeShaping(entries: readonly RateLimitEntry[]): string[] {
  const { desired, problems } = desiredShaping(entries);
  const lines = desired.map(
    (d) =>
      `# shaping: traffic received on ${d.interface} limited to ${d.rateMbit} Mbit/s ` +
      `(ingress redirect to IFB ${d.ifb}, tbf rate ${d.rateMbit}mbit burst ${d.tbf.burstBytes} latency ${d.tbf.latencyMs}ms)`,
  );
  if (desired.length === 0) {
    lines.push(`# shaping: no rate limits; shaping set up earlier by firewall-controller (${IFB_PREFIX}* devices) is removed`);
  }
  for (const p of problems) lines.push(`# shaping: ${p.interface}: ${p.message}`);
  return lines;
}
