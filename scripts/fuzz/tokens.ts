// Bearer tokens for the fuzzer: valid HS256 JWTs signed with the server's AUTH_SECRET, and every kind of
// wrong one (expired, forged, unsigned, padded, no `exp`, subjects that are not user ids).
import { sign } from "hono/jwt";

export const BAD_TOKEN_KINDS = [
  "expired",
  "wrong-secret",
  "alg-none",
  "no-exp",
  "padded-signature",
  "sub-dot",
  "sub-dotdot",
  "sub-readyz",
  "sub-too-long",
  "sub-space",
  "sub-number",
  "no-sub",
  "nbf-future",
  "exp-far-future",
  "exp-string",
  "garbage",
  "two-segments",
  "empty",
  "admin-token",
] as const;
export type BadTokenKind = (typeof BAD_TOKEN_KINDS)[number];

function base64url(text: string): string {
  return Buffer.from(text, "utf8").toString("base64url");
}

const now = () => Math.floor(Date.now() / 1000);

/** A valid user token: `sub` = `userId`, expiring in `ttlSeconds`. */
export function userToken(secret: string, userId: string, ttlSeconds = 3600): Promise<string> {
  const iat = now();
  return sign({ sub: userId, iat, exp: iat + ttlSeconds }, secret, "HS256");
}

/** A token of `kind` that the server must refuse (`401`; `403` for an admin route). */
export async function badToken(kind: BadTokenKind, secret: string, adminToken: string, userId: string) {
  const iat = now();
  const claims = (extra: Record<string, unknown>) => ({ sub: userId, iat, exp: iat + 600, ...extra });
  switch (kind) {
    case "expired":
      return sign(claims({ iat: iat - 7200, exp: iat - 3600 }), secret, "HS256");
    case "wrong-secret":
      return sign(claims({}), `${secret}x`, "HS256");
    case "alg-none":
      return `${base64url(JSON.stringify({ alg: "none", typ: "JWT" }))}.${base64url(JSON.stringify(claims({})))}.`;
    case "no-exp":
      return sign({ sub: userId, iat }, secret, "HS256");
    case "padded-signature":
      return `${await sign(claims({}), secret, "HS256")}=`;
    case "sub-dot":
      return sign(claims({ sub: "." }), secret, "HS256");
    case "sub-dotdot":
      return sign(claims({ sub: ".." }), secret, "HS256");
    case "sub-readyz":
      return sign(claims({ sub: ".readyz" }), secret, "HS256");
    case "sub-too-long":
      return sign(claims({ sub: "u".repeat(129) }), secret, "HS256");
    case "sub-space":
      return sign(claims({ sub: "a b" }), secret, "HS256");
    case "sub-number":
      return sign(claims({ sub: 42 }), secret, "HS256");
    case "no-sub":
      return sign({ iat, exp: iat + 600 }, secret, "HS256");
    case "nbf-future":
      return sign(claims({ nbf: iat + 3600 }), secret, "HS256");
    case "exp-far-future":
      return sign(claims({ exp: iat + 100 * 365 * 86_400 }), secret, "HS256");
    case "exp-string":
      return sign(claims({ exp: String(iat + 600) }), secret, "HS256");
    case "garbage":
      return "not.a.jwt";
    case "two-segments":
      return `${base64url('{"alg":"HS256"}')}.${base64url(JSON.stringify(claims({})))}`;
    case "empty":
      return "";
    case "admin-token":
      return adminToken;
  }
}
