import { describe, expect, test } from "bun:test";
import { dropLogSource } from "../../lib/droptailer/source.ts";

describe("drop log source", () => {
  test("auto reads the journal where journald runs, else /dev/kmsg; a flag forces one", () => {
    expect(dropLogSource("auto", () => true)).toBe("journal");
    expect(dropLogSource("auto", () => false)).toBe("kmsg");
    expect(dropLogSource("kmsg", () => true)).toBe("kmsg");
    expect(dropLogSource("journal", () => false)).toBe("journal");
  });
});
