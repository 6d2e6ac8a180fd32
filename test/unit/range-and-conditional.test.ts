// Range requests and conditional requests (RFC 9110 §13, §14) as the pure functions the downloads use:
// parsing, HTTP-dates, entity tags, preconditions, and the read they plan. test/http/files-content.test.ts
// runs the same matrices end to end against R2 and D1.
import { describe, expect, it } from "vitest";
import {
  evaluatePreconditions,
  formatHttpDate,
  parseEntityTagList,
  parseHttpDate,
  type Validators,
} from "../../src/http/conditional";
import { ifRangeHolds, parseRange, planRead } from "../../src/http/range";

const LAST_MODIFIED = Date.UTC(1994, 10, 6, 8, 49, 37, 400);
const rep = { size: 100, etag: "abc-2", lastModified: LAST_MODIFIED };
const v: Validators = rep;
const h = (init: Record<string, string>) => new Headers(init);

describe("parseRange", () => {
  it.each([
    ["bytes=0-0", 100, { kind: "range", start: 0, end: 0 }],
    ["bytes=99-", 100, { kind: "range", start: 99, end: 99 }],
    ["bytes=-100", 100, { kind: "range", start: 0, end: 99 }],
    ["bytes=-101", 100, { kind: "range", start: 0, end: 99 }],
    ["bytes=50-1000000000000000000000", 100, { kind: "range", start: 50, end: 99 }],
    ["Bytes=1-2", 100, { kind: "range", start: 1, end: 2 }],
    ["bytes=,1-2,", 100, { kind: "range", start: 1, end: 2 }],
    ["bytes=100-", 100, { kind: "unsatisfiable" }],
    ["bytes=100-50", 100, { kind: "ignore" }],
    ["bytes=-0", 100, { kind: "unsatisfiable" }],
    ["bytes=0-", 0, { kind: "unsatisfiable" }],
    ["bytes=-1", 0, { kind: "ignore" }],
    ["bytes=1-2,3-4", 100, { kind: "ignore" }],
    ["bytes=1 - 2", 100, { kind: "ignore" }],
    ["bytes=", 100, { kind: "ignore" }],
    ["bytes", 100, { kind: "ignore" }],
    ["pages=1-2", 100, { kind: "ignore" }],
    ["bytes=١-٢", 100, { kind: "ignore" }], // non-ASCII digits are not DIGIT
  ] as const)("%j of %i bytes", (header, size, expected) => {
    expect(parseRange(header, size)).toEqual(expected);
  });

  it("ignores a missing header", () => {
    expect(parseRange(null, 10)).toEqual({ kind: "ignore" });
  });
});

describe("HTTP-date", () => {
  it("parses the three forms RFC 9110 §5.6.7 requires", () => {
    const expected = Date.UTC(1994, 10, 6, 8, 49, 37);
    expect(parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT")).toBe(expected);
    expect(parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT", Date.UTC(2026, 0, 1))).toBe(expected);
    expect(parseHttpDate("Sun Nov  6 08:49:37 1994")).toBe(expected);
  });

  it("reads a two-digit year more than 50 years ahead as the previous century", () => {
    const now = Date.UTC(2026, 0, 1);
    expect(new Date(parseHttpDate("Monday, 01-Jan-80 00:00:00 GMT", now)!).getUTCFullYear()).toBe(2080 - 100);
    expect(new Date(parseHttpDate("Saturday, 01-Jan-50 00:00:00 GMT", now)!).getUTCFullYear()).toBe(2050);
  });

  it.each([
    "yesterday",
    "2026-01-01T00:00:00Z",
    "Sun, 06 Nov 1994 08:49:37 UTC",
    "Sun, 6 Nov 1994 08:49:37 GMT",
    "Sun, 31 Feb 1994 08:49:37 GMT",
    "Sun, 06 Nov 1994 24:00:00 GMT",
    "Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT",
    "",
  ])("refuses %j", (value) => {
    expect(parseHttpDate(value)).toBeNull();
  });

  it("formats IMF-fixdate", () => {
    expect(formatHttpDate(LAST_MODIFIED)).toBe("Sun, 06 Nov 1994 08:49:37 GMT");
  });
});

describe("entity tags and preconditions", () => {
  it("parses entity-tag lists per RFC 9110 §8.8.3", () => {
    expect(parseEntityTagList('"a", W/"b" ,"c,d"')).toEqual([
      { weak: false, opaque: "a" },
      { weak: true, opaque: "b" },
      { weak: false, opaque: "c,d" },
    ]);
    expect(parseEntityTagList('""')).toEqual([{ weak: false, opaque: "" }]);
    for (const bad of ["a", '"a', '"a" "b"', 'w/"a"', '"a b"', ""]) expect(parseEntityTagList(bad), bad).toBeNull();
  });

  it("truncates to whole seconds when comparing dates", () => {
    // Last-Modified is 08:49:37.400; the header says 08:49:37.
    expect(evaluatePreconditions("GET", h({ "If-Modified-Since": formatHttpDate(LAST_MODIFIED) }), v)).toBe(304);
    expect(evaluatePreconditions("GET", h({ "If-Unmodified-Since": formatHttpDate(LAST_MODIFIED) }), v)).toBe(
      "proceed",
    );
  });

  it("answers a failed If-None-Match with 412 for methods other than GET and HEAD", () => {
    expect(evaluatePreconditions("GET", h({ "If-None-Match": '"abc-2"' }), v)).toBe(304);
    expect(evaluatePreconditions("DELETE", h({ "If-None-Match": '"abc-2"' }), v)).toBe(412);
    // If-Modified-Since only applies to GET and HEAD.
    expect(evaluatePreconditions("DELETE", h({ "If-Modified-Since": formatHttpDate(LAST_MODIFIED) }), v)).toBe(
      "proceed",
    );
  });

  it("evaluates If-Range by strong tag or exact date", () => {
    expect(ifRangeHolds('"abc-2"', v)).toBe(true);
    expect(ifRangeHolds('W/"abc-2"', v)).toBe(false);
    expect(ifRangeHolds('"abc-2", "x"', v)).toBe(false);
    expect(ifRangeHolds("Sun, 06 Nov 1994 08:49:37 GMT", v)).toBe(true);
    expect(ifRangeHolds("Sun, 06 Nov 1994 08:49:38 GMT", v)).toBe(false);
    expect(ifRangeHolds("not a date", v)).toBe(false);
  });

  it("plans HEAD without ranges, and ranges only after the preconditions", () => {
    expect(planRead("HEAD", h({ Range: "bytes=0-1" }), rep)).toEqual({ status: 200 });
    expect(planRead("GET", h({ Range: "bytes=0-1" }), rep)).toEqual({ status: 206, start: 0, end: 1 });
    expect(planRead("GET", h({ Range: "bytes=500-", "If-Match": '"nope"' }), rep)).toEqual({ status: 412 });
    expect(planRead("GET", h({ Range: "bytes=500-" }), rep)).toEqual({ status: 416 });
  });
});
