import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { ZodError } from "zod";
import type { ErrorCode } from "../core/error-codes";
import type { ErrorBody, ErrorStatus, Failure, Outcome } from "../core/outcome";

/**
 * An error the API answers on purpose: an HTTP status, a stable machine-readable `code` that clients
 * may branch on, a human message, and optional structured details. Thrown anywhere in a request; the
 * single `onError` handler renders it.
 */
export class ApiError extends Error {
  constructor(
    readonly status: ErrorStatus,
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
    /** Extra response headers, e.g. `Retry-After` on 429. */
    readonly headers?: Record<string, string>,
  ) {
    super(message);
    this.name = "ApiError";
  }

  toBody(): ErrorBody {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }

  /** Rebuilds an error that crossed a Durable Object RPC boundary as a plain {@link Failure}. */
  static from(failure: Failure): ApiError {
    return new ApiError(failure.status, failure.code, failure.message, failure.details);
  }
}

/** Returns the value of an outcome or throws its failure as an {@link ApiError}. */
export function unwrap<T>(outcome: Outcome<T>): T {
  if (outcome.ok) return outcome.value;
  throw ApiError.from(outcome.error);
}

/** zod issues as a compact, stable list for `details`. */
export function zodDetails(error: ZodError): { path: string; message: string }[] {
  return error.issues.map((issue) => ({ path: issue.path.join("."), message: issue.message }));
}

export const invalidRequest = (message: string, details?: unknown) =>
  new ApiError(400, "invalid_request", message, details);

export const notFound = (what = "Resource") => new ApiError(404, "not_found", `${what} not found`);

/** The one place errors become responses. Unknown errors are logged and answered as a bare 500. */
export function renderError(err: Error, c: Context): Response {
  let error: ApiError;
  if (err instanceof ApiError) {
    error = err;
  } else if (err instanceof ZodError) {
    error = invalidRequest("The request is invalid", zodDetails(err));
  } else if (err instanceof HTTPException) {
    // Hono's JWT middleware and body-limit helpers throw HTTPException; keep their status but give them
    // our body shape and a stable code.
    const status = err.status as ErrorStatus;
    const code: ErrorCode =
      status === 400
        ? "invalid_request"
        : status === 401
          ? "unauthorized"
          : status === 413
            ? "payload_too_large"
            : "http_error";
    const message = status === 401 ? "A valid bearer token is required" : err.message || "Request failed";
    error = new ApiError(
      status,
      code,
      message,
      undefined,
      status === 401 ? { "WWW-Authenticate": 'Bearer realm="durable-uploads"' } : undefined,
    );
  } else {
    console.error(
      JSON.stringify({
        level: "error",
        msg: "unhandled error",
        requestId: c.get("requestId"),
        error: String(err?.stack ?? err),
      }),
    );
    error = new ApiError(500, "internal_error", "Internal server error");
  }
  c.set("errorCode", error.code);
  return c.json({ error: error.toBody() }, error.status as ContentfulStatusCode, error.headers);
}
