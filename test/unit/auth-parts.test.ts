// The pure parts of auth: the key-set format, the JWKS cache lifetime, the upload-token scope and the
// Prefer header that asks for one.
import { describe, expect, it } from "vitest";
import { cacheLifetimeMs } from "../../src/auth/jwks";
import { parseKeySet } from "../../src/auth/key-set";
import { prefersUploadToken, uploadScopeAllows } from "../../src/auth/upload-scope";

describe("parseKeySet", () => {
  it("reads one bare secret whole, even with commas, and lists of kid:secret with the first signing", () => {
    expect(parseKeySet("S", "abc,def", true).keys).toEqual([{ kid: null, secret: "abc,def" }]);
    const set = parseKeySet("S", " k2:new , k1:old:with:colons,bare ", true);
    expect(set.signing).toEqual({ kid: "k2", secret: "new" });
    expect(set.find("k1")?.secret).toBe("old:with:colons");
    expect(set.find(null)?.secret).toBe("bare");
    expect(set.find("k3")).toBeUndefined();
  });

  it("refuses malformed sets without echoing the secret", () => {
    const bad: Array<[string, boolean]> = [
      ["", true],
      ["k1:", true],
      ["k1:a,k1:b", true],
      ["a:b,c:d,x,y", true],
      ["bad kid:secret", true],
      ["plain-secret", false],
      ["l1:a,bare", false],
    ];
    for (const [value, allowBare] of bad) {
      let message = "";
      try {
        parseKeySet("LINK_SIGNING_KEYS", value, allowBare);
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message, value).toMatch(/^LINK_SIGNING_KEYS is malformed: /);
      if (value) expect(message).not.toContain(value);
    }
  });
});

describe("cacheLifetimeMs", () => {
  it("follows max-age within 1 minute to 1 day, 10 minutes by default", () => {
    expect(cacheLifetimeMs(null)).toBe(600_000);
    expect(cacheLifetimeMs("public, max-age=3600")).toBe(3_600_000);
    expect(cacheLifetimeMs("max-age=5")).toBe(60_000);
    expect(cacheLifetimeMs("max-age=999999999")).toBe(86_400_000);
    expect(cacheLifetimeMs("no-store")).toBe(60_000);
    expect(cacheLifetimeMs("public")).toBe(600_000);
    expect(cacheLifetimeMs("s-maxage=30")).toBe(600_000);
  });
});

describe("uploadScopeAllows", () => {
  const id = "0b6f0c1e-3d8a-4c57-9b8e-2f0a1d2c3b4a";
  const other = "9a9a9a9a-3d8a-4c57-9b8e-2f0a1d2c3b4a";

  it("allows the upload's own writes, status, completion and abort on each protocol", () => {
    const allowed: Array<[string, string]> = [
      ["PUT", `/v1/uploads/${id}/parts/1`],
      ["PUT", `/v1/uploads/${id}/parts/10000`],
      ["GET", `/v1/uploads/${id}`],
      ["HEAD", `/v1/uploads/${id}`],
      ["POST", `/v1/uploads/${id}/complete`],
      ["DELETE", `/v1/uploads/${id}`],
      ["PATCH", `/v1/tus/${id}`],
      ["HEAD", `/v1/tus/${id}`],
      ["DELETE", `/v1/tus/${id}`],
      ["PATCH", `/v1/resumable/${id}`],
      ["HEAD", `/v1/resumable/${id}`],
    ];
    for (const [method, path] of allowed) expect(uploadScopeAllows(id, method, path), `${method} ${path}`).toBe(true);
  });

  it("refuses everything else", () => {
    const refused: Array<[string, string]> = [
      ["PUT", `/v1/uploads/${other}/parts/1`],
      ["POST", `/v1/uploads/${id}/parts/1`],
      ["GET", `/v1/uploads/${id}/parts/1`],
      ["GET", `/v1/uploads/${id}/`],
      ["GET", `/v1/uploads/${id}/complete`],
      ["PUT", `/v1/uploads/${id}/parts/1/x`],
      ["GET", "/v1/uploads"],
      ["POST", "/v1/uploads"],
      ["GET", `/v1/tus/${id}`],
      ["POST", `/v1/tus/${id}`],
      ["OPTIONS", `/v1/tus/${id}`],
      ["POST", "/v1/tus"],
      ["GET", `/v1/files/${id}`],
      ["GET", "/v1/usage"],
      ["PATCH", `/v1/uploads/${id}`],
      ["PUT", `/v1/uploads/${id}/parts/1?x=/v1/uploads/${id}`],
    ];
    for (const [method, path] of refused) expect(uploadScopeAllows(id, method, path), `${method} ${path}`).toBe(false);
  });
});

describe("prefersUploadToken", () => {
  it("finds the upload-token preference among others (RFC 7240)", () => {
    expect(prefersUploadToken("upload-token")).toBe(true);
    expect(prefersUploadToken("respond-async, Upload-Token")).toBe(true);
    expect(prefersUploadToken("upload-token; foo=bar")).toBe(true);
    expect(prefersUploadToken(undefined)).toBe(false);
    expect(prefersUploadToken("return=minimal")).toBe(false);
    expect(prefersUploadToken("upload-tokens")).toBe(false);
  });
});
