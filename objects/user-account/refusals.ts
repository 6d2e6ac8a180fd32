/** The account's refusals: each error body is built here, once, and named for the rule it enforces. */
import { fail, type Refusal } from "../../src/core/outcome";
import type { Usage } from "./contract";

/** 413: `requestedBytes` more do not fit: `used + reserved + requested > limit` in the ledger `before`. */
export function quotaExceeded(before: Usage, requestedBytes: number): Refusal {
  return fail(413, "quota_exceeded", "The upload does not fit in the remaining quota", {
    usedBytes: before.usedBytes,
    reservedBytes: before.reservedBytes,
    limitBytes: before.limitBytes,
    requestedBytes,
  });
}

/** 415: the user may not upload files of `contentType`. */
export function unsupportedMediaType(contentType: string, allowed: string[]): Refusal {
  return fail(415, "unsupported_media_type", `Uploads of ${contentType} are not allowed`, { contentType, allowed });
}

/** 429: the user already has as many uploads open as allowed. */
export function tooManyActiveUploads(activeUploads: number, maxActiveUploads: number): Refusal {
  return fail(429, "too_many_active_uploads", "Too many uploads are active; complete or abort one first", {
    activeUploads,
    maxActiveUploads,
  });
}

/** 409: the upload has no held reservation to resize (it ended, or never reserved here). */
export function noReservation(): Refusal {
  return fail(409, "upload_not_active", "The upload holds no reservation");
}

/** 404: no such live file (unknown, someone else's or already removed). */
export function fileNotFound(): Refusal {
  return fail(404, "not_found", "File not found");
}
