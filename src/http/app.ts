import { Hono } from "hono";
import { requestId } from "hono/request-id";
import { admin } from "../admin/admin-routes";
import { auditRefusals } from "../audit/audit-middleware";
import { auditLog } from "../audit/audit-routes";
import { files } from "../files/file-routes";
import { links } from "../files/link-routes";
import { resumable } from "../resumable/resumable-routes";
import { tus } from "../tus/tus-routes";
import { uploads } from "../uploads/upload-routes";
import { usage } from "../uploads/usage-routes";
import { allowedMethodsOf } from "./allowed-methods";
import type { AppEnv } from "./app-env";
import { cors } from "./cors";
import { ApiError, renderError } from "./errors";
import { health } from "./health-routes";
import { requestLog } from "./logging";

/** Request ids: honour a caller's well-formed `X-Request-Id` so traces join up; otherwise make one. */
const REQUEST_ID_HEADER = "X-Request-Id";

/**
 * Builds the Worker's HTTP application: middleware that every request passes through, then one sub-app
 * per resource mounted with `app.route()`.
 */
export function createApp() {
  const app = new Hono<AppEnv>();
  app.use(
    requestId({
      headerName: REQUEST_ID_HEADER,
      limitLength: 128,
      generator: () => crypto.randomUUID(),
    }),
  );
  // A handler that returns a Response of its own (file downloads) bypasses the headers set on the context:
  // put the request id on it too, so every response carries one.
  app.use(async (c, next) => {
    await next();
    if (c.res.headers.has(REQUEST_ID_HEADER)) return;
    try {
      c.res.headers.set(REQUEST_ID_HEADER, c.get("requestId"));
    } catch {
      c.res = new Response(c.res.body, c.res);
      c.res.headers.set(REQUEST_ID_HEADER, c.get("requestId"));
    }
  });
  app.use(requestLog);
  app.use(cors);
  app.use("/v1/*", auditRefusals);

  app.route("/", health);
  app.route("/v1/usage", usage);
  app.route("/v1/uploads", uploads);
  app.route("/v1/tus", tus);
  app.route("/v1/resumable", resumable);
  app.route("/v1/files", files);
  app.route("/v1/links", links);
  app.route("/v1/audit", auditLog);
  app.route("/v1/admin", admin);

  const allowedMethods = allowedMethodsOf(app);
  app.notFound((c) => {
    const allowed = allowedMethods(c.req.path);
    if (allowed.length > 0) {
      throw new ApiError(
        405,
        "method_not_allowed",
        `${c.req.method} is not supported here`,
        { allowed },
        {
          Allow: allowed.join(", "),
        },
      );
    }
    throw new ApiError(404, "route_not_found", "No such route");
  });
  app.onError(renderError);
  return app;
}
