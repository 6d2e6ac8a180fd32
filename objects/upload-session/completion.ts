/**
 * Completion, whichever front door began it (the native `POST …/complete` through `beginCompletion`, or
 * the tus write that brought the last byte, which moves to completing itself): two steps around the
 * Worker's R2 assembly, and the two ways a completion that did not finish is resolved, so `completing` is
 * never a dead end:
 *
 * - the Worker's assembly failed (R2 refused the parts, a storage error): it hands the upload back
 *   (`abandonCompletion`), which is active again;
 * - the Worker died or is far too slow: once the completion window has passed, the alarm asks R2 whether
 *   the object was assembled and finishes, fails or hands back accordingly (`resolveDueCompletion`).
 *
 * A Worker whose assembly succeeded after either of those finishes anyway (see lifecycle.ts TRANSITIONS,
 * active → completed), and one that finds the upload ended deletes what it assembled.
 */
import type { RequestMeta } from "../../src/core/audit";
import type { FileRecord } from "../../src/core/domain";
import { fail, type Outcome, ok } from "../../src/core/outcome";
import { type CheckpointEvent, checkpoint, SYSTEM } from "./checkpoint";
import { type AbandonedCompletion, type AssemblyResult, type CompletionStep, tailPrefix } from "./contract";
import { dueCompletion, end, expireIfDue, handBack, move, startCompletion } from "./lifecycle";
import { notActive, notFound } from "./refusals";
import { missingParts, type Session } from "./session";
import { type Answer, answer, discardTail, type SessionContext, scheduleAlarm } from "./session-context";

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
  let attempt: number;
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
    attempt = startCompletion(cx, current, now);
    checkpoint(cx, now);
  } else if (current.status === "completing") {
    attempt = cx.store.completionAttempts();
  } else {
    return notActive(current.status);
  }
  return ok({
    kind: "assemble",
    r2Key: session.r2Key,
    r2UploadId: session.r2UploadId,
    contentType: session.contentType,
    parts: cx.store.parts().map((p) => ({ partNumber: p.partNumber, etag: p.etag })),
    sha256: session.sha256,
    attempt,
  });
}

/**
 * Second half of completion: records the assembled file and queues the commit of the reservation into
 * used bytes, or, when the declared SHA-256 did not match (the Worker has deleted the object), fails
 * the upload and queues the release of the reservation. Either way the ledger is settled before the
 * answer goes out, so the caller's next look at its usage already shows it.
 *
 * The Worker's assembly may outlast the completion it began (lifecycle.ts TRANSITIONS): handed back to
 * active meanwhile, it still finishes, because the object R2 made from the multipart upload is now the
 * only holder of the bytes; ended meanwhile (the alarm, an abort, an expiry), the object it made is
 * deleted (again: the clean-up queued when the upload ended may have run before the object existed).
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
  const handedBack = session.status === "active" && isCompletionOf(cx, result.attempt);
  if (session.status !== "completing" && !handedBack) {
    // Active without a completion of its own (nothing was assembled): a refusal that changes nothing.
    if (session.status === "active") return answer(notActive(session.status));
    cx.outbox.enqueue("r2", { op: "delete", key: session.r2Key });
    scheduleAlarm(cx);
    return answer(notActive(session.status), ["r2"]);
  }
  const now = Date.now();
  if (typeof result.checksum === "object") {
    const details = { expected: session.sha256, actual: result.checksum.mismatch };
    const event: CheckpointEvent = {
      action: "upload.fail",
      meta,
      bytes: 0,
      errorCode: "checksum_mismatch",
      metadata: details,
    };
    end(cx, session, "failed", now, "checksum_mismatch", event);
    const refusal = fail(422, "checksum_mismatch", "The assembled file does not match the declared SHA-256", details);
    return answer(refusal, ["ledger"]);
  }
  return answer(ok(completeWith(cx, session, result.etag, now, meta)), ["ledger"]);
}

/**
 * The Worker could not assemble the object (R2 refused the parts or failed): the completion it began
 * (`attempt`, when given) is handed back and the upload is active again, so the client can complete
 * again, re-send a part, or abort. A completion that is no longer the current one (another Worker began
 * a newer one meanwhile), or an upload that already left `completing`, is left as it is: the answer says
 * where it stands (with the file, when another request completed it).
 *
 * `partsRejected`: R2 said a part it was given is not what it holds under that number, without saying
 * which. The record of the parts is then not true to R2, so every part is forgotten (and a tus tail with
 * them): the upload is still usable, every part missing again (tus: offset 0), rather than completing
 * again and again against parts R2 does not have. Only a fault the session could not see gets here.
 */
