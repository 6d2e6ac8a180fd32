/**
 * The native API's steps on a session (create, view, parts, abort; completion is in completion.ts). Each
 * is one synchronous step over the session's storage; the class awaits around them.
 *
 * The parts record must always describe what R2 holds (issue 17). R2 replaces part n the moment a write
 * of n reaches `uploadPart`, before the Worker knows whether the write will be accepted (its digest is
 * checked as it streams), and a Worker may die at any point after that. So:
 *
 * - `authorizePart` forgets n as it issues the ticket: from then on R2's part n may hold the new write's
 *   bytes, so n is missing until a write of it is recorded. A Worker that dies mid-write leaves n
 *   missing, never "recorded with the old ETag" (completion would then fail in R2, not in the session).
 * - `recordPart` records n only for the latest ticket issued for n, with no other write of n reported in
 *   between (`part_attempts`).
 * - `forgetPart` is a write that failed after its ticket (digest mismatch, body cut short, storage
 *   error): n stays missing, and any write of n still in flight is outdated.
 *
 * The rule for writes of the same part that overlap (a client error, but a flaky network makes
 * retries overlap): R2 keeps the last write that completed, and the session cannot see which that was.
 * So only a write that no other write of n overlapped is recorded; every overlapped one is refused
 * (`409 part_write_conflict`, or outdated by a failed one) and leaves n missing, to be sent again. Missing
 * is always safe: completion refuses with `parts_missing` and names it; a wrong ETag is never recorded.
 */
import type { RequestMeta } from "../../src/core/audit";
import type { PartRecord, SessionInit, SessionView, UploadStatus } from "../../src/core/domain";
import { fail, type Outcome, ok } from "../../src/core/outcome";
import { checkpoint } from "./checkpoint";
import type { PartTicket } from "./contract";
import { end, expireIfDue } from "./lifecycle";
import { notActive, notFound, refuseUnlessActive, tusOnly } from "./refusals";
import { missingParts, partSizeOf, type Session } from "./session";
import { type Answer, answer, type SessionContext } from "./session-context";
import type { SessionStore } from "./session-store";

/** Writes a new session (its multipart upload, if it needs one, already created) and checkpoints it. */
export function createSession(
  cx: SessionContext,
  init: SessionInit,
  r2UploadId: string | null,
  meta: RequestMeta,
): SessionView {
  const now = Date.now();
  cx.store.create(init, r2UploadId, now);
  checkpoint(cx, now, { action: "upload.create", meta, bytes: 0 });
  return viewOf(cx.store, cx.store.reload());
}

/** The session as its owner sees it; anyone else gets 404. */
export function viewFor(cx: SessionContext, userId: string): Outcome<SessionView> {
  const session = cx.store.loadOwnedBy(userId);
  if (!session) return notFound();
  return ok(viewOf(cx.store, expireIfDue(cx, session)));
}

/** Everything a client needs to resume the upload. */
export function viewOf(store: SessionStore, session: Session): SessionView {
  const parts = store.parts();
  return {
    uploadId: session.uploadId,
    userId: session.userId,
    fileId: session.fileId,
    status: session.status,
    protocol: session.protocol,
    filename: session.filename,
    contentType: session.contentType,
    size: session.size,
    partSize: session.partSize,
    partCount: session.partCount,
    sha256: session.sha256,
    metadata: session.metadata,
    parts,
    missingParts: missingParts(session.partCount, store.partNumbers()),
    // A tus upload's tail counts: it is what the tus offset reports.
    bytesReceived: parts.reduce((sum, p) => sum + p.size, 0) + store.tailSize(),
    createdAt: session.createdAt,
    expiresAt: session.expiresAt,
    completedAt: session.completedAt,
    file: session.file,
  };
}

/**
 * Checks that part `partNumber` of exactly `size` bytes may be written now, says where, and numbers the
 * write. From here on R2's part n may be replaced at any moment, so an earlier record of n is forgotten
 * now (see the top of this file).
 */
