/**
 * CORS for browsers (Uppy, tus-js-client, fetch from a web page): preflights for every route, tus and
 * native alike, and the response headers a script needs to read.
 *
 * Origins come from the `corsOrigins` setting (the `CORS_ORIGINS` var, comma-separated, `*` by default,
 * overridable by an administrator at runtime). Authentication is a bearer token, never a cookie, so no
 * credentials mode is needed and `*` is safe to answer with.
 *
 * Hono's `cors` middleware answers every OPTIONS request itself; tus clients also send plain OPTIONS
 * requests for discovery (not preflights), which must reach the tus routes. Hence this small one: only a
 * request with `Origin` and `Access-Control-Request-Method` is a preflight (Fetch standard §3.2.2).
 */
import { createMiddleware } from "hono/factory";
import { loadSettings } from "../settings/settings";
import type { AppEnv } from "./app-env";

/** Methods the API uses. */
const ALLOW_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/** Request headers a page may send: the API's own, every tus request header and the resumable-upload draft's. */
const ALLOW_HEADERS = [
  "Authorization",
  "Content-Type",
  "Content-Digest",
  "X-Request-Id",
  "X-Requested-With",
  "X-HTTP-Method-Override",
  "Tus-Resumable",
  "Upload-Length",
  "Upload-Offset",
  "Upload-Metadata",
  "Upload-Defer-Length",
  "Upload-Checksum",
  "Upload-Concat",
  "Upload-Complete",
  "Upload-Draft-Interop-Version",
  "Prefer",
  "Content-Disposition",
  "Repr-Digest",
  "Range",
  "If-Match",
  "If-None-Match",
  "If-Modified-Since",
  "If-Unmodified-Since",
  "If-Range",
];

/** Response headers a page may read beyond the CORS-safelisted ones. */
export const EXPOSE_HEADERS = [
  "Location",
  "Upload-Offset",
  "Upload-Length",
  "Upload-Expires",
  "Upload-Metadata",
  "Upload-Defer-Length",
  "Upload-File-Location",
  "Upload-Complete",
  "Upload-Limit",
  "Upload-Token",
  "Preference-Applied",
  "Accept-Patch",
  "Tus-Resumable",
  "Tus-Version",
  "Tus-Extension",
  "Tus-Max-Size",
  "Tus-Checksum-Algorithm",
  "X-Request-Id",
  "Retry-After",
  "RateLimit",
  "RateLimit-Policy",
  "ETag",
  "Content-Range",
  "Content-Disposition",
  "Accept-Ranges",
  "WWW-Authenticate",
];

/** A preflight's answer may be cached this long (seconds). */
const MAX_AGE = 86_400;

/** The configured origins: `*` or exact `scheme://host[:port]` values, lower case. */
async function allowedOrigins(env: Env): Promise<string[]> {
  try {
    const origins = (await loadSettings(env)).settings.corsOrigins;
    if (Array.isArray(origins) && origins.length > 0) return origins;
  } catch {
    // Fall through to the var alone.
  }
  const raw = (env as { CORS_ORIGINS?: string }).CORS_ORIGINS ?? "*";
  const list = raw
    .split(",")
    .map((o) => o.trim().toLowerCase())
    .filter(Boolean);
  return list.length > 0 ? list : ["*"];
}

/** The `Access-Control-Allow-Origin` value for `origin`, or null when it is not allowed. */
function allowOrigin(origins: string[], origin: string): string | null {
  if (origins.includes("*")) return "*";
  return origins.includes(origin.toLowerCase()) ? origin : null;
}

export const cors = createMiddleware<AppEnv>(async (c, next) => {
  const origin = c.req.header("Origin");
  // Not a browser's cross-origin request: nothing to do (and nothing to read: /healthz touches nothing).
  if (origin === undefined) return next();
  const origins = await allowedOrigins(c.env);
  const allowed = allowOrigin(origins, origin);
  // With an origin list, the answer depends on Origin: caches must know.
  const vary = origins.includes("*") ? null : "Origin";

  if (c.req.method === "OPTIONS" && c.req.header("Access-Control-Request-Method")) {
    // A preflight: answered here, before authentication (browsers never send credentials with one).
    const headers: Record<string, string> = {
      Vary: "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
    };
    if (allowed) {
      headers["Access-Control-Allow-Origin"] = allowed;
      headers["Access-Control-Allow-Methods"] = ALLOW_METHODS;
      headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS.join(", ");
      headers["Access-Control-Max-Age"] = String(MAX_AGE);
    }
    return c.body(null, 204, headers);
  }

  await next();
  if (allowed) {
    c.header("Access-Control-Allow-Origin", allowed);
    c.header("Access-Control-Expose-Headers", EXPOSE_HEADERS.join(", "));
  }
  if (vary) c.header("Vary", vary, { append: true });
});
