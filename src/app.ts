import { Hono } from "hono";
import { requestId } from "hono/request-id";
import type { AppEnv } from "./app-env";
import { ApiError, renderError } from "./errors";
import { requestLog } from "./logging";
import { health } from "./routes/health";
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

  app.route("/", health);
  app.route("/v1/usage", usage);

  app.notFound(() => {
    throw new ApiError(404, "route_not_found", "No such route");
  });
  app.onError(renderError);
  return app;
}
