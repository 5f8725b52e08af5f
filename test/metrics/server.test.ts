import { describe, expect, test } from "bun:test";
import { Gauge, Registry } from "prom-client";
import { startMetricsServer } from "../../lib/metrics/server.ts";

describe("metrics server", () => {
  test("serves /metrics from every registry, 404 elsewhere, 405 for other methods", async () => {
    const a = new Registry();
    const b = new Registry();
    new Gauge({ name: "test_a", help: "a", registers: [a] }).set(1);
    new Gauge({ name: "test_b", help: "b", registers: [b] }).set(2);
    const ac = new AbortController();
    const s = await startMetricsServer("127.0.0.1:0", [a, b], ac.signal);
    try {
      const r = await fetch(`http://127.0.0.1:${s.port}/metrics`);
      expect(r.status).toBe(200);
      expect(r.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
      const text = await r.text();
      expect(text).toContain("test_a 1\n");
      expect(text).toContain("test_b 2\n");
      expect((await fetch(`http://127.0.0.1:${s.port}/other`)).status).toBe(404);
      expect((await fetch(`http://127.0.0.1:${s.port}/metrics`, { method: "POST" })).status).toBe(405);
    } finally {
      ac.abort();
      await s.close();
    }
  });

  test("concurrent scrapes share one collection", async () => {
    const registry = new Registry();
    let collections = 0;
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    new Gauge({
      name: "test_slow",
      help: "collected slowly",
      registers: [registry],
      async collect() {
        collections++;
        await gate;
        this.set(collections);
      },
    });
    const ac = new AbortController();
    const s = await startMetricsServer("127.0.0.1:0", [registry], ac.signal);
    try {
      const scrapes = [1, 2, 3, 4].map(() => fetch(`http://127.0.0.1:${s.port}/metrics`).then((r) => r.text()));
      // All four are waiting on the one collection; let it finish.
      while (collections === 0) await new Promise((r) => setTimeout(r, 5));
      release();
      const texts = await Promise.all(scrapes);
      expect(collections).toBe(1);
      for (const t of texts) expect(t).toContain("test_slow 1\n");
    } finally {
      ac.abort();
      await s.close();
    }
  });

  test("a failing collection answers 500 with the reason, escaped", async () => {
    const registry = new Registry();
    new Gauge({
      name: "test_broken",
      help: "fails",
      registers: [registry],
      collect() {
        throw new Error("nft gone\u001b[31m");
      },
    });
    const ac = new AbortController();
    const s = await startMetricsServer("127.0.0.1:0", [registry], ac.signal);
    try {
      const r = await fetch(`http://127.0.0.1:${s.port}/metrics`);
      expect(r.status).toBe(500);
      expect(await r.text()).toBe("collecting metrics failed: nft gone\\x1b[31m\n");
    } finally {
      ac.abort();
      await s.close();
    }
  });
});
