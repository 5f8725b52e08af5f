/**
 * The shapes of suricata 7's unix command answers (SPEC §9), as valibot
 * schemas: nothing from the socket is used before it passed one of these.
 *
 * Checked against suricata's `src/unix-manager.c` and `src/util-device.c`
 * (branch main-7.0.x): every answer is `{"message": ..., "return": "OK"|"NOK"}`,
 * the handshake answer has no `message`, a `NOK` answer carries a string
 * message ("Unknown command", "Iface does not exist"), and `iface-stat` also
 * sends `bypassed`, which we ignore.
 *
 * @example
 * ```ts
 * import * as v from "valibot";
 * import { ifaceStatAnswer } from "./suricata-schema.ts";
 * v.parse(ifaceStatAnswer, { return: "OK", message: { pkts: 10, "invalid-checksums": 0, drop: 0, bypassed: 0 } });
 * ```
 * @module
 */
import * as v from "valibot";

/** Default bound on the number of interfaces taken from `iface-list`. */
export const DEFAULT_MAX_IFACES = 64;

/**
 * Bound on an interface name. Linux names have at most 15 bytes, but suricata
 * also names pcap and DPDK devices; the bound only keeps a hostile name from
 * bloating the status.
 */
export const MAX_IFACE_NAME = 256;

/** A counter: suricata sends uint64 values as JSON integers. */
const counter = v.pipe(v.number(), v.integer(), v.minValue(0));

/** Any `NOK` answer; the message says why (printed only through escapeText). */
export const nokAnswer = v.object({ return: v.literal("NOK"), message: v.optional(v.unknown()) });

/** The answer to `{"version": "0.2"}`. */
export const handshakeAnswer = v.object({ return: v.literal("OK") });

/** The answer to `{"command": "iface-list"}`, with at most `maxIfaces` names. */
export const ifaceListAnswer = (maxIfaces: number = DEFAULT_MAX_IFACES) =>
  v.object({
    return: v.literal("OK"),
    message: v.pipe(
      v.object({
        count: v.pipe(counter, v.maxValue(maxIfaces, `more than ${maxIfaces} interfaces`)),
        ifaces: v.pipe(
          v.array(v.pipe(v.string(), v.minLength(1), v.maxLength(MAX_IFACE_NAME))),
          v.maxLength(maxIfaces, `more than ${maxIfaces} interfaces`),
        ),
      }),
      v.check((m) => m.count === m.ifaces.length, "count does not match the number of interfaces"),
    ),
  });

/** The answer to `{"command": "iface-stat", "arguments": {"iface": X}}`. */
export const ifaceStatAnswer = v.object({
  return: v.literal("OK"),
  message: v.object({ pkts: counter, "invalid-checksums": counter, drop: counter }),
});
