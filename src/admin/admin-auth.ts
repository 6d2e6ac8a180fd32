import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../http/app-env";
import { ApiError } from "../http/errors";

/**
 * RFC 9110 §11.1: "It uses a case-insensitive token as a means to identify the authentication scheme",
 * followed by whitespace and the credentials. Any non-empty credentials count as presented (and are then
 * compared), so a malformed or wrong token is a 403, while a missing one is a 401.
 */
const BEARER = /^bearer[ \t]+(\S(?:.*\S)?)[ \t]*$/i;

const encoder = new TextEncoder();

async function sha256(text: string): Promise<ArrayBuffer> {
  return crypto.subtle.digest("SHA-256", encoder.encode(text));
}

/**
 * Whether `presented` equals `expected`, in time that depends on neither. Hashing both first gives two
 * 32-byte digests, so `timingSafeEqual` (which requires equal lengths) never leaks the secret's length
 * through an early length check, and comparing digests leaks nothing usable about the secret itself.
 */
export async function tokensEqual(presented: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([sha256(presented), sha256(expected)]);
  return crypto.subtle.timingSafeEqual(a, b);
}

/**
 * A short, stable, non-reversible name for an admin token, for `changed_by` when the caller gives no
 * `X-Admin-Actor`: `token:` and the first 12 hex digits of its SHA-256 (48 bits: enough to tell tokens
 * apart after a rotation, useless for recovering a long random token).
 */
export async function adminFingerprint(token: string): Promise<string> {
  const digest = new Uint8Array(await sha256(token));
  return `token:${[...digest.slice(0, 6)].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

const WWW_AUTHENTICATE = { "WWW-Authenticate": 'Bearer realm="durable-uploads-admin"' };

/**
 * Guards `/v1/admin`: `Authorization: Bearer <ADMIN_TOKEN>`.
 *
 * - no bearer credentials → 401 `unauthorized` with `WWW-Authenticate` (RFC 9110 §15.5.2: a 401 "MUST
 *   send a WWW-Authenticate header field");
 * - credentials that are not the admin token → 403 `forbidden`. That includes a valid user JWT: users
 *   and admins are different principals, and a user token must never unlock operator controls.
 *
 * An unset ADMIN_TOKEN is a deployment mistake: fail loudly (500) rather than compare against "".
 */
export const requireAdmin = createMiddleware<AppEnv>(async (c, next) => {
  const expected = c.env.ADMIN_TOKEN;
  if (!expected) throw new Error("ADMIN_TOKEN is not configured");
  const header = c.req.header("Authorization");
  const token = header ? BEARER.exec(header)?.[1] : undefined;
  if (!token) throw new ApiError(401, "unauthorized", "An admin bearer token is required", undefined, WWW_AUTHENTICATE);
  if (!(await tokensEqual(token, expected))) {
    throw new ApiError(403, "forbidden", "This token does not grant admin access");
  }
  await next();
});
