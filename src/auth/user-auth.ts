import { every } from "hono/combine";
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../http/app-env";
import { ApiError } from "../http/errors";
import { admit } from "./admission";
import { invalidToken, verifyBearer } from "./tokens";
import { uploadScopeAllows } from "./upload-scope";

export { UserId } from "./tokens";

/**
 * The method the route will act on: tus routes honour `X-HTTP-Method-Override` (tus 1.0.0: "MUST be
 * interpreted as the request's method"), so an upload token's scope is checked against that one.
 */
function effectiveMethod(method: string, path: string, override: string | undefined): string {
  if (path.startsWith("/v1/tus/") && override?.trim()) return override.trim().toUpperCase();
  return method.toUpperCase();
}

/**
 * Authenticates `Authorization: Bearer <JWT>` (see tokens.ts for the kinds of token and how each is
 * verified) and puts the user id on the context as `userId`. An upload token also sets `uploadScope`,
 * and is refused with 403 `token_scope` on any request but the few its upload allows (upload-scope.ts).
 */
export const authenticate = createMiddleware<AppEnv>(async (c, next) => {
  const header = c.req.header("Authorization");
  if (header === undefined) {
    // RFC 6750 §3.1: a request without credentials gets the challenge without an error code.
    throw new ApiError(401, "unauthorized", "A valid bearer token is required", undefined, {
      "WWW-Authenticate": 'Bearer realm="durable-uploads"',
    });
  }
  const token = /^Bearer\s+(\S+)$/i.exec(header)?.[1];
  if (token === undefined) throw invalidToken("The Authorization header must be `Bearer <token>`");
  const bearer = await verifyBearer(c.env, token);
  if (bearer.uploadId !== null) {
    const method = effectiveMethod(c.req.method, c.req.path, c.req.header("X-HTTP-Method-Override"));
    if (!uploadScopeAllows(bearer.uploadId, method, c.req.path)) {
      throw new ApiError(403, "token_scope", "This upload token only works on its own upload's writes", {
        uploadId: bearer.uploadId,
      });
    }
    c.set("uploadScope", bearer.uploadId);
  }
  c.set("userId", bearer.userId);
  await next();
});

/** Every user route: authenticate the token, then admit the request under the user's rate limits. */
export const requireUser = every(authenticate, admit);
