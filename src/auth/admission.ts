import { createMiddleware } from "hono/factory";
import { accountFor } from "../../objects/stubs";
import type { AppEnv } from "../http/app-env";
import { ApiError } from "../http/errors";
import { accountPolicy } from "../settings/policy";

/**
 * Per-user rate limiting, decided by the user's account object: one round trip per request, before the
 * handler runs and before any byte of the body is read. A request body counts against the byte budget
 * by its declared `Content-Length`, so an upload part or tus chunk over the budget is refused before a
 * byte reaches R2. Every answer carries the draft `RateLimit` headers; a refusal also `Retry-After`.
 * (Cloudflare's rate-limiting binding is per location and eventually consistent; this is exact.)
 */
export const admit = createMiddleware<AppEnv>(async (c, next) => {
  const userId = c.get("userId");
  const declared = Number(c.req.header("Content-Length") ?? 0);
  const bytes = Number.isSafeInteger(declared) && declared > 0 ? declared : 0;
  const admission = await accountFor(c.env, userId).admit({ userId, policy: await accountPolicy(c.env), bytes });
  if (!admission.allowed) {
    if (admission.status === 413) {
      throw new ApiError(
        413,
        "rate_limited",
        "The request carries more bytes than the per-minute upload budget allows",
        { bytes },
        admission.headers,
      );
    }
    throw new ApiError(
      429,
      "rate_limited",
      "Too many requests; retry after the advertised wait",
      { retryAfterSeconds: admission.retryAfterSeconds },
      admission.headers,
    );
  }
  await next();
  for (const [name, value] of Object.entries(admission.headers)) c.res.headers.set(name, value);
});