export function abandonCompletion(
  cx: SessionContext,
  userId: string,
  attempt: number | undefined,
  partsRejected = false,
): Outcome<AbandonedCompletion> {
  const session = cx.store.loadOwnedBy(userId);
  if (!session) return notFound();
  const current = attempt === undefined || attempt === cx.store.completionAttempts();
  const open = session.status === "completing" || session.status === "active";
  if (!current || !open) return ok({ status: session.status, file: session.file, missingParts: [] });
  const now = Date.now();
  if (partsRejected) forgetEveryPart(cx);
  if (session.status === "completing") handBack(cx, session, now);
  else if (partsRejected) checkpoint(cx, now);
  return ok({
    status: "active",
    file: null,
    missingParts: missingParts(session.partCount, cx.store.partNumbers()).slice(0, 1000),
  });
}

/** Forgets every recorded part (outdating every ticket) and a tus tail: none of it is known to be in R2. */
function forgetEveryPart(cx: SessionContext): void {
  cx.store.forgetParts();
  for (const key of cx.store.tailKeys()) discardTail(cx, key);
  cx.store.clearTail();
}

/**
 * The alarm's resolution of a completion past its deadline, given what R2 holds at the upload's key
 * (`assembled`: the object's etag, or null when there is none). Checks again that the session is still
 * completing and due: the alarm asked R2 with the input gate open.
 *
 * - An assembled object and no declared SHA-256: the Worker got as far as R2 and died; finish as it would
 *   have (the object is exactly the recorded parts, or R2 would not have made it).
 * - An assembled object and a declared SHA-256: verifying means reading every byte, which the object does
 *   not do (bytes never pass through it), and the window was sized for a live Worker to have done so.
 *   Fail it: the object is deleted and the reservation released at once.
 * - No object: hand it back (active); the recorded parts are still in R2's multipart upload.
 */
export function resolveDueCompletion(cx: SessionContext, assembled: { etag: string } | null, now: number): void {
  const session = dueCompletion(cx, now);
  if (!session) return;
  const abandoned = "completion_abandoned";
  if (assembled && session.sha256 === null) {
    completeWith(cx, session, assembled.etag, now, SYSTEM);
  } else if (assembled) {
    const event: CheckpointEvent = { action: "upload.fail", meta: SYSTEM, bytes: 0, errorCode: abandoned };
    end(cx, session, "failed", now, abandoned, event);
  } else {
    handBack(cx, session, now, { action: "upload.complete", meta: SYSTEM, bytes: 0, errorCode: abandoned });
  }
}

/** Whether `attempt` names a completion this session began (the first is 1). */
function isCompletionOf(cx: SessionContext, attempt: number | undefined): boolean {
  return attempt !== undefined && Number.isInteger(attempt) && attempt >= 1 && attempt <= cx.store.completionAttempts();
}

/** Records the file R2 assembled (etag `etag`) and queues the ledger commit, in one step. */
function completeWith(cx: SessionContext, session: Session, etag: string, now: number, meta: RequestMeta): FileRecord {
  const file: FileRecord = {
    id: session.fileId,
    userId: session.userId,
    uploadId: session.uploadId,
    filename: session.filename,
    size: session.size,
    contentType: session.contentType,
    sha256: session.sha256,
    etag,
    r2Key: session.r2Key,
    metadata: session.metadata,
    createdAt: now,
  };
  move(cx, session, "completed", now);
  cx.store.recordFile(file, now);
  if (session.protocol === "tus") cx.outbox.enqueue("r2", { op: "deletePrefix", prefix: tailPrefix(session.uploadId) });
  cx.outbox.enqueue("ledger", { userId: session.userId, uploadId: session.uploadId, kind: "commit", file });
  checkpoint(cx, now, { action: "upload.complete", meta, bytes: session.size, fileId: file.id });
  return file;
}
