import { Hono } from "hono";
import { requestId } from "hono/request-id";
import type { AppEnv } from "./app-env";
import { auditRefusals } from "./audit";
import { cors } from "./cors";
import { ApiError, renderError } from "./errors";
import { requestLog } from "./logging";
import { admin } from "./routes/admin";
import { auditLog } from "./routes/audit-log";
import { files } from "./routes/files";
import { health } from "./routes/health";
import { links } from "./routes/links";
import { tus } from "./routes/tus";
import { uploads } from "./routes/uploads";
import { usage } from "./routes/usage";

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
  app.use(requestLog);
  app.use(cors);
  app.use("/v1/*", auditRefusals);

  app.route("/", health);
  app.route("/v1/usage", usage);
  app.route("/v1/uploads", uploads);
  app.route("/v1/tus", tus);
  app.route("/v1/files", files);
  app.route("/v1/links", links);
  app.route("/v1/audit", auditLog);
  app.route("/v1/admin", admin);

  app.notFound(() => {
    throw new ApiError(404, "route_not_found", "No such route");
  });
  app.onError(renderError);
  return app;
}
