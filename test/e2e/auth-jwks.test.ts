// Auth from an existing identity provider and key rotation, through a real wrangler dev (docs/auth.md):
// a JWKS served by this process over node:http, RS256 / ES256 / EdDSA tokens from it, an AUTH_SECRET
// rotated with two kids across restarts on the same state, download links that outlive the rotation,
// and a browser-style upload made with nothing but an upload token.
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CryptoKey, exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DevServer, startDevServer } from "./harness.ts";

const ISSUER = "https://idp.example";
const AUDIENCE = "durable-uploads-e2e";
const OLD_SECRET = randomBytes(32).toString("base64url");
const NEW_SECRET = randomBytes(32).toString("base64url");
const LINK_KEYS = `l1:${randomBytes(32).toString("base64url")}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface IdpKey {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
  jwk: JWK;
}

async function idpKey(kid: string, alg: "RS256" | "ES256" | "EdDSA"): Promise<IdpKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { crv: alg === "EdDSA" ? "Ed25519" : undefined });
  return { kid, alg, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } };
}

/** A token the identity provider would issue. */
function idpToken(key: IdpKey, sub: string, claims: { iss?: string; aud?: string; kid?: string } = {}) {
  return new SignJWT({ sub })
    .setProtectedHeader({ alg: key.alg, kid: claims.kid ?? key.kid, typ: "JWT" })
    .setIssuer(claims.iss ?? ISSUER)
    .setAudience(claims.aud ?? AUDIENCE)
    .setIssuedAt()
    .setExpirationTime("10m")
    .sign(key.privateKey);
}

/** An HS256 token under one AUTH_SECRET entry, as the app's backend would mint it. */
function hs256(sub: string, secret: string, kid: string) {
  return new SignJWT({ sub })
    .setProtectedHeader({ alg: "HS256", typ: "JWT", kid })
    .setIssuedAt()
    .setExpirationTime("10m")
    .sign(new TextEncoder().encode(secret));
}

describe("auth from a JWKS, key rotation and upload tokens, end to end", () => {
  const keys: IdpKey[] = [];
  let published: IdpKey[] = [];
  let jwksRequests = 0;
  let jwks: Server;
  let jwksUrl: string;
  const stateDir = mkdtempSync(join(tmpdir(), "durable-uploads-e2e-auth-"));
  let server: DevServer | undefined;

  const start = async (authSecret: string) => {
    await server?.stop();
    server = await startDevServer({
      persistDir: stateDir,
      vars: {
        AUTH_SECRET: authSecret,
        LINK_SIGNING_KEYS: LINK_KEYS,
        JWKS_URL: jwksUrl,
        JWT_ISSUER: ISSUER,
        JWT_AUDIENCE: AUDIENCE,
      },
    });
    return server;
  };
  const usage = (token: string) => server!.fetch("/v1/usage", { token });

  beforeAll(async () => {
    keys.push(await idpKey("rsa-1", "RS256"), await idpKey("ec-1", "ES256"), await idpKey("ed-1", "EdDSA"));
    published = keys.slice(0, 2);
    jwks = createServer((_req, res) => {
      jwksRequests++;
      res.writeHead(200, { "Content-Type": "application/jwk-set+json", "Cache-Control": "max-age=600" });
      res.end(JSON.stringify({ keys: published.map((k) => k.jwk) }));
    });
    await new Promise<void>((resolve) => jwks.listen(0, "127.0.0.1", resolve));
    const address = jwks.address();
    if (!address || typeof address !== "object") throw new Error("no JWKS port");
    jwksUrl = `http://127.0.0.1:${address.port}/.well-known/jwks.json`;
  });

  afterAll(async () => {
    await server?.stop();
    await new Promise((resolve) => jwks?.close(resolve));
    rmSync(stateDir, { recursive: true, force: true });
  });

  // Shared between the steps, which run in order on one state directory.
  let fetchedAt = 0;
  let linkPath = "";
  let linkBytes: Buffer;
  let oldKidToken = "";

  // Tests that (re)start wrangler dev get room for slow starts on a busy machine.
  const RESTARTS = { timeout: 360_000 };

  it("authenticates RS256 and ES256 tokens against the JWKS, checking iss and aud", RESTARTS, async () => {
    await start(`k1:${OLD_SECRET}`);
    const [rsa, ec] = keys;
    const first = await usage(await idpToken(rsa, "idp-alice"));
    expect(first.status, server!.output()).toBe(200);
    fetchedAt = Date.now();
    expect(jwksRequests).toBe(1);
    expect((await usage(await idpToken(ec, "idp-bob"))).status).toBe(200);
    // Cached: the second key came from the same fetch.
    expect(jwksRequests).toBe(1);
    expect((await usage(await idpToken(rsa, "idp-alice", { iss: "https://evil.example" }))).status).toBe(401);
    expect((await usage(await idpToken(rsa, "idp-alice", { aud: "someone-else" }))).status).toBe(401);
    // A JWKS key never verifies an HS256 token, whatever its kid says.
    expect((await usage(await hs256("idp-alice", OLD_SECRET, "rsa-1"))).status).toBe(401);
  });

  it("refreshes on an unknown kid at most once per cooldown, so bogus kids cannot hammer the IdP", async () => {
    const [rsa, , ed] = keys;
    published = keys; // the IdP rotates the EdDSA key in
    // Right after a fetch, an unknown kid is refused without asking the IdP again.
    const bogus = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => usage(await idpToken(rsa, "idp-mallory", { kid: `bogus-${i}` }))),
    );
    expect(bogus.map((r) => r.status)).toEqual(Array(10).fill(401));
    expect((await usage(await idpToken(ed, "idp-carol"))).status).toBe(401);
    expect(jwksRequests).toBe(1);
    // Once the cooldown (30 s) has passed, the unknown kid triggers one refresh, and the new key works.
    await sleep(Math.max(0, fetchedAt + 31_000 - Date.now()));
    expect((await usage(await idpToken(ed, "idp-carol"))).status).toBe(200);
    expect(jwksRequests).toBe(2);
    expect((await usage(await idpToken(rsa, "idp-alice", { kid: "still-bogus" }))).status).toBe(401);
    expect(jwksRequests).toBe(2);
  });

  it("uploads a file from a browser holding only an upload token, which every other route refuses", async () => {
    const backend = await idpToken(keys[0], "idp-alice");
    linkBytes = randomBytes(300_000);
    const sha256 = createHash("sha256").update(linkBytes).digest("hex");
    const origin = "https://app.example";
    // The app's backend creates the upload with the user's token and hands the upload token over.
    const createdRes = await server!.fetch("/v1/uploads", {
      method: "POST",
      token: backend,
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ filename: "photo.bin", size: linkBytes.length, sha256, uploadToken: true }),
    });
    expect(createdRes.status).toBe(201);
    const created = (await createdRes.json()) as any;
    const token: string = created.uploadToken.token;
    const other = (await (
      await server!.fetch("/v1/uploads", {
        method: "POST",
        token: backend,
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ filename: "other.bin", size: 10 }),
      })
    ).json()) as any;

    // The browser: a CORS preflight (no credentials), then the part and the completion.
    const preflight = await server!.fetch(`/v1/uploads/${created.uploadId}/parts/1`, {
      method: "OPTIONS",
      headers: {
        Origin: origin,
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "authorization",
      },
    });
    expect(preflight.status).toBeLessThan(300);
    const part = await server!.fetch(`/v1/uploads/${created.uploadId}/parts/1`, {
      method: "PUT",
      token,
      headers: { Origin: origin },
      body: new Uint8Array(linkBytes),
    });
    expect(part.status).toBe(200);
    expect(part.headers.get("Access-Control-Allow-Origin")).toBeTruthy();
    const done = await server!.fetch(`/v1/uploads/${created.uploadId}/complete`, {
      method: "POST",
      token,
      headers: { Origin: origin },
    });
    expect(done.status).toBe(200);
    const { file } = (await done.json()) as any;
    expect(file).toMatchObject({ size: linkBytes.length, sha256 });

    const refusals: Array<[string, RequestInit]> = [
      ["/v1/usage", {}],
      ["/v1/files", {}],
      [`/v1/files/${file.id}/content`, {}],
      [`/v1/files/${file.id}/links`, { method: "POST", body: JSON.stringify({ expiresIn: 60 }) }],
      ["/v1/uploads", {}],
      ["/v1/uploads", { method: "POST", body: JSON.stringify({ filename: "x", size: 1 }) }],
      [`/v1/uploads/${other.uploadId}`, {}],
      [`/v1/uploads/${other.uploadId}/parts/1`, { method: "PUT", body: "0123456789" }],
      [`/v1/uploads/${other.uploadId}/complete`, { method: "POST" }],
      [`/v1/uploads/${other.uploadId}`, { method: "DELETE" }],
      ["/v1/audit", {}],
      ["/v1/tus", { method: "POST", headers: { "Tus-Resumable": "1.0.0", "Upload-Length": "1" } }],
    ];
    for (const [path, init] of refusals) {
      const res = await server!.fetch(path, {
        ...init,
        token,
        headers: { "Content-Type": "application/json", ...(init.headers as Record<string, string>) },
      });
      expect(res.status, `${init.method ?? "GET"} ${path}`).toBe(403);
      expect(((await res.json()) as any).error.code).toBe("token_scope");
    }
    // The owner's own token reads the file the browser uploaded, and makes a link to it.
    const download = await server!.fetch(`/v1/files/${file.id}/content`, { token: backend });
    expect(Buffer.from(await download.arrayBuffer()).equals(linkBytes)).toBe(true);
    const link = (await (
      await server!.fetch(`/v1/files/${file.id}/links`, {
        method: "POST",
        token: backend,
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ expiresIn: 3600 }),
      })
    ).json()) as any;
    const url = new URL(link.url);
    expect(url.searchParams.get("kid")).toBe("l1");
    linkPath = `${url.pathname}${url.search}`;
    expect((await server!.fetch(linkPath)).status).toBe(200);
  });

  it(
    "rotates AUTH_SECRET with two kids: old tokens work until the old kid goes; links are untouched",
    RESTARTS,
    async () => {
      oldKidToken = await hs256("rotating-user", OLD_SECRET, "k1");
      expect((await usage(oldKidToken)).status).toBe(200);

      // Step 1 of the runbook: the new secret goes first (it signs), the old one stays (it verifies).
      await start(`k2:${NEW_SECRET},k1:${OLD_SECRET}`);
      expect((await usage(oldKidToken)).status).toBe(200);
      const issued = await server!.fetch("/v1/admin/users/rotating-user/tokens", {
        method: "POST",
        headers: { Authorization: `Bearer ${server!.adminToken}`, "Content-Type": "application/json" },
        body: JSON.stringify({ ttlSeconds: 600 }),
      });
      expect(issued.status).toBe(201);
      const newKidToken = ((await issued.json()) as any).token as string;
      expect(JSON.parse(Buffer.from(newKidToken.split(".")[0], "base64url").toString()).kid).toBe("k2");
      expect((await usage(newKidToken)).status).toBe(200);
      // The link made before the rotation still downloads the same bytes.
      const during = await server!.fetch(linkPath);
      expect(during.status).toBe(200);
      expect(Buffer.from(await during.arrayBuffer()).equals(linkBytes)).toBe(true);

      // Step 2: once the old tokens have expired (here: at once), the old kid is removed.
      await start(`k2:${NEW_SECRET}`);
      const refused = await usage(oldKidToken);
      expect(refused.status).toBe(401);
      expect((await usage(newKidToken)).status).toBe(200);
      expect((await server!.fetch(linkPath)).status).toBe(200);
      // The IdP's tokens never depended on AUTH_SECRET.
      expect((await usage(await idpToken(keys[1], "idp-bob"))).status).toBe(200);
    },
  );
});
