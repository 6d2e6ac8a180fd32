// Unit tests of the pure modules behind the Files API: Range, conditionals, Content-Disposition, link
// signatures and cursors. The route tests exercise the same rules end to end against R2 and D1.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { type LinkClaims, signLink, verifyLink } from "../../src/files/signed-links";
import {
  evaluatePreconditions,
  formatHttpDate,
  parseEntityTagList,
  parseHttpDate,
  type Validators,
} from "../../src/http/conditional";
import { contentDisposition, sanitizeFilename } from "../../src/http/content-disposition";
import { decodeCursor, encodeCursor } from "../../src/http/pagination";
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

describe("Content-Disposition", () => {
  it("never lets a control character, quote or backslash through", () => {
    for (let code = 0; code < 0xa0; code++) {
      const ch = String.fromCharCode(code);
      const header = contentDisposition(`a${ch}b.txt`);
      expect(header, `U+${code.toString(16)}`).not.toMatch(/[\x00-\x1f\x7f\\]/);
      expect(header.match(/"/g)?.length, `U+${code.toString(16)}`).toBe(2);
    }
  });

  it("drops bidirectional overrides and survives lone surrogates", () => {
    expect(sanitizeFilename("evil\u202Efdp.exe")).toBe("evilfdp.exe");
    expect(contentDisposition("x\uD800y")).toBe(`attachment; filename="x_y"; filename*=UTF-8''x%EF%BF%BDy`);
  });

  it("percent-encodes everything outside attr-char in filename*", () => {
    expect(contentDisposition("a'b(c)*é")).toBe(
      `attachment; filename="a'b(c)*_"; filename*=UTF-8''a%27b%28c%29%2A%C3%A9`,
    );
    expect(contentDisposition("😀")).toBe(`attachment; filename="_"; filename*=UTF-8''%F0%9F%98%80`);
  });
});

describe("link signatures", () => {
  const claims: LinkClaims = { fileId: "f-1", userId: "alice", expiresAt: 2_000_000_000, scope: "GET" };

  it("verifies its own signature and nothing else", async () => {
    const sig = await signLink(env.AUTH_SECRET, claims);
    expect(sig).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await verifyLink(env.AUTH_SECRET, claims, sig)).toBe(true);
    expect(await verifyLink("another secret", claims, sig)).toBe(false);
    expect(await verifyLink(env.AUTH_SECRET, { ...claims, fileId: "f-2" }, sig)).toBe(false);
    expect(await verifyLink(env.AUTH_SECRET, { ...claims, userId: "bob" }, sig)).toBe(false);
    expect(await verifyLink(env.AUTH_SECRET, { ...claims, expiresAt: claims.expiresAt + 1 }, sig)).toBe(false);
    expect(await verifyLink(env.AUTH_SECRET, claims, `${sig}A`)).toBe(false);
    expect(
      await verifyLink(
        env.AUTH_SECRET,
        claims,
        sig.replace(/^./, (c) => (c === "A" ? "B" : "A")),
      ),
    ).toBe(false);
    expect(await verifyLink(env.AUTH_SECRET, claims, "not base64!")).toBe(false);
  });

  it("does not sign with the raw secret (the key is HKDF-derived)", async () => {
    const raw = await crypto.subtle.importKey(
      "raw",
      new TextEncoder().encode(env.AUTH_SECRET),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    const data = new TextEncoder().encode(["dl1", "GET", "f-1", "alice", "2000000000"].join("\n"));
    const rawSig = new Uint8Array(await crypto.subtle.sign("HMAC", raw, data));
    const b64 = btoa(String.fromCharCode(...rawSig))
      .replace(/\+/g, "-")
      .replace(/\//g, "_")
      .replace(/=+$/, "");
    expect(await signLink(env.AUTH_SECRET, claims)).not.toBe(b64);
  });
});

describe("cursors", () => {
  it("round-trips and is bound to its listing", () => {
    const cursor = encodeCursor("files", { time: 123, id: "ü-id" });
    expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeCursor("files", cursor)).toEqual({ time: 123, id: "ü-id" });
    expect(() => decodeCursor("audit", cursor)).toThrow(/cursor/);
  });
});
