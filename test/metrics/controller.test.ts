import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { ControllerMetrics } from "../../lib/metrics/controller.ts";

const promtool = spawnSync("sh", ["-c", "command -v promtool"], { encoding: "utf8" }).stdout.trim();
if (!promtool && process.env.CI !== "true") console.warn("SKIPPED (loudly): test/metrics/controller.test.ts promtool checks need promtool (Debian prometheus)");

describe("controller metrics", () => {
  test("a reconcile moves the counters, the gauges and the last-success time", async () => {
    const m = new ControllerMetrics({ version: "9.9.9" });
    m.reconciled({ outcome: "applied", seconds: 0.2, elements: 42, policies: { ready: 3, invalid: 1, ignored: 2 }, services: { inEffect: 4, pending: 1, invalid: 0 } }, new Date("2026-12-01T00:00:00Z"));
    m.reconciled({ outcome: "failed", seconds: 0.05 }, new Date("2026-12-01T00:00:10Z"));
    m.apiError();
    m.readinessFrom(() => false);
    const text = await m.registry.metrics();
    expect(text).toContain('firewall_controller_reconciles_total{outcome="applied"} 1\n');
    expect(text).toContain('firewall_controller_reconciles_total{outcome="failed"} 1\n');
    expect(text).toContain('firewall_controller_reconciles_total{outcome="partial"} 0\n');
    expect(text).toContain("firewall_controller_reconcile_duration_seconds_count 2\n");
    expect(text).toContain('firewall_controller_policies{state="invalid"} 1\n');
    expect(text).toContain('firewall_controller_services{state="pending"} 1\n');
    expect(text).toContain("firewall_controller_rendered_elements 42\n");
    // The failed run does not move it.
    expect(text).toContain("firewall_controller_last_successful_reconcile_timestamp_seconds 1796083200\n");
    expect(text).toContain("firewall_controller_api_errors_total 1\n");
    expect(text).toContain("firewall_controller_ready 0\n");
    expect(text).toContain('firewall_controller_build_info{version="9.9.9"} 1\n');
  });

  test.skipIf(!promtool && process.env.CI !== "true")("the exposition is lint-clean for promtool check metrics", async () => {
    const m = new ControllerMetrics({ version: "0.1.0" });
    m.reconciled({ outcome: "unchanged", seconds: 0.01, elements: 1 }, new Date());
    const r = spawnSync(promtool || "promtool", ["check", "metrics"], { input: await m.registry.metrics(), encoding: "utf8" });
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
  });
});

describe("controller metrics: the drop log", () => {
  test("droptailer events by outcome, queue length and shipping come from the drop log's status", async () => {
    const m = new ControllerMetrics({ version: "0.1.0" });
    m.droptailerFrom(() => ({ shipping: false, reason: "unavailable", counters: { shipped: 7, retried: 2, dropped: 1, offered: 10 }, queued: 2, lost: 3n, channelBuilds: 1 }));
    const text = await m.registry.metrics();
    expect(text).toContain('firewall_controller_droptailer_events_total{outcome="shipped"} 7\n');
    expect(text).toContain('firewall_controller_droptailer_events_total{outcome="dropped"} 1\n');
    expect(text).toContain('firewall_controller_droptailer_events_total{outcome="lost"} 3\n');
    expect(text).toContain("firewall_controller_droptailer_queue_length 2\n");
    expect(text).toContain("firewall_controller_droptailer_shipping 0\n");
    if (promtool) {
      const r = spawnSync(promtool, ["check", "metrics"], { input: text, encoding: "utf8" });
      expect(r.stdout + r.stderr).toBe("");
    }
  });
});