export function authorizePart(
  cx: SessionContext,
  userId: string,
  partNumber: number,
  size: number,
): Outcome<PartTicket> {
  const session = cx.store.loadOwnedBy(userId);
  if (!session) return notFound();
  if (session.protocol === "tus") return tusOnly();
  const refused = refuseUnlessActive(expireIfDue(cx, session));
  if (refused) return refused;
  if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > session.partCount) {
    return fail(400, "part_out_of_range", `Part numbers run from 1 to ${session.partCount}`, {
      partNumber,
      partCount: session.partCount,
    });
  }
  const expectedSize = partSizeOf(session, partNumber);
  if (size !== expectedSize) {
    return fail(400, "part_size_mismatch", `Part ${partNumber} must be exactly ${expectedSize} bytes`, {
      partNumber,
      expectedSize,
      actualSize: size,
    });
  }
  // A session with parts has a multipart upload: only an empty file (no parts) is opened without one.
  if (session.r2UploadId === null) throw new Error("a native session with parts has no multipart upload");
  const attempt = cx.store.nextPartAttempt(partNumber);
  // A re-send: the part is missing until this write (or a later one) is recorded.
  if (cx.store.removePart(partNumber)) checkpoint(cx, Date.now());
  return ok({ r2Key: session.r2Key, r2UploadId: session.r2UploadId, expectedSize, attempt });
}

/**
 * Records a part the Worker wrote to R2 and slides the expiry. `attempt` is the ticket's number: a write
 * that another write of the same part overlapped is not recorded (see the top of this file). Without
 * one (a caller from before tickets were numbered) the part is recorded as reported.
 */
export function recordPart(
  cx: SessionContext,
  userId: string,
  part: PartRecord,
  meta: RequestMeta,
  attempt?: number,
): Outcome<PartRecord> {
  const session = cx.store.loadOwnedBy(userId);
  if (!session) return notFound();
  if (session.protocol === "tus") return tusOnly();
  const current = expireIfDue(cx, session);
  const now = Date.now();
  if (current.status === "completing" && attempt !== undefined) {
    // This write's ticket was issued while active, and n was recorded again before the completion began:
    // another write of n overlapped this one, and this one may have replaced it in R2 since. Forget n;
    // should the assembly fail for it, the upload is handed back with n missing.
    outdatePart(cx, part.partNumber, now);
    return notActive(current.status);
  }
  const refused = refuseUnlessActive(current);
  if (refused) return refused;
  if (
    part.partNumber < 1 ||
    part.partNumber > current.partCount ||
    part.size !== partSizeOf(current, part.partNumber)
  ) {
    return fail(400, "part_size_mismatch", "The part does not match the session's plan");
  }
  if (attempt !== undefined && attempt !== cx.store.partAttempt(part.partNumber)) {
    outdatePart(cx, part.partNumber, now);
    return fail(
      409,
      "part_write_conflict",
      `Another write of part ${part.partNumber} overlapped this one; the part is missing: send it again, once`,
      { partNumber: part.partNumber },
    );
  }
  cx.store.putPart(part, now);
  // Each accepted part slides the expiry: an upload that makes progress never expires mid-way.
  cx.store.slideExpiry(now + current.ttlMs);
  checkpoint(cx, now, { action: "upload.part", meta, bytes: part.size, metadata: { partNumber: part.partNumber } });
  return ok(part);
}

/**
 * A write of part `partNumber` failed after its ticket was issued (its digest did not match, its body was
 * cut short, R2 or the Worker failed): R2 may hold its bytes under that number now, or not; the part stays
 * missing, and any other write of it still in flight is outdated. Idempotent; an upload that no longer
 * takes parts is left as it is (a completing one forgets the part, as `recordPart` does).
 */
export function forgetPart(cx: SessionContext, userId: string, partNumber: number): Outcome<{ missing: true }> {
  const session = cx.store.loadOwnedBy(userId);
  if (!session) return notFound();
  if (session.protocol === "tus") return tusOnly();
  const open = session.status === "active" || session.status === "completing";
  if (open && Number.isInteger(partNumber) && partNumber >= 1 && partNumber <= session.partCount) {
    outdatePart(cx, partNumber, Date.now());
  }
  return ok({ missing: true });
}

/** Forgets part `n` and outdates every ticket issued for it so far (one step). */
function outdatePart(cx: SessionContext, n: number, now: number): void {
  cx.store.nextPartAttempt(n);
  if (cx.store.removePart(n)) checkpoint(cx, now);
}

/** Aborts the upload: its R2 multipart upload is aborted and its reservation released. Idempotent. */
export function abortUpload(cx: SessionContext, userId: string, meta: RequestMeta): Answer<{ status: UploadStatus }> {
  const session = cx.store.loadOwnedBy(userId);
  if (!session) return answer(notFound());
  const current = expireIfDue(cx, session);
  if (current.status === "aborted") return answer(ok({ status: "aborted" }));
  if (current.status !== "active") return answer(notActive(current.status));
  const now = Date.now();
  end(cx, current, "aborted", now, "client_abort", { action: "upload.abort", meta, bytes: 0 });
  return answer(ok({ status: "aborted" }), ["ledger", "r2"]);
}
