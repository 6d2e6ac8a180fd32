/**
 * The native API's steps on a session (create, view, parts, two-phase completion, abort). Each is one
 * synchronous step over the session's storage; the class awaits around them.
 */
import type { RequestMeta } from "../../src/core/audit";
import type { FileRecord, PartRecord, SessionInit, SessionView, UploadStatus } from "../../src/core/domain";
import { fail, type Outcome, ok } from "../../src/core/outcome";
import { checkpoint } from "./checkpoint";
import { type AssemblyResult, type CompletionStep, type PartTicket, tailPrefix } from "./contract";
import { end, expireIfDue, move } from "./lifecycle";
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

/** Checks that part `partNumber` of exactly `size` bytes may be written now, and says where. Records nothing. */
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
  return ok({ r2Key: session.r2Key, r2UploadId: session.r2UploadId, expectedSize });
}

/** Records a part the Worker wrote to R2 (replacing an earlier upload of the same number) and slides the expiry. */
export function recordPart(
  cx: SessionContext,
  userId: string,
  part: PartRecord,
  meta: RequestMeta,
): Outcome<PartRecord> {
  const session = cx.store.loadOwnedBy(userId);
  if (!session) return notFound();
  if (session.protocol === "tus") return tusOnly();
  const refused = refuseUnlessActive(expireIfDue(cx, session));
  if (refused) return refused;
  if (
    part.partNumber < 1 ||
    part.partNumber > session.partCount ||
    part.size !== partSizeOf(session, part.partNumber)
  ) {
    return fail(400, "part_size_mismatch", "The part does not match the session's plan");
  }
  const now = Date.now();
  cx.store.putPart(part, now);
  // Each accepted part slides the expiry: an upload that makes progress never expires mid-way.
  cx.store.slideExpiry(now + session.ttlMs);
  checkpoint(cx, now, { action: "upload.part", meta, bytes: part.size, metadata: { partNumber: part.partNumber } });
  return ok(part);
}

/**
 * First half of completion: checks every part is present and moves to `completing`. Returns what the
 * Worker needs to assemble the object. Safe to repeat (a retried or concurrent complete gets the same
 * step; a completed upload gets its file).
 */
export function beginCompletion(cx: SessionContext, userId: string): Outcome<CompletionStep> {
  const session = cx.store.loadOwnedBy(userId);
  if (!session) return notFound();
  const current = expireIfDue(cx, session);
  if (current.status === "completed") return ok({ kind: "done", file: current.file });
  if (current.status === "active") {
    // A tus upload moves to completing itself, atomically with its last byte (see tusFinishWrite).
    if (current.protocol === "tus")
      return fail(409, "upload_incomplete", "A tus upload completes when its last byte arrives");
    const missing = missingParts(current.partCount, cx.store.partNumbers());
    if (missing.length > 0) {
      return fail(409, "parts_missing", `${missing.length} part(s) have not been uploaded`, {
        missingParts: missing.slice(0, 1000),
      });
    }
    const now = Date.now();
    move(cx, current, "completing", now);
    cx.store.slideExpiry(now + current.ttlMs);
    checkpoint(cx, now);
  } else if (current.status !== "completing") {
    return notActive(current.status);
  }
  return ok({
    kind: "assemble",
    r2Key: session.r2Key,
    r2UploadId: session.r2UploadId,
    contentType: session.contentType,
    parts: cx.store.parts().map((p) => ({ partNumber: p.partNumber, etag: p.etag })),
    sha256: session.sha256,
  });
}

/**
 * Second half of completion: records the assembled file and queues the commit of the reservation into
 * used bytes, or, when the declared SHA-256 did not match (the Worker has deleted the object), fails
 * the upload and queues the release of the reservation. Either way the ledger is settled before the
 * answer goes out, so the caller's next look at its usage already shows it.
 */
export function finishCompletion(
  cx: SessionContext,
  userId: string,
  result: AssemblyResult,
  meta: RequestMeta,
): Answer<FileRecord> {
  const session = cx.store.loadOwnedBy(userId);
  if (!session) return answer(notFound());
  if (session.status === "completed") return answer(ok(session.file));
  if (session.status !== "completing") return answer(notActive(session.status));
  const now = Date.now();
  if (typeof result.checksum === "object") {
    const details = { expected: session.sha256, actual: result.checksum.mismatch };
    move(cx, session, "failed", now, "checksum_mismatch");
    cx.outbox.enqueue("ledger", { userId, uploadId: session.uploadId, kind: "release", reason: "checksum_mismatch" });
    checkpoint(cx, now, { action: "upload.fail", meta, bytes: 0, errorCode: "checksum_mismatch", metadata: details });
    const refusal = fail(422, "checksum_mismatch", "The assembled file does not match the declared SHA-256", details);
    return answer(refusal, ["ledger"]);
  }
  const file: FileRecord = {
    id: session.fileId,
    userId,
    uploadId: session.uploadId,
    filename: session.filename,
    size: session.size,
    contentType: session.contentType,
    sha256: session.sha256,
    etag: result.etag,
    r2Key: session.r2Key,
    metadata: session.metadata,
    createdAt: now,
  };
  move(cx, session, "completed", now);
  cx.store.recordFile(file, now);
  if (session.protocol === "tus") cx.outbox.enqueue("r2", { op: "deletePrefix", prefix: tailPrefix(session.uploadId) });
  cx.outbox.enqueue("ledger", { userId, uploadId: session.uploadId, kind: "commit", file });
  checkpoint(cx, now, { action: "upload.complete", meta, bytes: session.size, fileId: file.id });
  return answer(ok(file), ["ledger"]);
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
