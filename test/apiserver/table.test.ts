/** Server-side Table rendering: ages, built-in columns, CRD printer columns. */
import { describe, expect, test } from "bun:test";
import { crdTypes } from "./crd.ts";
import { BUILTIN_TYPES } from "./registry.ts";
import { humanDuration, toTable, wantsTable } from "./table.ts";
import type { ResourceType } from "./types.ts";

const type = (plural: string, group = ""): ResourceType => {
  const t = BUILTIN_TYPES.find((x) => x.plural === plural && x.group === group);
  if (!t) throw new Error(plural);
  return t;
};
const now = new Date("2026-01-01T12:00:00Z");
const cells = (t: ResourceType, o: Record<string, unknown>) =>
  (toTable(t, [{ metadata: { name: "x", creationTimestamp: "2026-01-01T11:55:00Z" }, ...o }], { now }).rows as { cells: unknown[] }[])[0]?.cells;

describe("humanDuration (k8s.io/apimachinery duration.HumanDuration)", () => {
  const s = 1000;
  const cases: [number, string][] = [
    [-5 * s, "<invalid>"],
    [-1 * s, "0s"],
    [0, "0s"],
    [119 * s, "119s"],
    [120 * s, "2m"],
    [150 * s, "2m30s"],
    [10 * 60 * s, "10m"],
    [179 * 60 * s, "179m"],
    [3 * 3600 * s, "3h"],
    [(3 * 3600 + 30 * 60) * s, "3h30m"],
    [8 * 3600 * s, "8h"],
    [47 * 3600 * s, "47h"],
    [(2 * 24 + 5) * 3600 * s, "2d5h"],
    [10 * 24 * 3600 * s, "10d"],
    [(3 * 365 + 4) * 24 * 3600 * s, "3y4d"],
    [9 * 365 * 24 * 3600 * s, "9y"],
  ];
  test.each(cases)("%d ms is %s", (ms, want) => {
    expect(humanDuration(ms)).toBe(want);
  });
});

describe("toTable", () => {
  test("asks: kubectl's Accept header is recognised, plain JSON is not", () => {
    expect(wantsTable("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")).toBe(true);
    expect(wantsTable("application/json")).toBe(false);
  });

  test("Service columns as kubectl prints them", () => {
    const lb = { spec: { type: "LoadBalancer", clusterIP: "10.96.0.5", clusterIPs: ["10.96.0.5"], ports: [{ port: 80, nodePort: 30080, protocol: "TCP" }, { port: 53, protocol: "UDP" }] } };
    expect(cells(type("services"), lb)).toEqual(["x", "LoadBalancer", "10.96.0.5", "<pending>", "80:30080/TCP,53/UDP", "5m", "<none>"]);
    const ready = { ...lb, status: { loadBalancer: { ingress: [{ ip: "203.0.113.80" }, { ip: "2001:db8:80::80" }] } } };
    // Sorted, and not truncated: the server renders wide rows.
    expect(cells(type("services"), ready)?.[3]).toBe("2001:db8:80::80,203.0.113.80");
    expect(cells(type("services"), { spec: { type: "ClusterIP", clusterIP: "None", clusterIPs: ["None"] } })?.slice(1, 5)).toEqual(["ClusterIP", "None", "<none>", "<none>"]);
  });

  test("Endpoints list up to three addresses, IPv6 bracketed", () => {
    const ep = { subsets: [{ addresses: [{ ip: "10.0.0.1" }, { ip: "fd00::1" }], ports: [{ port: 9630 }, { port: 9100 }] }] };
    expect(cells(type("endpoints"), ep)).toEqual(["x", "10.0.0.1:9630,[fd00::1]:9630,10.0.0.1:9100 + 1 more...", "5m"]);
    expect(cells(type("endpoints"), {})?.[1]).toBe("<none>");
  });

  test("CRD printer columns: Name first, strings as text, arrays as JSON, filters, dates as ages, missing as null", () => {
    const [fw] = crdTypes({
      metadata: { name: "firewalls.metal-stack.io" },
      spec: {
        group: "metal-stack.io",
        scope: "Namespaced",
        names: { plural: "firewalls", kind: "Firewall" },
        versions: [
          {
            name: "v1",
            served: true,
            storage: true,
            additionalPrinterColumns: [
              { name: "Interval", type: "string", jsonPath: ".spec.interval" },
              { name: "Prefixes", type: "string", jsonPath: ".spec.internalprefixes" },
              { name: "Ready", type: "string", jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
              { name: "Rate", type: "integer", jsonPath: ".spec.ratelimits[0].rate" },
              { name: "Last Run", type: "date", jsonPath: ".status.lastRun" },
              { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
            ],
          },
        ],
      },
    });
    if (!fw) throw new Error("no type");
    const table = toTable(fw, [{ metadata: { name: "firewall", creationTimestamp: "2026-01-01T10:00:00Z" }, spec: { interval: "10s", internalprefixes: ["10.0.0.0/8", "a<b"], ratelimits: [{ rate: 10 }] } }], { now });
    expect((table.columnDefinitions as { name: string }[]).map((c) => c.name)).toEqual(["Name", "Interval", "Prefixes", "Ready", "Rate", "Last Run", "Age"]);
    expect((table.rows as { cells: unknown[]; object: unknown }[])[0]?.cells).toEqual(["firewall", "10s", '["10.0.0.0/8","a\\u003cb"]', null, 10, null, "120m"]);
    expect((table.rows as { object: unknown }[])[0]?.object).toMatchObject({ kind: "PartialObjectMetadata", metadata: { name: "firewall" } });
  });
});
