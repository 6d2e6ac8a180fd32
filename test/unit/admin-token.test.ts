// The pure halves of admin auth: how a presented token is compared and how an operator is named in the
// settings history. test/http/admin-auth.test.ts covers the same guard through every admin route.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { adminFingerprint, tokensEqual } from "../../src/admin/admin-auth";

describe("admin token", () => {
  it("compares tokens by digest, whatever their lengths", async () => {
    expect(await tokensEqual(env.ADMIN_TOKEN, env.ADMIN_TOKEN)).toBe(true);
    expect(await tokensEqual("", env.ADMIN_TOKEN)).toBe(false);
    expect(await tokensEqual("a".repeat(10_000), env.ADMIN_TOKEN)).toBe(false);
  });

  it("fingerprints a token as token:<12 hex digits of its SHA-256>", async () => {
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode("abc")));
    const hex = [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
    expect(hex.startsWith("ba7816bf8f01")).toBe(true); // the FIPS 180-2 test vector for "abc"
    expect(await adminFingerprint("abc")).toBe("token:ba7816bf8f01");
  });
});
