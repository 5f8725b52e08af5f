/**
 * Kubernetes Events on the objects the controller judges (SPEC §6, §8): a
 * rejected policy or a failed apply shows up in `kubectl describe` and
 * `kubectl get events`. Like client-go's event correlator, a repeat of the
 * same event (same object, type, reason and message) within 10 minutes bumps
 * the existing Event's `count` instead of creating another one, so a
 * controller that reconciles every 10 s does not flood the cluster. Events
 * are best effort: failures are counted, never thrown.
 *
 * @example
 * ```ts
 * import { EventRecorder } from "./events.ts";
 * // const events = new EventRecorder(api, { component: "firewall-controller", host: "fw-1" });
 * // await events.record({ apiVersion: "metal-stack.io/v1", kind: "ClusterwideNetworkPolicy", namespace: "firewall", name: "allow-dns" },
 * //   "Warning", "InvalidPolicy", "spec.egress[0].ports[0].port: 0 is not a port (1..65535)");
 * ```
 * @module
 */
import type { ClusterApi } from "./api.ts";
import { statusMessage } from "./api.ts";
import { escapeText } from "../escape.ts";

/**
 * The object an Event is about.
 *
 * @example
 * ```ts
 * import type { InvolvedObject } from "./events.ts";
 * const fw: InvolvedObject = { apiVersion: "metal-stack.io/v1", kind: "Firewall", namespace: "firewall", name: "firewall", uid: "…" };
 * ```
 */
export interface InvolvedObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  readonly uid?: string;
}

/**
 * Options of {@link EventRecorder}.
 *
 * @example
 * ```ts
 * import type { EventRecorderOptions } from "./events.ts";
 * const o: EventRecorderOptions = { component: "firewall-controller", host: "fw-1" };
 * ```
 */
export interface EventRecorderOptions {
  /** `source.component` and `reportingComponent`. */
  readonly component: string;
  /** `source.host` and `reportingInstance`: which firewall of the cluster said it. */
  readonly host: string;
  readonly clock?: () => Date;
  /** Told about every failed write (for a log line); the recorder goes on. */
  readonly onFailure?: (message: string) => void;
}

/** How long a repeat is folded into the existing Event (client-go: 10 minutes). */
const CORRELATION_MS = 10 * 60 * 1000;
/** Bound on remembered events, as client-go's LRU cache. */
const CACHE_SIZE = 4096;
/** The API server's bound on an Event's message, roughly; longer texts are cut. */
const MAX_MESSAGE = 1024;
/** Object names may take 253 characters; the suffix needs 17 of them. */
const MAX_NAME_PREFIX = 253 - 17;

interface Seen {
  /** Event name, and where it lives. */
  readonly name: string;
  readonly namespace: string;
  count: number;
  last: number;
  /** Writes for one key run one after the other, so two quick repeats never create two Events. */
  chain: Promise<void>;
}

/**
 * Records core/v1 Events, folding repeats into one Event with a count.
 *
 * @example
 * ```ts
 * import { EventRecorder } from "./events.ts";
 * // const events = new EventRecorder(api, { component: "firewall-controller", host: hostname() });
 * // await events.record(involved, "Warning", "ApplyFailed", "nft rejected the ruleset: ...");
 * // events.failures; // 0 when every write went through
 * ```
 */
export class EventRecorder {
  readonly #api: ClusterApi;
  readonly #o: EventRecorderOptions;
  readonly #clock: () => Date;
  readonly #seen = new Map<string, Seen>();
  #failures = 0;
  #sequence = 0;

  constructor(api: ClusterApi, options: EventRecorderOptions) {
    this.#api = api;
    this.#o = options;
    this.#clock = options.clock ?? (() => new Date());
  }

  /** Writes that failed so far (events are best effort). */
  get failures(): number {
    return this.#failures;
  }

  /** Creates an Event, or counts a repeat of one seen within 10 minutes. Never throws. */
  record(involved: InvolvedObject, type: "Normal" | "Warning", reason: string, message: string): Promise<void> {
    const text = cut(message);
    const key = JSON.stringify([involved.apiVersion, involved.kind, involved.namespace, involved.name, involved.uid ?? "", type, reason, text]);
    const previous = this.#seen.get(key);
    const after = previous?.chain ?? Promise.resolve();
    const run = after.then(() => this.#write(key, involved, type, reason, text)).catch((e) => this.#fail(`${e}`));
    if (previous) previous.chain = run;
    else {
      // A placeholder, so a second call before the first write finished waits for it instead of creating its own Event.
      this.#seen.set(key, { name: "", namespace: involved.namespace, count: 0, last: 0, chain: run });
    }
    return run;
  }

