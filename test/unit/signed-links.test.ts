// Signatures of download links: bound to every claim, keyed by a key derived from AUTH_SECRET rather than
// the secret itself. test/http/links.test.ts covers the links through the Worker.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { type LinkClaims, signLink, verifyLink } from "../../src/files/signed-links";

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
