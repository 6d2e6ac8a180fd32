// Key sets (docs/auth.md): several HS256 secrets at once selected by kid, the algorithm allow-list, and
// download links signed with their own key set. Each case runs the real app with AUTH_SECRET /
// LINK_SIGNING_KEYS set as the operator would during a rotation (same real bindings).
import { env } from "cloudflare:test";
import { decodeProtectedHeader, generateKeyPair, SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { createApp } from "../../src/http/app";
import { adminHeaders, callWithVars, seedFile, tokenFor } from "../support/http";

const OLD = "old-secret-0123456789abcdefghijklmn";
const NEW = "new-secret-0123456789abcdefghijklmn";
const LEGACY = "legacy-secret-0123456789abcdefghij";

/** An HS256 user token for `sub`, signed with `secret`, with `kid` in the header when given. */
async function hs256(sub: string, secret: string, kid?: string, ttl = 600): Promise<string> {
  return new SignJWT({ sub })
    .setProtectedHeader({ alg: "HS256", typ: "JWT", ...(kid ? { kid } : {}) })
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttl)
    .sign(new TextEncoder().encode(secret));
}

const usage = (api: ReturnType<typeof callWithVars>, token: string) => api("/v1/usage", { token });

describe("HS256 secrets selected by kid", () => {
  it("keeps old-kid tokens valid through a rotation until the old secret is removed", async () => {
    const before = callWithVars({ AUTH_SECRET: `k1:${OLD}` });
    const during = callWithVars({ AUTH_SECRET: `k2:${NEW},k1:${OLD}` });
    const after = callWithVars({ AUTH_SECRET: `k2:${NEW}` });
    const oldToken = await hs256("rot-user", OLD, "k1");
    const newToken = await hs256("rot-user", NEW, "k2");

    expect((await usage(before, oldToken)).status).toBe(200);
    expect((await usage(before, newToken)).status).toBe(401);
    // Both kids verify while both secrets are configured.
    expect((await usage(during, oldToken)).status).toBe(200);
    expect((await usage(during, newToken)).status).toBe(200);
    // Removing k1 ends its tokens, and only those.
    const refused = await usage(after, oldToken);
    expect(refused.status).toBe(401);
    expect(refused.body.error.code).toBe("unauthorized");
    expect(refused.headers.get("WWW-Authenticate")).toContain('error="invalid_token"');
    expect((await usage(after, newToken)).status).toBe(200);
  });

  it("refuses an unknown kid, another kid's secret, and a kid-less token without a bare secret", async () => {
    const api = callWithVars({ AUTH_SECRET: `k2:${NEW},k1:${OLD}` });
    expect((await usage(api, await hs256("kid-user", NEW, "k9"))).status).toBe(401);
    expect((await usage(api, await hs256("kid-user", OLD, "k2"))).status).toBe(401);
    expect((await usage(api, await hs256("kid-user", NEW))).status).toBe(401);
  });

  it("still accepts kid-less tokens of the old single secret kept as a bare entry", async () => {
    const api = callWithVars({ AUTH_SECRET: `k2:${NEW},${LEGACY}` });
    expect((await usage(api, await hs256("legacy-user", LEGACY))).status).toBe(200);
    expect((await usage(api, await hs256("legacy-user", NEW, "k2"))).status).toBe(200);
    // The bare secret is not reachable through a kid, nor a kid's secret without one.
    expect((await usage(api, await hs256("legacy-user", NEW))).status).toBe(401);
    // The plain one-secret form (the test config's) keeps working as before.
    expect((await usage(callWithVars({}), await tokenFor("legacy-user"))).status).toBe(200);
  });

  it("issues admin tokens with the newest kid", async () => {
    const api = callWithVars({ AUTH_SECRET: `k2:${NEW},k1:${OLD}` });
    const issued = await api("/v1/admin/users/issued-user/tokens", {
      method: "POST",
      headers: adminHeaders(),
      json: { ttlSeconds: 600 },
    });
    expect(issued.status).toBe(201);
    expect(decodeProtectedHeader(issued.body.token)).toMatchObject({ alg: "HS256", kid: "k2" });
    expect((await usage(api, issued.body.token)).status).toBe(200);
    // Once k2 is gone, so is the token.
    expect((await usage(callWithVars({ AUTH_SECRET: `k1:${OLD}` }), issued.body.token)).status).toBe(401);
  });

  it("answers a malformed AUTH_SECRET as a server error, never as a valid token", async () => {
    const api = callWithVars({ AUTH_SECRET: `k1:${OLD},k1:${NEW}` });
    const res = await usage(api, await hs256("cfg-user", OLD, "k1"));
    expect(res.status).toBe(500);
    expect(res.body.error.code).toBe("internal_error");
  });
});

