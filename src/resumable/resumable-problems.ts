/**
 * Errors of the resumable-upload endpoint as problem details (RFC 9457, `application/problem+json`), the
 * form the draft's problem types take (§7), without giving up the service's own error model.
 *
 * Every error first goes through the service's `renderError` (so it is logged, its stable `code` recorded
 * for the request log and the audit trail, and its headers kept), then its body is re-shaped:
 *
 * ```json
 * {
 *   "type": "https://iana.org/assignments/http-problem-types#mismatching-upload-offset",
 *   "title": "Mismatching Upload Offset",
 *   "status": 409,
 *   "detail": "Upload-Offset does not match the upload's offset",
 *   "expected-offset": 100,
 *   "provided-offset": 200,
 *   "error": { "code": "offset_mismatch", "message": "…", "details": { "offset": 100, "providedOffset": 200 } }
 * }
 * ```
 *
 * `type` is one of the draft's problem type URIs where one applies, `about:blank` otherwise (RFC 9457
 * §4.2.1: then `title` is the status phrase). The `error` member is the service's usual error object, an
 * extension member (RFC 9457 §3.2), so a client of the rest of the API branches on `error.code` as it does
 * everywhere.
 */
import type { Context } from "hono";
import type { ErrorCode } from "../core/error-codes";
import type { ErrorBody } from "../core/outcome";
import type { AppEnv } from "../http/app-env";
import { renderError } from "../http/errors";
import { PROBLEM_TYPES, uploadLimitHeader } from "./resumable-protocol";

export const PROBLEM_JSON = "application/problem+json";

/** RFC 9110 §15 reason phrases for the statuses this endpoint answers with. */
const REASONS: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  410: "Gone",
  411: "Length Required",
  412: "Precondition Failed",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  422: "Unprocessable Content",
  423: "Locked",
  429: "Too Many Requests",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
};

/** The draft problem type a service code stands for, if any. */
const TYPE_OF: Partial<Record<ErrorCode, (typeof PROBLEM_TYPES)[keyof typeof PROBLEM_TYPES]>> = {
  offset_mismatch: PROBLEM_TYPES.mismatchingOffset,
  upload_completed: PROBLEM_TYPES.completedUpload,
  inconsistent_upload_length: PROBLEM_TYPES.inconsistentLength,
};

/** The problem object for a service error body and status. */
export function problemOf(status: number, error: ErrorBody): Record<string, unknown> {
  const known = TYPE_OF[error.code];
  const problem: Record<string, unknown> = {
    type: known?.type ?? "about:blank",
    title: known?.title ?? REASONS[status] ?? "Error",
    status,
    detail: error.message,
  };
  if (error.code === "offset_mismatch") {
    // §7.1: "A response using this problem type SHOULD populate both members, with the value of
    // `expected-offset` taken from the upload resource and the value of `provided-offset` taken from the
    // upload append request."
    const d = (error.details ?? {}) as { offset?: number; providedOffset?: number };
    if (typeof d.offset === "number") problem["expected-offset"] = d.offset;
    if (typeof d.providedOffset === "number") problem["provided-offset"] = d.providedOffset;
  }
  problem.error = error;
  return problem;
}

/**
 * The sub-app's error handler: the service's rendering, re-shaped as problem details. §4.1.4: "A server
 * responding with a 413 Content Too Large status code as a result of its upload limits MUST include the
 * Upload-Limit header in this response": a handler that knows the upload's limits sets the full field
 * before it can fail; any other 413 gets the limit that holds for every request.
 */
export async function renderProblem(err: Error, c: Context<AppEnv>): Promise<Response> {
  const base = renderError(err, c);
  const { error } = (await base.json()) as { error: ErrorBody };
  const headers = new Headers(base.headers);
  headers.set("Content-Type", PROBLEM_JSON);
  if (base.status === 413 && !headers.has("Upload-Limit")) headers.set("Upload-Limit", uploadLimitHeader({}));
  return new Response(JSON.stringify(problemOf(base.status, error)), { status: base.status, headers });
}
