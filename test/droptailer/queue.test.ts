import { describe, expect, test } from "bun:test";
import { DropQueue, backoffDelay, type Shipper } from "../../lib/droptailer/queue.ts";
import type { DropEvent, PushResult } from "../../lib/droptailer/client.ts";
import { waitUntil } from "../wait-until.ts";

const ev = (n: number): DropEvent => ({ timestamp: BigInt(n), fields: { N: String(n) } });
const DOWN: PushResult = { ok: false, kind: "unavailable", reason: "unavailable: connection refused" };

/** A shipper whose server is up or down at the test's command; records what arrived. */
class FakeShipper implements Shipper {
  up = true;
  attempts = 0;
  readonly arrived: number[] = [];
  /** When set, each push waits for it (to hold an event in flight). */
  gate: Promise<void> | undefined;
  async push(e: DropEvent): Promise<PushResult> {
    this.attempts++;
    if (this.gate) await this.gate;
    if (!this.up) return DOWN;
    this.arrived.push(Number(e.fields.N));
    return { ok: true };
  }
}

/** Sleep that never waits in real time, recording the delays asked for; can be held. */
function fakeSleep() {
  const delays: number[] = [];
  let hold: Promise<void> | undefined;
  let release: (() => void) | undefined;
  return {
    delays,
    holdNext() {
      hold = new Promise((r) => (release = r));
    },
    release() {
      const r = release;
      hold = undefined;
      release = undefined;
      r?.();
    },
    sleep: async (ms: number, signal: AbortSignal) => {
      delays.push(ms);
      if (hold) await Promise.race([hold, new Promise((r) => signal.addEventListener("abort", r, { once: true }))]);
      else await Promise.resolve();
    },
  };
}

