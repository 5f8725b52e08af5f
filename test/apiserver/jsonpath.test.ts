/** The JSONPath subset of printer columns, evaluated like the apiserver's column evaluation. */
import { describe, expect, test } from "bun:test";
import { compileJsonPath } from "./jsonpath.ts";

const fw = {
  metadata: { name: "firewall", creationTimestamp: "2026-01-01T00:00:00Z", labels: { "app.kubernetes.io/name": "fw" } },
  spec: { interval: "10s", internalprefixes: ["10.0.0.0/8", "fd00::/8"], ratelimits: [{ interface: "a", rate: 10 }, { interface: "b", rate: 20 }] },
  status: {
    conditions: [
      { type: "RulesApplied", status: "False" },
      { type: "Ready", status: "True" },
    ],
  },
};

describe("compileJsonPath", () => {
  const cases: [string, unknown[]][] = [
    [".spec.interval", ["10s"]],
    ["{.spec.interval}", ["10s"]],
    ["$.spec.interval", ["10s"]],
    [".spec.internalprefixes", [["10.0.0.0/8", "fd00::/8"]]],
    [".spec.internalprefixes[0]", ["10.0.0.0/8"]],
    [".spec.internalprefixes[-1]", ["fd00::/8"]],
    [".spec.ratelimits[*].rate", [10, 20]],
    [".spec.ratelimits[0:1].interface", ["a"]],
    ['.status.conditions[?(@.type=="Ready")].status', ["True"]],
    [".status.conditions[?(@.type=='RulesApplied')].status", ["False"]],
    ['.status.conditions[?(@.type != "Ready")].type', ["RulesApplied"]],
    [".spec.ratelimits[?(@.rate > 15)].interface", ["b"]],
    [".spec.ratelimits[?(@.rate)].interface", ["a", "b"]],
    [".metadata.labels['app.kubernetes.io/name']", ["fw"]],
    ["..rate", [10, 20]],
    [".status.missing", []],
    [".status.conditions[5].status", []],
    [".spec.interval.deeper", []],
  ];
  test.each(cases)("%s", (path, want) => {
    expect(compileJsonPath(path)(fw)).toEqual(want);
  });

  test("rejects unparsable paths", () => {
    expect(() => compileJsonPath(".a[?(@.b==")).toThrow(/invalid JSONPath/);
    expect(() => compileJsonPath(".a[")).toThrow(/invalid JSONPath/);
  });
});