describe("the algorithm allow-list", () => {
  const api = callWithVars({});

  it("refuses alg none, other HMACs, and asymmetric tokens while JWKS_URL is off", async () => {
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const claims = { sub: "alg-user", exp: Math.floor(Date.now() / 1000) + 600 };
    const none = `${b64({ alg: "none", typ: "JWT" })}.${b64(claims)}.`;
    expect((await usage(api, none)).status).toBe(401);
    // Even with some signature bytes, `none` is never an accepted algorithm.
    expect((await usage(api, `${b64({ alg: "none" })}.${b64(claims)}.AAAA`)).status).toBe(401);
    const hs384 = await new SignJWT(claims)
      .setProtectedHeader({ alg: "HS384" })
      .sign(new TextEncoder().encode(env.AUTH_SECRET));
    expect((await usage(api, hs384)).status).toBe(401);
    const { privateKey } = await generateKeyPair("ES256");
    const es256 = await new SignJWT(claims).setProtectedHeader({ alg: "ES256", kid: "idp-1" }).sign(privateKey);
    const refused = await usage(api, es256);
    expect(refused.status).toBe(401);
    expect(refused.body.error.message).toContain("ES256");
  });

  it("answers 503 auth_unavailable when the JWKS cannot be fetched; HS256 tokens never need it", async () => {
    // Nothing listens on port 9 (discard): the fetch fails at once.
    const jwks = callWithVars({ JWKS_URL: "http://127.0.0.1:9/.well-known/jwks.json" });
    const { privateKey } = await generateKeyPair("RS256");
    const token = await new SignJWT({ sub: "jwks-down" })
      .setProtectedHeader({ alg: "RS256", kid: "idp-1" })
      .setExpirationTime("5m")
      .sign(privateKey);
    for (let i = 0; i < 2; i++) {
      const res = await usage(jwks, token);
      expect(res.status).toBe(503);
      expect(res.body.error.code).toBe("auth_unavailable");
      expect(res.headers.get("Retry-After")).toBe("30");
    }
    // HS256 tokens never consult the JWKS.
    expect((await usage(jwks, await tokenFor("jwks-down"))).status).toBe(200);
  });

  it("refuses a signature with non-zero spare bits (one token, one spelling)", async () => {
    const token = await tokenFor("canon-user");
    expect((await usage(api, token)).status).toBe(200);
    // An HS256 signature is 32 bytes: 43 characters, whose last carries 2 spare bits decoders ignore.
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const last = alphabet.indexOf(token.at(-1) as string);
    const twin = token.slice(0, -1) + alphabet[last | 1];
    expect(twin).not.toBe(token);
    expect((await usage(api, twin)).status).toBe(401);
  });

  it("refuses an expiry beyond MAX_TOKEN_LIFETIME_SECONDS and a token without one", async () => {
    expect((await usage(api, await hs256("exp-user", env.AUTH_SECRET, undefined, 40 * 86_400))).status).toBe(401);
    const noExp = await new SignJWT({ sub: "exp-user" })
      .setProtectedHeader({ alg: "HS256" })
      .sign(new TextEncoder().encode(env.AUTH_SECRET));
    expect((await usage(api, noExp)).status).toBe(401);
  });
});

