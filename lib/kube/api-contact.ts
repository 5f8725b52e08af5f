/**
 * Tells whether the API server is really answering. A server can accept
 * connections and then say nothing (a hung apiserver, a black-holing proxy):
 * watches then stall without an error and requests wait for their timeout,
 * so "no error seen" proves nothing. Readiness asks instead when the server
 * last answered anything — a list, a write, a watch event or bookmark, a
 * probe.
 *
 * @example
 * ```ts
 * import { trackContact } from "./api-contact.ts";
 * const fake = { request: async () => ({ status: 200, body: {} }), watch: async () => {} };
 * const tracked = trackContact(fake, () => 1_000);
 * await tracked.api.request("GET", "/version");
 * console.log(tracked.lastContact()); // 1000
 * ```
 * @module
 */
import type { ClusterApi } from "./api.ts";

export interface TrackedApi {
  /** The same API; every answer it gets counts as contact. */
  readonly api: ClusterApi;
  /** Clock time (ms) of the last answer from the server; -Infinity before the first. */
  lastContact(): number;
  /** The last failure seen (unreachable, timeout, 5xx), cleared by the next answer. */
  lastFailure(): string | undefined;
}

/**
 * An answer is contact when the server produced it: any HTTP status below
 * 500 (a 404 or 409 is the server talking); 0 (unreachable, timed out) and
 * 5xx are not.
 */
const answered = (status: number) => status > 0 && status < 500;

export function trackContact(api: ClusterApi, now: () => number = Date.now, onFailure: () => void = () => {}): TrackedApi {
  let last = Number.NEGATIVE_INFINITY;
  let failure: string | undefined;
  const touch = () => {
    last = now();
    failure = undefined;
  };
  return {
    api: {
      async request(method, path, options) {
        const r = await api.request(method, path, options);
        if (answered(r.status)) touch();
        else {
          failure = `${method} ${path}: ${r.status === 0 ? "no answer" : `HTTP ${r.status}`}`;
          onFailure();
        }
        return r;
      },
      watch(path, query, onEvent, signal) {
        return api.watch(path, query, (e) => {
          touch();
          onEvent(e);
        }, signal);
      },
    },
    lastContact: () => last,
    lastFailure: () => failure,
  };
}
