// The opaque cursors of paginated listings: round-trip, URL-safe, and refused by any other listing.
import { describe, expect, it } from "vitest";
import { decodeCursor, encodeCursor } from "../../src/http/pagination";

describe("cursors", () => {
  it("round-trips and is bound to its listing", () => {
    const cursor = encodeCursor("files", { time: 123, id: "ü-id" });
    expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeCursor("files", cursor)).toEqual({ time: 123, id: "ü-id" });
    expect(() => decodeCursor("audit", cursor)).toThrow(/cursor/);
  });
});
