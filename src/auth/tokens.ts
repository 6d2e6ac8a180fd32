/**
 * The bearer tokens this service accepts, and the ones it issues. Two kinds, which can never stand in
 * for each other:
 *
 * - **user tokens** act for `sub` on every user route: HS256 signed with a secret of `AUTH_SECRET`
 *   (selected by `kid`; see key-set.ts), or RS256 / ES256 / EdDSA signed by an identity provider whose
 *   public keys are published at `JWKS_URL` (with `iss`/`aud` checked against `JWT_ISSUER`/`JWT_AUDIENCE`
 *   when those are set).
 * - **upload tokens** (header `typ: du-upload+jwt`, `aud: durable-uploads:upload`) act for `sub` on one
 *   upload (`upl`) only. They are HS256 under keys DERIVED from the `AUTH_SECRET` entries with HKDF for
 *   this purpose alone, so a user token's signature never verifies as an upload token's and vice versa,
 *   whatever the claims say.
 *
 * Every token is a canonical compact JWS whose `exp` is present and no further away than
 * `MAX_TOKEN_LIFETIME_SECONDS`. Allowed algorithms are a fixed list: never `none`, and HS256 is only
 * ever checked against the configured secrets, never against a key from the JWKS.
 */
import { decodeProtectedHeader, errors, type JWTPayload, jwtVerify, SignJWT } from "jose";
import { z } from "zod";
import { ApiError } from "../http/errors";
import { readConfig } from "../settings/config";
import { JwksUnavailable, jwksResolver } from "./jwks";
import { type KeySet, parseKeySet, type SecretKey } from "./key-set";

/**
 * A user id as carried in a token's `sub`: 1–128 characters of `[A-Za-z0-9._-]`, starting with a letter
 * or digit. So `.` and `..` (which path-normalising tools would read as directories in the `u/<userId>/`
 * storage keys) are never user ids, and names starting with `.` stay free for the service's own objects
 * (the readiness probe's `.readyz`), which no user can then share.
 */
export const UserId = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/,
    "must be 1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit",
  );

/** `typ` header of an upload token (RFC 8725 §3.11: explicit typing keeps kinds of JWT apart). */
export const UPLOAD_TOKEN_TYP = "du-upload+jwt";
/** `aud` of an upload token. */
export const UPLOAD_TOKEN_AUDIENCE = "durable-uploads:upload";
/** Algorithms accepted from the identity provider's JWKS. */
const JWKS_ALGORITHMS = ["RS256", "ES256", "EdDSA", "Ed25519"];

/** `exp` is required: a token without one would be valid forever. */
const Claims = z.object({ sub: UserId, exp: z.number().int() }).loose();
const UploadClaims = Claims.extend({ upl: z.uuid() });

/** Who a verified token acts for; `uploadId` is set for an upload token (its only upload). */
export interface Bearer {
  userId: string;
  uploadId: string | null;
}

/**
 * A compact JWS (RFC 7515 §7.1) whose three parts are canonical base64url: no padding, no other
 * characters. RFC 7515 §2 defines base64url "with all trailing '=' characters omitted"; a decoder that
 * also takes padded forms would accept several spellings of one signature.
 */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/**
 * Whether the signature part is the one canonical spelling of its bytes. A base64url text whose length
 * is 2 or 3 mod 4 has spare low bits in its last character that decoders ignore; they must be zero, or
 * several strings would carry one signature.
 */
function canonicalSignature(part: string): boolean {
  const rest = part.length % 4;
  if (rest === 1) return false;
  if (rest === 0) return true;
  const last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".indexOf(part.at(-1) ?? "");
  return (last & (rest === 2 ? 0b1111 : 0b11)) === 0;
}

export const invalidToken = (message: string) =>
  new ApiError(401, "unauthorized", message, undefined, {
    "WWW-Authenticate": 'Bearer realm="durable-uploads", error="invalid_token"',
  });

const encoder = new TextEncoder();

/** The `AUTH_SECRET` key set of `env`; a missing secret is a deployment error (500), not the caller's. */
export function authKeys(env: Env): KeySet {
  if (!env.AUTH_SECRET) throw new Error("AUTH_SECRET is not configured");
  return parseKeySet("AUTH_SECRET", env.AUTH_SECRET, true);
}

/** HKDF `info` of upload-token keys: derived from an AUTH_SECRET entry for this purpose only. */
const UPLOAD_KEY_INFO = "durable-uploads/v1 upload token HS256 key";
const uploadKeys = new Map<string, Promise<Uint8Array>>();

/** The HS256 key of upload tokens under one `AUTH_SECRET` entry (HKDF-SHA-256, cached per isolate). */
function uploadKey(key: SecretKey): Promise<Uint8Array> {
  let derived = uploadKeys.get(key.secret);
  if (!derived) {
    derived = (async () => {
      const ikm = await crypto.subtle.importKey("raw", encoder.encode(key.secret), "HKDF", false, ["deriveBits"]);
      const bits = await crypto.subtle.deriveBits(
        { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(0), info: encoder.encode(UPLOAD_KEY_INFO) },
        ikm,
        256,
      );
      return new Uint8Array(bits);
    })();
    derived.catch(() => uploadKeys.delete(key.secret));
    uploadKeys.set(key.secret, derived);
  }
  return derived;
}