describe("DropQueue", () => {
  test("ships in order and reports each position after its push", async () => {
    const shipper = new FakeShipper();
    const positions: number[] = [];
    const q = new DropQueue<number>({ capacity: 100, shipper, onShipped: (p) => {
      // the position is reported only once the server has the event
      expect(shipper.arrived).toContain(p);
      positions.push(p);
    } });
    const done = q.run();
    for (let i = 0; i < 50; i++) q.offer(ev(i), i);
    await waitUntil("50 shipped", async () => q.counters.shipped === 50);
    expect(shipper.arrived).toEqual([...Array(50).keys()]);
    expect(positions).toEqual([...Array(50).keys()]);
    expect(q.length).toBe(0);
    expect(q.counters).toEqual({ shipped: 50, retried: 0, dropped: 0, offered: 50 });
    q.stop();
    await done;
  });

  test("nothing is lost up to the bound while the server is away; all arrive in order once it is back", async () => {
    const shipper = new FakeShipper();
    shipper.up = false;
    const s = fakeSleep();
    const positions: number[] = [];
    const q = new DropQueue<number>({ capacity: 1000, shipper, sleep: s.sleep, onShipped: (p) => positions.push(p) });
    s.holdNext(); // the first failure waits in its backoff until released
    const done = q.run();
    for (let i = 0; i < 1000; i++) expect(q.offer(ev(i), i)).toBe(true);
    await waitUntil("a failed attempt", async () => s.delays.length === 1);
    expect(q.length).toBe(1000);
    expect(q.counters.dropped).toBe(0);
    expect(positions).toEqual([]);
    shipper.up = true;
    s.release();
    await waitUntil("1000 shipped", async () => q.counters.shipped === 1000);
    expect(shipper.arrived).toEqual([...Array(1000).keys()]);
    expect(positions).toEqual([...Array(1000).keys()]);
    expect(q.counters).toEqual({ shipped: 1000, retried: 1, dropped: 0, offered: 1000 });
    q.stop();
    await done;
  });

  test("over the bound the oldest waiting ones are dropped, exactly counted; the one in flight is kept", async () => {
    const shipper = new FakeShipper();
    shipper.up = false;
    const s = fakeSleep();
    const q = new DropQueue<number>({ capacity: 10, shipper, sleep: s.sleep });
    s.holdNext();
    const done = q.run();
    q.offer(ev(0), 0);
    await waitUntil("event 0 in flight", async () => s.delays.length === 1);
    for (let i = 1; i < 25; i++) q.offer(ev(i), i);
    // held: 0 (in flight) + the 9 newest (16..24); dropped: 1..15
    expect(q.length).toBe(10);
    expect(q.counters.dropped).toBe(15);
    shipper.up = true;
    s.release();
    await waitUntil("10 shipped", async () => q.counters.shipped === 10);
    expect(shipper.arrived).toEqual([0, 16, 17, 18, 19, 20, 21, 22, 23, 24]);
    expect(q.counters).toEqual({ shipped: 10, retried: 1, dropped: 15, offered: 25 });
    q.stop();
    await done;
  });

  test("offered before the sender runs: exactly the overflow is dropped", () => {
    const q = new DropQueue<number>({ capacity: 3, shipper: new FakeShipper() });
    for (let i = 0; i < 8; i++) q.offer(ev(i), i);
    expect(q.length).toBe(3);
    expect(q.counters.dropped).toBe(5);
  });

  test("capacity 1 with the only event in flight: the newcomer is dropped", async () => {
    const shipper = new FakeShipper();
    let open!: () => void;
    shipper.gate = new Promise((r) => (open = r));
    const q = new DropQueue<number>({ capacity: 1, shipper });
    const done = q.run();
    q.offer(ev(0), 0);
    await waitUntil("in flight", async () => shipper.attempts === 1);
    expect(q.offer(ev(1), 1)).toBe(false);
    expect(q.counters.dropped).toBe(1);
    open();
    await waitUntil("shipped", async () => q.counters.shipped === 1);
    expect(shipper.arrived).toEqual([0]);
    q.stop();
    await done;
  });

  test("retries with exponential backoff and jitter, bounded; position only after success", async () => {
    const shipper = new FakeShipper();
    shipper.up = false;
    const s = fakeSleep();
    const positions: number[] = [];
    const failures: number[] = [];
    const q = new DropQueue<number>({
      capacity: 10, shipper, sleep: s.sleep, random: () => 0.5,
      backoff: { initialMs: 100, maxMs: 1000, factor: 2, jitter: 0.5 },
      onShipped: (p) => positions.push(p),
      onFailure: (r, attempt) => {
        expect(r.ok).toBe(false);
        failures.push(attempt);
        if (attempt === 7) shipper.up = true;
      },
    });
    const done = q.run();
    q.offer(ev(1), 1);
    await waitUntil("shipped", async () => q.counters.shipped === 1);
    // base 100, 200, 400, 800, 1000, 1000, 1000; × (0.5 + 0.5 × 0.5)
    expect(s.delays).toEqual([75, 150, 300, 600, 750, 750, 750]);
    expect(failures).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(q.counters.retried).toBe(7);
    expect(shipper.attempts).toBe(8);
    expect(positions).toEqual([1]);
    q.stop();
    await done;
  });

  test("backoffDelay: jitter spans [base × (1 − jitter), base)", () => {
    expect(backoffDelay(1, { initialMs: 100, jitter: 0.5 }, () => 0)).toBe(50);
    expect(backoffDelay(1, { initialMs: 100, jitter: 0.5 }, () => 0.999999)).toBeCloseTo(100, 3);
    expect(backoffDelay(30, { initialMs: 100, maxMs: 5000, jitter: 0 })).toBe(5000);
    expect(backoffDelay(3, { initialMs: 10, factor: 3, jitter: 0 })).toBe(90);
  });

  test("kick() ends a backoff wait at once", async () => {
    const shipper = new FakeShipper();
    shipper.up = false;
    const s = fakeSleep();
    const q = new DropQueue<number>({ capacity: 10, shipper, sleep: s.sleep });
    s.holdNext();
    const done = q.run();
    q.offer(ev(1), 1);
    await waitUntil("waiting in backoff", async () => s.delays.length === 1);
    shipper.up = true;
    q.kick();
    await waitUntil("shipped", async () => q.counters.shipped === 1);
    q.stop();
    await done;
  });

  test("a throwing shipper or position callback never stops the sender", async () => {
    let n = 0;
    const arrived: number[] = [];
    const shipper: Shipper = {
      async push(e) {
        if (n++ === 0) throw new Error("boom");
        arrived.push(Number(e.fields.N));
        return { ok: true };
      },
    };
    const s = fakeSleep();
    const q = new DropQueue<number>({ capacity: 10, shipper, sleep: s.sleep, onShipped: () => {
      throw new Error("disk full");
    } });
    const done = q.run();
    q.offer(ev(1), 1);
    q.offer(ev(2), 2);
    await waitUntil("both shipped", async () => q.counters.shipped === 2);
    expect(arrived).toEqual([1, 2]);
    expect(q.counters.retried).toBe(1);
    q.stop();
    await done;
  });

  test("AbortSignal stops the loop, also in a backoff wait, and run() resolves", async () => {
    const shipper = new FakeShipper();
    shipper.up = false;
    const ac = new AbortController();
    const q = new DropQueue<number>({ capacity: 10, shipper, signal: ac.signal, backoff: { initialMs: 60_000 } });
    const done = q.run();
    q.offer(ev(1), 1);
    await waitUntil("a failed attempt", async () => q.counters.retried === 1);
    ac.abort();
    await done; // with the real sleep: would take 30-60 s if the abort did not end it
    expect(q.counters.shipped).toBe(0);
    const attempts = shipper.attempts;
    q.offer(ev(2), 2);
    await Promise.resolve();
    expect(shipper.attempts).toBe(attempts);
  });

  test("an idle sender stops on abort too", async () => {
    const ac = new AbortController();
    const q = new DropQueue({ capacity: 10, shipper: new FakeShipper(), signal: ac.signal });
    const done = q.run();
    ac.abort();
    await done;
  });

  test("with a window of pushes, completions out of order still report positions in order, each after everything before it arrived", async () => {
    // Each push waits for its own release; the test releases them in reverse.
    const releases = new Map<number, () => void>();
    const arrived: number[] = [];
    const shipper: Shipper = {
      push: (e) => new Promise<PushResult>((resolve) => releases.set(Number(e.fields.N), () => {
        arrived.push(Number(e.fields.N));
        resolve({ ok: true });
      })),
    };
    const positions: number[] = [];
    const q = new DropQueue<number>({ capacity: 100, shipper, concurrency: 4, onShipped: (p) => positions.push(p) });
    const done = q.run();
    for (let i = 1; i <= 6; i++) q.offer(ev(i), i);
    await waitUntil("four pushes in flight", async () => releases.size === 4);
    expect([...releases.keys()]).toEqual([1, 2, 3, 4]);
    for (const n of [4, 3, 2]) (releases.get(n) as () => void)();
    await Bun.sleep(10);
    expect(positions).toEqual([]); // 1 is not at the server yet: no position may move past it
    (releases.get(1) as () => void)();
    await waitUntil("positions 1-4", async () => positions.length === 4);
    expect(positions).toEqual([1, 2, 3, 4]);
    await waitUntil("5 and 6 started", async () => releases.has(5) && releases.has(6));
    (releases.get(6) as () => void)();
    (releases.get(5) as () => void)();
    await waitUntil("all six", async () => positions.length === 6);
    expect(positions).toEqual([1, 2, 3, 4, 5, 6]);
    expect(arrived).toEqual([4, 3, 2, 1, 6, 5]);
    expect(q.counters).toEqual({ shipped: 6, retried: 0, dropped: 0, offered: 6 });
    q.stop();
    await done;
  });

  test("pushes the server accepts while the queue stops still report their positions, in order (a restart must not ship them again)", async () => {
    const releases = new Map<number, () => void>();
    const shipper: Shipper = {
      push: (e) => new Promise<PushResult>((resolve) => releases.set(Number(e.fields.N), () => resolve({ ok: true }))),
    };
    const positions: number[] = [];
    const q = new DropQueue<number>({ capacity: 100, shipper, concurrency: 4, onShipped: (p) => positions.push(p) });
    const done = q.run();
    for (let i = 1; i <= 3; i++) q.offer(ev(i), i);
    await waitUntil("three pushes in flight", async () => releases.size === 3);
    q.stop();
    // The answers arrive after the stop, as they do when a shutdown races the server's replies.
    for (const n of [2, 1, 3]) (releases.get(n) as () => void)();
    await done;
    expect(positions).toEqual([1, 2, 3]);
    expect(q.counters.shipped).toBe(3);
  });

  test("rejects a capacity that is not a positive integer", () => {
    expect(() => new DropQueue({ capacity: 0, shipper: new FakeShipper() })).toThrow(RangeError);
  });
});
