import { createMiddleware } from "hono/factory";
import { routePath } from "hono/route";
import type { AppEnv } from "./app-env";

/**
 * Writes one structured JSON line per request once the response is known: request id, method, matched
 * route (the pattern, so ids do not explode log cardinality), status, duration and user.
 */
export const requestLog = createMiddleware<AppEnv>(async (c, next) => {
  const started = Date.now();
  await next();
  const line = {
    level: c.res.status >= 500 ? "error" : "info",
    requestId: c.get("requestId"),
    method: c.req.method,
    route: routePath(c, -1),
    path: c.req.path,
    status: c.res.status,
    durationMs: Date.now() - started,
    user: c.get("userId") ?? null,
    error: c.get("errorCode") ?? undefined,
  };
  console.log(JSON.stringify(line));
});
