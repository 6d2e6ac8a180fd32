// The Content-Disposition of downloads: a filename from a user can carry anything, and the header must
// stay one safe, parseable line (RFC 6266, RFC 8187) whatever it is.
import { describe, expect, it } from "vitest";
import { contentDisposition, dispositionFilename } from "../../src/http/content-disposition";

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
    expect(dispositionFilename("evil\u202Efdp.exe")).toBe("evilfdp.exe");
    expect(contentDisposition("x\uD800y")).toBe(`attachment; filename="x_y"; filename*=UTF-8''x%EF%BF%BDy`);
  });

  it("percent-encodes everything outside attr-char in filename*", () => {
    expect(contentDisposition("a'b(c)*é")).toBe(
      `attachment; filename="a'b(c)*_"; filename*=UTF-8''a%27b%28c%29%2A%C3%A9`,
    );
    expect(contentDisposition("😀")).toBe(`attachment; filename="_"; filename*=UTF-8''%F0%9F%98%80`);
  });
});