/** Signs a user token with the signing (first) entry of `AUTH_SECRET`; its kid, if any, goes in the header. */
export async function signUserToken(env: Env, claims: { sub: string; exp: number; iat?: number }): Promise<string> {
  const key = authKeys(env).signing;
  const header = key.kid === null ? { alg: "HS256", typ: "JWT" } : { alg: "HS256", typ: "JWT", kid: key.kid };
  return new SignJWT(claims).setProtectedHeader(header).sign(encoder.encode(key.secret));
}

/** Signs an upload token for `uploadId`, owned by `userId`, valid until `exp` (epoch seconds). */
export async function signUploadToken(env: Env, claims: { userId: string; uploadId: string; exp: number }) {
  const key = authKeys(env).signing;
  const header = { alg: "HS256", typ: UPLOAD_TOKEN_TYP, ...(key.kid === null ? {} : { kid: key.kid }) };
  return new SignJWT({ upl: claims.uploadId })
    .setProtectedHeader(header)
    .setSubject(claims.userId)
    .setAudience(UPLOAD_TOKEN_AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(claims.exp)
    .sign(await uploadKey(authKeys(env).signing));
}

/** Longest an upload token is issued for (shorter when `MAX_TOKEN_LIFETIME_SECONDS` is). */
export const UPLOAD_TOKEN_MAX_TTL_SECONDS = 7 * 86_400;

/**
 * Issues the upload token of a newly created upload: it acts for `userId` on that upload's own writes,
 * status, completion and abort (upload-scope.ts), for at most 7 days. The upload's expiry still rules:
 * once it has expired or ended, the token has nothing left to act on.
 */
export async function issueUploadToken(env: Env, userId: string, uploadId: string) {
  const ttl = Math.min(UPLOAD_TOKEN_MAX_TTL_SECONDS, readConfig(env).maxTokenLifetimeSeconds);
  const exp = Math.floor(Date.now() / 1000) + ttl;
  const token = await signUploadToken(env, { userId, uploadId, exp });
  return { token, expiresAt: new Date(exp * 1000).toISOString() };
}

/** The secret a kid names, or a 401: an unknown kid is a key this service does not (or no longer) hold. */
function secretFor(env: Env, kid: string | undefined): SecretKey {
  const key = authKeys(env).find(kid ?? null);
  if (!key) throw invalidToken(kid === undefined ? "The token needs a kid" : "The token's kid is not known");
  return key;
}

/**
 * Verifies a bearer token and returns who it acts for. Throws a 401 `unauthorized` for any token that
 * is not valid, and a 503 `auth_unavailable` when the identity provider's key set cannot be fetched.
 */
export async function verifyBearer(env: Env, token: string): Promise<Bearer> {
  const signature = token.slice(token.lastIndexOf(".") + 1);
  if (!COMPACT_JWS.test(token) || !canonicalSignature(signature)) throw invalidToken("The token is not a compact JWS");
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw invalidToken("The token's header is not valid");
  }
  const kid = typeof header.kid === "string" ? header.kid : undefined;
  if (header.kid !== undefined && kid === undefined) throw invalidToken("The token's kid is not valid");
  let payload: JWTPayload;
  try {
    if (header.typ === UPLOAD_TOKEN_TYP) {
      const key = await uploadKey(secretFor(env, kid));
      ({ payload } = await jwtVerify(token, key, {
        algorithms: ["HS256"],
        typ: UPLOAD_TOKEN_TYP,
        audience: UPLOAD_TOKEN_AUDIENCE,
        requiredClaims: ["exp", "sub", "upl"],
      }));
    } else if (header.alg === "HS256") {
      const { secret } = secretFor(env, kid);
      ({ payload } = await jwtVerify(token, encoder.encode(secret), { algorithms: ["HS256"] }));
    } else if (typeof header.alg === "string" && JWKS_ALGORITHMS.includes(header.alg) && env.JWKS_URL) {
      ({ payload } = await jwtVerify(token, jwksResolver(env.JWKS_URL), {
        algorithms: JWKS_ALGORITHMS,
        ...(env.JWT_ISSUER ? { issuer: env.JWT_ISSUER } : {}),
        ...(env.JWT_AUDIENCE ? { audience: env.JWT_AUDIENCE } : {}),
      }));
    } else {
      throw invalidToken(`The token's algorithm ${JSON.stringify(header.alg ?? null)} is not accepted`);
    }
  } catch (err) {
    if (err instanceof ApiError) throw err;
    if (err instanceof JwksUnavailable) {
      throw new ApiError(
        503,
        "auth_unavailable",
        "The identity provider's keys could not be fetched; retry",
        undefined,
        {
          "Retry-After": "30",
        },
      );
    }
    if (err instanceof errors.JWTExpired) throw invalidToken("The token has expired");
    if (err instanceof errors.JOSEError) throw invalidToken("The token is not valid");
    throw err;
  }
  const upload = header.typ === UPLOAD_TOKEN_TYP ? UploadClaims.safeParse(payload) : undefined;
  const claims = upload ?? Claims.safeParse(payload);
  if (!claims.success) throw invalidToken("The token needs a valid user id in `sub` and an `exp`");
  const maxLifetime = readConfig(env).maxTokenLifetimeSeconds;
  if (claims.data.exp - Date.now() / 1000 > maxLifetime) {
    throw invalidToken(`The token must expire within ${maxLifetime} seconds`);
  }
  return { userId: claims.data.sub, uploadId: upload?.success ? upload.data.upl : null };
}
