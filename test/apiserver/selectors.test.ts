/** Label and field selectors as list and watch accept them. */
import { describe, expect, test } from "bun:test";
import { parseFieldSelector, parseLabelSelector } from "./selectors.ts";
import { ApiError } from "./status.ts";

const obj = (labels: Record<string, string>) => ({ metadata: { name: "x", namespace: "firewall", labels } });

describe("label selectors", () => {
  const cases: [string, Record<string, string>, boolean][] = [
    ["", {}, true],
    ["app=web", { app: "web" }, true],
    ["app==web", { app: "web" }, true],
    ["app=web", { app: "db" }, false],
    ["app!=web", { app: "db" }, true],
    ["app!=web", {}, true],
    ["app in (web, db)", { app: "db" }, true],
    ["app in (web,db)", { app: "x" }, false],
    ["app notin (web)", {}, true],
    ["app notin (web)", { app: "web" }, false],
    ["app", { app: "" }, true],
    ["!app", { app: "x" }, false],
    ["!app", {}, true],
    ["app=web,tier in (a,b),!legacy", { app: "web", tier: "b" }, true],
    ["app=web,tier in (a,b),!legacy", { app: "web", tier: "b", legacy: "1" }, false],
    ["kubernetes.io/service-name=nftables-exporter", { "kubernetes.io/service-name": "nftables-exporter" }, true],
    ["rank>5", { rank: "7" }, true],
    ["rank<5", { rank: "7" }, false],
  ];
  test.each(cases)("%j on %j matches: %p", (sel, labels, want) => {
    expect(parseLabelSelector(sel)(obj(labels))).toBe(want);
  });

  test("bad syntax is a 400 BadRequest", () => {
    expect(() => parseLabelSelector("app=web,=x")).toThrow(ApiError);
    expect(() => parseLabelSelector("a b c")).toThrow(ApiError);
  });
});

describe("field selectors", () => {
  const event = { metadata: { name: "e", namespace: "firewall" }, involvedObject: { kind: "Firewall", name: "firewall", uid: "u-1" }, count: 3 };
  const cases: [string, boolean][] = [
    ["metadata.name=e", true],
    ["metadata.namespace==firewall", true],
    ["metadata.name!=e", false],
    ["involvedObject.kind=Firewall,involvedObject.name=firewall,involvedObject.uid=u-1", true],
    ["involvedObject.uid=other", false],
    ["count=3", true],
    ["involvedObject.fieldPath=", true],
    ["metadata.name=a\\,b", false],
  ];
  test.each(cases)("%s: %p", (sel, want) => {
    expect(parseFieldSelector(sel)(event)).toBe(want);
  });

  test("escaped commas belong to the value", () => {
    expect(parseFieldSelector("metadata.name=a\\,b")({ metadata: { name: "a,b" } })).toBe(true);
  });
});