  async #write(key: string, involved: InvolvedObject, type: "Normal" | "Warning", reason: string, message: string): Promise<void> {
    const now = this.#clock();
    const at = now.getTime();
    this.#prune(at);
    const seen = this.#seen.get(key);
    if (seen && seen.name !== "" && at - seen.last < CORRELATION_MS) {
      const count = seen.count + 1;
      const r = await this.#api.request("PATCH", `/api/v1/namespaces/${seen.namespace}/events/${seen.name}`, {
        body: { count, lastTimestamp: timestamp(now) },
        contentType: "application/merge-patch+json",
      });
      // The occurrence happened whether or not the write went through: the next patch carries it.
      seen.count = count;
      seen.last = at;
      this.#touch(key, seen);
      if (r.status >= 200 && r.status < 300) return;
      // 404: the Event expired (the API server keeps Events for an hour) or was deleted; start a new one.
      if (r.status !== 404) return this.#fail(`cannot update Event ${seen.namespace}/${seen.name}: HTTP ${r.status}: ${statusMessage(r)}`);
    }
    const name = `${namePrefix(involved.name)}.${this.#suffix(at)}`;
    const event = {
      apiVersion: "v1",
      kind: "Event",
      metadata: { name, namespace: involved.namespace },
      involvedObject: {
        apiVersion: involved.apiVersion,
        kind: involved.kind,
        namespace: involved.namespace,
        name: involved.name,
        ...(involved.uid ? { uid: involved.uid } : {}),
      },
      reason,
      message,
      type,
      source: { component: this.#o.component, host: this.#o.host },
      firstTimestamp: timestamp(now),
      lastTimestamp: timestamp(now),
      count: 1,
      reportingComponent: this.#o.component,
      reportingInstance: this.#o.host,
    };
    const r = await this.#api.request("POST", `/api/v1/namespaces/${involved.namespace}/events`, { body: event });
    const entry = this.#seen.get(key);
    if (r.status >= 200 && r.status < 300) {
      const chain = entry?.chain ?? Promise.resolve();
      this.#touch(key, { name, namespace: involved.namespace, count: 1, last: at, chain });
      return;
    }
    // Not remembered: the next occurrence tries to create it again.
    if (entry && entry.name === "") this.#seen.delete(key);
    this.#fail(`cannot create Event ${involved.namespace}/${name}: HTTP ${r.status}: ${statusMessage(r)}`);
  }

  #fail(message: string): void {
    this.#failures++;
    this.#o.onFailure?.(message);
  }

  /** Moves an entry to the end: the map's order is then least recently seen first. */
  #touch(key: string, seen: Seen): void {
    this.#seen.delete(key);
    this.#seen.set(key, seen);
  }

  #prune(now: number): void {
    for (const [key, seen] of this.#seen) {
      const expired = seen.name !== "" && now - seen.last >= CORRELATION_MS;
      if (!expired && this.#seen.size <= CACHE_SIZE) break;
      if (seen.name === "") continue;
      this.#seen.delete(key);
    }
  }

  // client-go names Events `<object>.<unix nanoseconds in hex>`; the sequence keeps names unique within one millisecond.
  #suffix(ms: number): string {
    this.#sequence = (this.#sequence + 1) % 1_000_000;
    return (BigInt(ms) * 1_000_000n + BigInt(this.#sequence)).toString(16);
  }
}

const timestamp = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, "Z");

/**
 * The output gate: an Event's message is shown by kubectl as it is. Escapes
 * make the text longer (up to 6 characters for one), so the cut is tightened
 * until the escaped message, with its note of how much was cut, fits.
 */
function cut(message: string): string {
  // Room for the note saying how much was cut, when something will be.
  let max = message.length <= MAX_MESSAGE ? MAX_MESSAGE : MAX_MESSAGE - 32;
  let out = escapeText(message, { max });
  while (out.length > MAX_MESSAGE && max > 0) {
    max = Math.max(0, Math.floor((max * (MAX_MESSAGE - 32)) / out.length));
    out = escapeText(message, { max });
  }
  return out;
}

// Event names are DNS subdomains: a cut name must not end in "." or "-" before our ".suffix".
const namePrefix = (name: string) => (name.length <= MAX_NAME_PREFIX ? name : name.slice(0, MAX_NAME_PREFIX).replace(/[.-]+$/, ""));
