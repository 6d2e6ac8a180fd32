/** The session's refusals: each error body is built here, once, and named for the rule it enforces. */
import type { UploadStatus } from "../../src/core/domain";
import { fail, type Refusal } from "../../src/core/outcome";
import type { Session } from "./session";

/** 404: no such upload, or not the caller's (the two are not told apart). */
export function notFound(): Refusal {
  return fail(404, "upload_not_found", "Upload not found");
}

/** 409: the upload takes no more writes in `status`. */
export function conflict(status: UploadStatus): Refusal {
  return fail(409, "upload_not_active", `The upload is ${status}`, { status });
}

/** 410 once expired, 409 for any other state that takes no more writes, null when active. */
export function refuseUnlessActive(session: Session): Refusal | null {
  if (session.status === "active") return null;
  return notActive(session.status);
}

/** Why an upload that is not active takes no write: 410 once expired, 409 otherwise. */
export function notActive(status: UploadStatus): Refusal {
  if (status === "expired") return fail(410, "upload_expired", "The upload expired and was cleaned up");
  return conflict(status);
}

/**
 * tus 1.0.0 §Expiration: "the Server SHOULD respond with the 404 Not Found or 410 Gone status. The
 * latter one SHOULD be used if the Server is keeping track of expired uploads." It is; so is a
 * terminated or failed upload (§Termination: "the Server SHOULD respond with the 404 Not Found or 410
 * Gone status").
 */
export function refuseTus(session: Session): Refusal | null {
  if (session.status === "expired") return fail(410, "upload_expired", "The upload expired and was cleaned up");
  if (session.status === "aborted" || session.terminatedAt !== null)
    return fail(410, "upload_terminated", "The upload was terminated");
  if (session.status === "failed")
    return fail(410, "upload_failed", "The upload failed and was cleaned up", { reason: session.failure });
  return null;
}

/** 409: a native call on a tus upload. */
export function tusOnly(): Refusal {
  return fail(409, "protocol_mismatch", "This upload is written through the tus endpoint, /v1/tus/{id}");
}

/** 409: the tus `Upload-Offset` is not where the upload stands. */
export function offsetMismatch(offset: number): Refusal {
  return fail(409, "offset_mismatch", "Upload-Offset does not match the upload's offset", { offset });
}

/** 423 Locked: another writer holds the lease (tus clients retry on 423). */
export function locked(remainingMs: number): Refusal {
  return fail(423, "upload_locked", "Another request is writing this upload; retry shortly", {
    retryAfterSeconds: Math.max(1, Math.ceil(remainingMs / 1000)),
  });
}

/** 409: the writer's lease was taken over (it expired and another writer took it) or ended. */
export function leaseLost(): Refusal {
  return fail(409, "lease_lost", "Another writer took the upload");
}

/** 409: what a tus writer reports does not follow what the session has recorded. */
export function writeRejected(why: string, details?: unknown): Refusal {
  return fail(409, "write_rejected", why, details);
}

/** 409: a lease renewal from a writer that no longer holds it. */
export function leaseNotHeld(): Refusal {
  return fail(409, "lease_lost", "The write lease is no longer held");
}
