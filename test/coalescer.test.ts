import { describe, expect, test } from "bun:test";
import { Coalescer } from "../lib/coalescer.ts";

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("Coalescer", () => {
  test("a burst of notifies gives one run", async () => {
    const ac = new AbortController();
    let runs = 0;
    const c = new Coalescer(async () => {
      runs++;
    }, { delayMs: 10, signal: ac.signal });
    for (let i = 0; i < 1000; i++) c.notify();
    await c.idle();
    expect(runs).toBe(1);
    ac.abort();
  });

  test("notifies during a run give exactly one more run, and runs never overlap", async () => {
    const ac = new AbortController();
    let runs = 0;
    let active = 0;
    let maxActive = 0;
    const c = new Coalescer(async () => {
      runs++;
      active++;
      maxActive = Math.max(maxActive, active);
      if (runs === 1) for (let i = 0; i < 50; i++) c.notify();
      await tick(20);
      active--;
    }, { delayMs: 1, signal: ac.signal });
    c.notify();
    await tick(5);
    await c.idle();
    expect(runs).toBe(2);
    expect(maxActive).toBe(1);
    ac.abort();
  });

  test("a lone event after a quiet spell runs at once; one right after a run waits out the delay", async () => {
    const ac = new AbortController();
    const started: number[] = [];
    const c = new Coalescer(async () => {
      started.push(performance.now());
    }, { delayMs: 1000, signal: ac.signal });
    const t0 = performance.now();
    c.notify();
    await c.idle();
    expect((started[0] as number) - t0).toBeLessThan(500); // not the 1,000 ms delay
    c.notify(); // just after the run ended: coalesced behind the delay
    await c.idle();
    expect((started[1] as number) - (started[0] as number)).toBeGreaterThanOrEqual(999);
    ac.abort();
  });

  test("a failing run does not stop later runs", async () => {
    const ac = new AbortController();
    let runs = 0;
    const c = new Coalescer(async () => {
      runs++;
      throw new Error("boom");
    }, { delayMs: 1, signal: ac.signal });
    c.notify();
    await c.idle();
    c.notify();
    await c.idle();
    expect(runs).toBe(2);
    ac.abort();
  });

  test("after abort nothing runs and idle resolves", async () => {
    const ac = new AbortController();
    let runs = 0;
    const c = new Coalescer(async () => {
      runs++;
    }, { delayMs: 30, signal: ac.signal });
    c.notify();
    ac.abort();
    await c.idle();
    c.notify();
    await tick(50);
    expect(runs).toBe(0);
  });
});
