// The fields of the resumable-upload draft as Structured Fields (RFC 9651): what parses, what is ignored
// ("Other values MUST cause the entire header field to be ignored"), and what the server serialises.
import { describe, expect, it } from "vitest";
import {
  filenameOfDisposition,
  MAX_APPEND_SIZE,
  reprSha256,
  uploadLimitHeader,
} from "../../src/resumable/resumable-protocol";
import {
  parseBooleanItem,
  parseDictionary,
  parseIntegerItem,
  serializeIntegerDictionary,
} from "../../src/resumable/structured-fields";

describe("Upload-Complete: a Boolean Item", () => {
  it("reads ?0 and ?1, with surrounding spaces and parameters", () => {
    expect(parseBooleanItem("?1")).toBe(true);
    expect(parseBooleanItem("?0")).toBe(false);
    expect(parseBooleanItem("  ?1  ")).toBe(true);
    expect(parseBooleanItem("?1;a=1;b")).toBe(true);
    expect(parseBooleanItem('?0; note="x"')).toBe(false);
  });

  it("ignores every other value", () => {
    for (const v of [undefined, "", "?", "?2", "1", "true", "?1,?0", "?1 ?0", '"?1"', "?1;A=1", "?1;=1", "\t?1"]) {
      expect(parseBooleanItem(v), String(v)).toBeNull();
    }
  });
});

describe("Upload-Offset, Upload-Length, Upload-Draft-Interop-Version: Integer Items", () => {
  it("reads integers of up to 15 digits", () => {
    expect(parseIntegerItem("0")).toBe(0);
    expect(parseIntegerItem("8")).toBe(8);
    expect(parseIntegerItem("007")).toBe(7);
    expect(parseIntegerItem("999999999999999")).toBe(999_999_999_999_999);
    expect(parseIntegerItem("-5")).toBe(-5);
    expect(parseIntegerItem("12;unit=bytes")).toBe(12);
  });

  it("ignores decimals, strings, booleans, 16 digits and junk", () => {
    for (const v of ["1.0", "1.", '"1"', "?1", "1000000000000000", "1e3", "0x10", "1,2", "+1", "- 1", "1 2"]) {
      expect(parseIntegerItem(v), v).toBeNull();
    }
  });
});

describe("Dictionaries (Repr-Digest, Upload-Limit)", () => {
  it("parses byte sequences, integers, flags and inner lists; rejects a trailing comma", () => {
    const dict = parseDictionary("sha-256=:AAEC:, max-size=10,flag;p=1, list=(1 2);q")!;
    expect([...dict.keys()]).toEqual(["sha-256", "max-size", "flag", "list"]);
    expect(dict.get("sha-256")).toMatchObject({ value: { type: "bytes", value: new Uint8Array([0, 1, 2]) } });
    expect(dict.get("max-size")).toMatchObject({ value: { type: "integer", value: 10 } });
    expect(dict.get("flag")).toMatchObject({ value: { type: "boolean", value: true } });
    expect(dict.get("list")).toMatchObject({ items: [{ value: { value: 1 } }, { value: { value: 2 } }] });
    expect(parseDictionary("a=1,")).toBeNull();
    expect(parseDictionary("A=1")).toBeNull();
    expect(parseDictionary("a=:not base64!:")).toBeNull();
  });

  it("serialises Upload-Limit as a Dictionary of Integers that parses back", () => {
    const field = uploadLimitHeader({ maxSize: 5 * 1024 ** 3, maxAge: 86_400 });
    expect(field).toBe(`max-size=5368709120, max-append-size=${MAX_APPEND_SIZE}, max-age=86400`);
    const parsed = parseDictionary(field)!;
    expect([...parsed.entries()].map(([k, m]) => [k, "value" in m ? m.value.value : null])).toEqual([
      ["max-size", 5368709120],
      ["max-append-size", MAX_APPEND_SIZE],
      ["max-age", 86400],
    ]);
    expect(uploadLimitHeader({ maxAge: -3 })).toBe(`max-append-size=${MAX_APPEND_SIZE}, max-age=0`);
    expect(() => serializeIntegerDictionary([["Bad", 1]])).toThrow();
    expect(() => serializeIntegerDictionary([["a", 1e16]])).toThrow();
  });

  it("Repr-Digest: the sha-256 member as hex; other algorithms and malformed fields ignored", async () => {
    const bytes = new TextEncoder().encode("hello");
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    const b64 = btoa(String.fromCharCode(...digest));
    const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    expect(reprSha256(`sha-512=:${btoa("x".repeat(64))}:, sha-256=:${b64}:`)).toBe(hex);
    expect(reprSha256(`sha-256=:${b64.replace(/=+$/, "")}:`)).toBe(hex);
    expect(reprSha256(`sha-512=:${btoa("x".repeat(64))}:`)).toBeNull();
    expect(reprSha256("sha-256=abc")).toBeNull();
    expect(reprSha256("not a dictionary")).toBeNull();
    expect(reprSha256(undefined)).toBeNull();
    expect(() => reprSha256(`sha-256=:${btoa("short")}:`)).toThrow();
  });
});

describe("Content-Disposition filename (RFC 6266, RFC 8187)", () => {
  it("prefers filename*, decodes it, falls back to filename", () => {
    expect(filenameOfDisposition(`inline; filename="a.txt"; filename*=UTF-8''%E2%82%AC%20rates.txt`)).toBe(
      "€ rates.txt",
    );
    expect(filenameOfDisposition(`inline; filename*=utf-8'en'x.bin`)).toBe("x.bin");
    expect(filenameOfDisposition(`attachment; filename="say \\"hi\\".txt"`)).toBe('say "hi".txt');
    expect(filenameOfDisposition("inline; filename=plain.txt")).toBe("plain.txt");
    expect(filenameOfDisposition(`inline; filename="ok.txt"; filename*=UTF-8''%E2%82`)).toBe("ok.txt");
    expect(filenameOfDisposition("inline")).toBeNull();
    expect(filenameOfDisposition(undefined)).toBeNull();
  });
});
