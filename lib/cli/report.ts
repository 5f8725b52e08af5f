/**
 * The lines a `--once` run prints on stderr, from manifests or against a
 * cluster alike: one per rejected object, each passed through the output
 * gate, since names, paths and values come from the input.
 *
 * @example
 * ```ts
 * import { rejectionLine } from "./report.ts";
 * rejectionLine({ ref: { kind: "ClusterwideNetworkPolicy", namespace: "firewall", name: "x" }, problems: [{ path: "spec.egress[0].ports[0].port", message: "0 is not a port (1..65535)" }] });
 * // "rejected ClusterwideNetworkPolicy firewall/x: spec.egress[0].ports[0].port: 0 is not a port (1..65535)\n"
 * ```
 * @module
 */
import { formatProblems } from "../api/problem.ts";
import { formatRef, type Rejection } from "../desired-state.ts";
import { escapeText } from "../escape.ts";
import { inForceText } from "../kube/status.ts";

/** A rejected object's line lists every problem, each value already cut at the source. */
const LINE_MAX = 64 * 1024;

/** One line for stderr: escaped, bounded, newline-terminated. */
export const stderrLine = (text: string): string => `${escapeText(text, { max: LINE_MAX })}\n`;

export const rejectionLine = (r: Rejection): string => stderrLine(`rejected ${formatRef(r.ref)}: ${formatProblems(r.problems)}${inForceText(r.inForce)}`);
