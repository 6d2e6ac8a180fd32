import { every } from "hono/combine";
import { createMiddleware } from "hono/factory";
import { jwt } from "hono/jwt";
import { z } from "zod";
import type { AppEnv } from "../http/app-env";
import { ApiError } from "../http/errors";
import { admit } from "./admission";

/** A user id as carried in a token's `sub`: 1–128 characters of `[A-Za-z0-9._-]`. */
export const UserId = z.string().regex(/^[A-Za-z0-9._-]{1,128}$/, "must be 1-128 characters of A-Z a-z 0-9 . _ -");

const Claims = z.object({ sub: UserId }).loose();

/**
 * Authenticates `Authorization: Bearer <JWT>` (HS256, signed with `AUTH_SECRET`) with Hono's JWT
 * middleware, which also honours `exp`/`nbf`, then checks that `sub` is a valid user id and puts it on
 * the context as `userId`.
 */
export const authenticate = createMiddleware<AppEnv>(async (c, next) => {
  const secret = c.env.AUTH_SECRET;
  if (!secret) throw new Error("AUTH_SECRET is not configured");
  const verify = jwt({ secret, alg: "HS256" });
  await verify(c, async () => {
    const claims = Claims.safeParse(c.get("jwtPayload" as never));
    if (!claims.success) {
      throw new ApiError(401, "unauthorized", "The token's subject is not a valid user id", undefined, {
        "WWW-Authenticate": 'Bearer realm="durable-uploads", error="invalid_token"',
      });
    }
    c.set("userId", claims.data.sub);
    await next();
  });
});

/** Every user route: authenticate the token, then admit the request under the user's rate limits. */
export const requireUser = every(authenticate, admit);
