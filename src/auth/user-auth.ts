import { every } from "hono/combine";
import { createMiddleware } from "hono/factory";
import { jwt } from "hono/jwt";
import { z } from "zod";
import type { AppEnv } from "../http/app-env";
import { ApiError } from "../http/errors";
import { readConfig } from "../settings/config";
import { admit } from "./admission";

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

/** `exp` is required: a token without one would be valid forever. */
const Claims = z.object({ sub: UserId, exp: z.number().int() }).loose();

/**
 * A compact JWS (RFC 7515 §7.1) whose three parts are canonical base64url: no padding, no other
 * characters. RFC 7515 §2 defines base64url "with all trailing '=' characters omitted"; a decoder that
 * also takes padded forms would accept several spellings of one signature.
 */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

const invalidToken = (message: string) =>
  new ApiError(401, "unauthorized", message, undefined, {
    "WWW-Authenticate": 'Bearer realm="durable-uploads", error="invalid_token"',
  });

/**
 * Authenticates `Authorization: Bearer <JWT>` (HS256, signed with `AUTH_SECRET`) with Hono's JWT
 * middleware, which also honours `exp`/`nbf`, then checks that `sub` is a valid user id, that the token
 * expires (`exp` present) within the longest lifetime the service accepts, and puts the user id on the
 * context as `userId`.
 */
export const authenticate = createMiddleware<AppEnv>(async (c, next) => {
  const secret = c.env.AUTH_SECRET;
  if (!secret) throw new Error("AUTH_SECRET is not configured");
  const token = /^Bearer\s+(\S+)$/i.exec(c.req.header("Authorization") ?? "")?.[1];
  if (token !== undefined && !COMPACT_JWS.test(token)) throw invalidToken("The token is not a compact JWS");
  const verify = jwt({ secret, alg: "HS256" });
  await verify(c, async () => {
    const claims = Claims.safeParse(c.get("jwtPayload" as never));
    if (!claims.success) throw invalidToken("The token needs a valid user id in `sub` and an `exp`");
    const maxLifetime = readConfig(c.env).maxTokenLifetimeSeconds;
    if (claims.data.exp - Date.now() / 1000 > maxLifetime) {
      throw invalidToken(`The token must expire within ${maxLifetime} seconds`);
    }
    c.set("userId", claims.data.sub);
    await next();
  });
});

/** Every user route: authenticate the token, then admit the request under the user's rate limits. */
export const requireUser = every(authenticate, admit);