describe("download links signed with their own key set", () => {
  /** A link download through the app configured with `vars`: the status, and the error code if any. */
  async function download(vars: Partial<Record<keyof Env, string>>, link: string) {
    const res = await createApp().request(`https://uploads.test${link}`, {}, { ...env, ...vars } as Env);
    const text = await res.text();
    return { status: res.status, code: res.status >= 400 ? JSON.parse(text).error.code : null, text };
  }

  /** Creates a link as `user` through the app configured with `vars`; returns its path and query. */
  async function linkFor(vars: Partial<Record<keyof Env, string>>, user: string, fileId: string, token?: string) {
    const created = await callWithVars(vars)(`/v1/files/${fileId}/links`, {
      method: "POST",
      token: token ?? (await tokenFor(user)),
      json: { expiresIn: 600 },
    });
    expect(created.status).toBe(201);
    const url = new URL(created.body.url);
    return `${url.pathname}${url.search}`;
  }

  it("keeps old links valid while two link kids are configured, and ends them when the old one goes", async () => {
    const user = "link-rotation";
    const file = await seedFile(user, { body: new Uint8Array(64), filename: "a.bin", mimeType: "image/png" });
    const base = { AUTH_SECRET: env.AUTH_SECRET };
    const oldLink = await linkFor({ ...base, LINK_SIGNING_KEYS: "l1:link-key-one-0123456789" }, user, file.id);
    expect(new URL(oldLink, "https://x").searchParams.get("kid")).toBe("l1");

    const rotating = { ...base, LINK_SIGNING_KEYS: "l2:link-key-two-0123456789,l1:link-key-one-0123456789" };
    const newLink = await linkFor(rotating, user, file.id);
    expect(new URL(newLink, "https://x").searchParams.get("kid")).toBe("l2");
    expect((await download(rotating, oldLink)).status).toBe(200);
    expect((await download(rotating, newLink)).status).toBe(200);

    const rotated = { ...base, LINK_SIGNING_KEYS: "l2:link-key-two-0123456789" };
    expect(await download(rotated, oldLink)).toMatchObject({ status: 403, code: "link_invalid" });
    expect((await download(rotated, newLink)).status).toBe(200);
  });

  it("leaves links alone when the auth secret is rotated", async () => {
    const user = "link-auth-rotation";
    const file = await seedFile(user, { body: new Uint8Array(64), filename: "b.bin", mimeType: "image/png" });
    const keys = { LINK_SIGNING_KEYS: "l1:link-key-one-0123456789" };
    const link = await linkFor({ ...keys, AUTH_SECRET: `k1:${OLD}` }, user, file.id, await hs256(user, OLD, "k1"));
    expect((await download({ ...keys, AUTH_SECRET: `k2:${NEW}` }, link)).status).toBe(200);
  });

  it("verifies kid-less links of the legacy key and refuses a kid that names no key", async () => {
    const user = "link-legacy";
    const file = await seedFile(user, { body: new Uint8Array(64), filename: "c.bin", mimeType: "image/png" });
    // Without LINK_SIGNING_KEYS, links are made the old way: no kid, keyed by AUTH_SECRET.
    const legacy = await linkFor({ LINK_SIGNING_KEYS: "" }, user, file.id);
    expect(new URL(legacy, "https://x").searchParams.has("kid")).toBe(false);
    expect((await download({}, legacy)).status).toBe(200);
    // A kid the set lacks, or an empty one, is an invalid link (never a fallback to another key).
    const keyed = await linkFor({}, user, file.id);
    for (const kid of ["nope", ""]) {
      const url = new URL(keyed, "https://x");
      url.searchParams.set("kid", kid);
      const res = await download({}, `${url.pathname}${url.search}`);
      expect(res, `kid ${JSON.stringify(kid)}`).toMatchObject({ status: 403, code: "link_invalid" });
    }
    // Dropping the kid from a keyed link makes it a legacy link, whose key is different.
    const stripped = new URL(keyed, "https://x");
    stripped.searchParams.delete("kid");
    expect((await download({}, `${stripped.pathname}${stripped.search}`)).status).toBe(403);
  });
});
