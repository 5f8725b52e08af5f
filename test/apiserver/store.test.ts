/** The store's resourceVersions and bounded history, which watches resume from. */
import { describe, expect, test } from "bun:test";
import { ApiError } from "./status.ts";
import { Store, type StoreEvent } from "./store.ts";

describe("Store", () => {
  test("every write takes the next global resourceVersion, stamped on the object", () => {
    const s = new Store();
    const a = s.put("b1", { metadata: { name: "a" } });
    const b = s.put("b2", { metadata: { name: "b", namespace: "n" } });
    const a2 = s.put("b1", { metadata: { name: "a" }, x: 1 });
    expect([a, b, a2].map((o) => o.metadata.resourceVersion)).toEqual(["1", "2", "3"]);
    expect(s.resourceVersion).toBe("3");
    const gone = s.remove("b1", undefined, "a");
    expect(gone?.metadata.resourceVersion).toBe("4");
    expect(s.get("b1", undefined, "a")).toBeUndefined();
  });

  test("objects handed out are copies", () => {
    const s = new Store();
    const o = s.put("b", { metadata: { name: "a" }, spec: { x: 1 } });
    (o.spec as { x: number }).x = 2;
    expect(s.get("b", undefined, "a")?.spec).toEqual({ x: 1 });
  });

  test("a subscription replays the changes of its bucket after the resourceVersion, then gets live ones", () => {
    const s = new Store();
    s.put("b", { metadata: { name: "a" } });
    s.put("other", { metadata: { name: "o" } });
    s.put("b", { metadata: { name: "a" }, x: 1 });
    const live: StoreEvent[] = [];
    const sub = s.subscribe("b", 1, (e) => live.push(e));
    expect(sub.replay.map((e) => [e.type, e.rv])).toEqual([["MODIFIED", 3]]);
    s.remove("b", undefined, "a");
    s.put("other", { metadata: { name: "p" } });
    sub.unsubscribe();
    s.put("b", { metadata: { name: "c" } });
    expect(live.map((e) => [e.type, e.rv, e.previous?.metadata.resourceVersion])).toEqual([["DELETED", 4, "3"]]);
  });

  test("the history is bounded: subscribing from before its oldest change is a 410 Expired", () => {
    const s = new Store({ historyLimit: 3 });
    for (let i = 0; i < 5; i++) s.put("b", { metadata: { name: `o${i}` } });
    expect(() => s.subscribe("b", 1, () => {})).toThrow(ApiError);
    try {
      s.subscribe("b", 1, () => {});
    } catch (e) {
      expect((e as ApiError).status()).toMatchObject({ code: 410, reason: "Expired", message: "too old resource version: 1 (3)" });
    }
    expect(s.subscribe("b", 2, () => {}).replay.map((e) => e.rv)).toEqual([3, 4, 5]);
  });

  test("compact() forgets everything before the current resourceVersion", () => {
    const s = new Store();
    s.put("b", { metadata: { name: "a" } });
    s.put("b", { metadata: { name: "b" } });
    s.compact();
    expect(() => s.subscribe("b", 1, () => {})).toThrow(ApiError);
    expect(s.subscribe("b", 2, () => {}).replay).toEqual([]);
  });
});
