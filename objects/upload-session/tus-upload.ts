/**
 * The tus front door's steps on a session.
 *
 * tus writes the same multipart upload as the native API, through a lease: one writer at a time streams a
 * PATCH body into whole parts (recorded as they complete, or all at the end when a checksum must match
 * first) and leaves the bytes past the last whole part in tail segments (recorded at the end). The offset
 * tus reports is always `bytes in recorded parts + recorded tail`, so it covers exactly what the server
 * has acknowledged. Each function here is one synchronous step; the only await of a tus write (growing
 * the reservation of a deferred length) sits between `startTusWrite` and `resumeTusWrite`, which
 * re-checks everything.
 */
import type { RequestMeta } from "../../src/core/audit";
import { fail, type Outcome, ok, type Refusal } from "../../src/core/outcome";
import { checkpoint, partEvent } from "./checkpoint";
import {
  type TusFinish,
  type TusPart,
  type TusStatus,
  type TusTermination,
  type TusWriteGrant,
  type TusWriteRequest,
  type TusWriteResult,
  tailPrefix,
} from "./contract";
import { end, expireIfDue, grantLease, handBack, recordLength, startCompletion } from "./lifecycle";
import {
  conflict,
  leaseLost,
  leaseNotHeld,
  locked,
  notFound,
  offsetMismatch,
  refuseTus,
  writeRejected,
} from "./refusals";
import { type Lease, liveLease, type Session } from "./session";
import { type Answer, answer, discardTail, type SessionContext } from "./session-context";
import { admitTusWrite, checkTusPart, newTailKey, planTusFinish, type WriteAdmission } from "./tus-write-plan";

/**
 * HEAD: where a tus upload stands. Unknown, another user's or a native upload → 404; gone → 410; its
 * last byte is in and a live writer is completing it → 423.
 */
export function tusStatus(cx: SessionContext, userId: string): Outcome<TusStatus> {
  const got = tusSession(cx, userId);
  if (!got.ok) return got;
  const session = got.value;
  const offset = cx.store.offset();
  const length = session.lengthDeferred ? null : session.size;
  const finished =
    session.status === "completing" || (session.status === "active" && length !== null && offset === length);
  const now = Date.now();
  // Every byte is here and a live writer is finishing: reporting the offset now would tell the client it
  // is done before there is a file. 423: tus clients retry.
  const lease = liveLease(session, now);
  if (finished && lease) return locked(lease.expiresAt - now);
  return ok({
    status: session.status,
    offset,
    length,
    metadata: session.tusMetadata,
    expiresAt: session.expiresAt,
    file: session.file,
    needsFinish: finished,
  });
}

/** A write that holds the lease and may go ahead once its reservation (if it must grow) is granted. */
export interface LeasedWrite {
  kind: "leased";
  session: Session;
  lease: Lease;
  offset: number;
  admission: WriteAdmission;
}

/**
 * First step of `tusBeginWrite`: the answer when there is nothing to write (done, completing) or the
 * write is refused; otherwise the lease, granted, with what the write was admitted to do.
 */
export function startTusWrite(
  cx: SessionContext,
  userId: string,
  req: TusWriteRequest,
  now: number,
): LeasedWrite | { kind: "answer"; outcome: Outcome<TusWriteGrant> } {
  const answerWith = (outcome: Outcome<TusWriteGrant>) => ({ kind: "answer" as const, outcome });
  const got = tusSession(cx, userId);
  if (!got.ok) return answerWith(got);
  const session = got.value;
  const offset = cx.store.offset();
  if (session.status === "completed") {
    if (req.offset !== offset) return answerWith(offsetMismatch(offset));
    if (req.contentLength > 0)
      return answerWith(
        fail(413, "exceeds_upload_length", "The upload is complete: no more bytes fit", { uploadLength: session.size }),
      );
    return answerWith(ok({ kind: "done", offset, file: session.file }));
  }
  const held = liveLease(session, now);
  if (held) return answerWith(locked(held.expiresAt - now));
  // tus 1.0.0 §PATCH: "If the offsets do not match, the Server MUST respond with the 409 Conflict status
  // without modifying the upload resource."
  if (req.offset !== offset) return answerWith(offsetMismatch(offset));
  if (session.status === "completing") {
    if (req.contentLength > 0)
      return answerWith(
        fail(413, "exceeds_upload_length", "Every byte of the upload is here", { uploadLength: session.size }),
      );
    return answerWith(ok({ kind: "complete", token: grantLease(cx, req.leaseMs, now).token, offset }));
  }
  // active
  const admitted = admitTusWrite(session, offset, req);
  if (!admitted.ok) return answerWith(admitted);
  return { kind: "leased", session, lease: grantLease(cx, req.leaseMs, now), offset, admission: admitted.value };
}

/**
 * Last step of `tusBeginWrite` after its reservation was resized (`adjusted`): the await let other
 * requests in, so the lease and the state are checked again before the grant.
 */
export function resumeTusWrite(
  cx: SessionContext,
  write: LeasedWrite,
  adjusted: Outcome<unknown>,
  now: number,
): Outcome<TusWriteGrant> {
  // A DELETE, an expiry or a lease thief may have come in meanwhile.
  const session = cx.store.reload();
  if (session.lease?.token !== write.lease.token || session.status !== "active") {
    return refuseTus(session) ?? (session.status === "active" ? leaseLost() : conflict(session.status));
  }
  if (!adjusted.ok) {
    cx.store.clearLease();
    return adjusted;
  }
  return grantTusWrite(cx, write, session, now);
}

/**
 * The grant of a leased write. A length declared by a request without a checksum is recorded now, so a
 * writer that dies mid-body does not lose it.
 */
export function grantTusWrite(
  cx: SessionContext,
  write: LeasedWrite,
  session: Session,
  now: number,
): Outcome<TusWriteGrant> {
  let current = session;
  if (write.admission.lengthToRecord !== null && current.lengthDeferred) {
    recordLength(cx, current, write.admission.lengthToRecord);
    checkpoint(cx, now);
    current = cx.store.reload();
  }
  return ok({
    kind: "write",
    token: write.lease.token,
    leaseExpiresAt: write.lease.expiresAt,
    r2Key: current.r2Key,
    r2UploadId: current.r2UploadId,
    partSize: current.partSize,
    nextPart: cx.store.partCount() + 1,
    offset: write.offset,
    length: write.admission.length,
    tail: cx.store.tail(),
    // The key is unique through the token; `writeSeq` is the one this session was last loaded with.
    newTailKey: newTailKey(tailPrefix(current.uploadId), current.writeSeq, write.lease.token),
  });
}

/** Keeps a live writer's lease from expiring (the writer calls this while it streams). */
export function renewTusLease(
  cx: SessionContext,
  userId: string,
  token: string,
  leaseMs: number,
): Outcome<{ leaseExpiresAt: number }> {
  const session = cx.store.loadOwnedBy(userId);
  if (!session || session.lease?.token !== token || (session.status !== "active" && session.status !== "completing"))
    return leaseNotHeld();
  const leaseExpiresAt = Date.now() + leaseMs;
  cx.store.renewLease(leaseExpiresAt);
  return ok({ leaseExpiresAt });
}

/**
 * Records one whole part a writer without a checksum has put in R2 (not the upload's last part: that
 * one is recorded by `finishTusWrite`, with the move to completing). A part that opens with the recorded
 * tail's bytes supersedes it, and its objects are deleted. Slides the expiry and the lease.
 */
export function recordTusPart(
  cx: SessionContext,
  userId: string,
  token: string,
  part: TusPart,
  leaseMs: number,
  meta: RequestMeta,
): Outcome<{ offset: number }> {
  const got = tusWritable(cx, userId, token);
  if (!got.ok) return refuseReport(cx, userId, token, [part], got);
  const session = got.value;
  const now = Date.now();
  // A number already recorded: the same part reported again (a retried call) changes nothing; another
  // one means R2's part was written over, and the record from it on no longer holds (review 17b).
  const known = cx.store.part(part.partNumber);
  if (known) {
    if (known.etag === part.etag && known.size === part.size) return ok({ offset: cx.store.offset() });
    forgetFrom(cx, session, part.partNumber, now);
    return writeRejected("The part was already recorded with other bytes; resume from the offset", {
      partNumber: part.partNumber,
      offset: cx.store.offset(),
    });
  }
  const rejected = checkTusPart(session, { partCount: cx.store.partCount(), tailKeys: cx.store.tailKeys() }, part);
  if (rejected) return rejected;
  cx.store.insertPart(part, now);
  // The recorded tail was consumed into the part: forget it and delete its objects.
  for (const key of cx.store.tailKeys()) discardTail(cx, key);
  cx.store.clearTail();
  cx.store.slideExpiryAndLease(now + session.ttlMs, now + leaseMs);
  checkpoint(cx, now, partEvent(part, meta));
  return ok({ offset: cx.store.offset() });
}

/**
 * Ends a write: records its parts (all of them, or none if any does not follow), its new tail and the
 * length it declared, in one step. When the offset reaches the length the session moves to completing
 * and the writer keeps the lease to drive the completion; otherwise the lease is released. A refused
 * write's new tail segment is queued for deletion.
 */
export function finishTusWrite(
  cx: SessionContext,
  userId: string,
  token: string,
  fin: TusFinish,
  leaseMs: number,
  meta: RequestMeta,
): Outcome<TusWriteResult> {
  const got = tusWritable(cx, userId, token);
  if (!got.ok) {
    const refusal = refuseReport(cx, userId, token, fin.parts, got);
    return rejectWrite(cx, cx.store.loadOwnedBy(userId), fin, refusal);
  }
  const session = got.value;
  const now = Date.now();
  if (fin.newTail && !isOwnTailKey(session, fin.newTail.key)) {
    // Never record a key the session would later delete as its own (review 17a).
    return writeRejected("The new tail segment is not under this upload's tail prefix");
  }
  // Numbers already recorded (review 17b): refused before anything is written, so the parts INSERT below
  // can never meet a constraint; a number recorded with another ETag was written over in R2.
  const again = fin.parts.flatMap((p) => {
    const recorded = cx.store.part(p.partNumber);
    return recorded ? [{ n: p.partNumber, same: recorded.etag === p.etag && recorded.size === p.size }] : [];
  });
  if (again.length > 0) {
    const overwritten = again.filter((p) => !p.same).map((p) => p.n);
    if (overwritten.length > 0) forgetFrom(cx, session, Math.min(...overwritten), now);
    return rejectWrite(cx, session, fin, writeRejected("A reported part is already recorded; resume from the offset"));
  }
  const recorded = { partCount: cx.store.partCount(), partBytes: cx.store.partBytes(), tail: cx.store.tail() };
  const planned = planTusFinish(session, recorded, fin);
  if (!planned.ok) return rejectWrite(cx, session, fin, planned);
  const plan = planned.value;
  for (const part of fin.parts) cx.store.insertPart(part, now);
  if (fin.parts.length > 0 || fin.newTail) {
    // Segments consumed by a part or copied into the new one go; the new one is appended.
    for (const key of plan.dropped) {
      discardTail(cx, key);
      cx.store.removeTailSegment(key);
    }
    if (fin.newTail) cx.store.appendTailSegment({ key: fin.newTail.key, size: fin.newTail.size });
    cx.store.slideExpiry(now + session.ttlMs);
  }
  if (plan.lengthToRecord !== null) recordLength(cx, session, plan.lengthToRecord);
  const current = cx.store.reload();
  if (plan.completing) {
    // The writer keeps the lease to drive the completion; the alarm resolves it if it never does.
    startCompletion(cx, current, now);
    cx.store.renewLease(now + leaseMs);
  } else {
    cx.store.clearLease();
  }
  checkpoint(
    cx,
    now,
    fin.parts.map((p) => partEvent(p, meta)),
  );
  const after = cx.store.reload();
  return ok({
    offset: cx.store.offset(),
    length: plan.length,
    expiresAt: after.expiresAt,
    completing: plan.completing,
  });
}

/**
 * Gives the lease back after a failed write (checksum mismatch, a body cut short, a storage error) and
 * queues the deletion of the tail segment it wrote but never recorded. Nothing recorded changes. A key
 * that is not an unrecorded key under this upload's own tail prefix is refused and nothing changes
 * (review 17a): a wrong key must never delete another object, nor a segment the upload still needs.
 */
export function releaseTusLease(
  cx: SessionContext,
  userId: string,
  token: string,
  unrecordedTail: string | null,
): Outcome<{ released: boolean }> {
  const session = cx.store.loadOwnedBy(userId);
  if (!session) return notFound();
  if (unrecordedTail && !isOwnTailKey(session, unrecordedTail)) {
    return writeRejected("The tail key is not under this upload's tail prefix", { key: unrecordedTail });
  }
  if (unrecordedTail && !cx.store.tailKeys().includes(unrecordedTail)) discardTail(cx, unrecordedTail);
  const held = session.lease?.token === token;
  if (held) cx.store.clearLease();
  return ok({ released: held });
}

/**
 * tus termination (DELETE). An unfinished upload is aborted like the native DELETE (multipart upload
 * aborted, tail objects deleted, reservation released). A completed one is marked terminated and its
 * file id returned so the Worker removes the file. Afterwards the upload answers 410.
 */
export function terminateTus(cx: SessionContext, userId: string, meta: RequestMeta): Answer<TusTermination> {
  const session = cx.store.loadOwnedBy(userId);
  if (session?.protocol !== "tus") return answer(notFound());
  const current = expireIfDue(cx, session);
  const now = Date.now();
  if (current.status === "completed") {
    cx.store.markTerminatedOnce(now);
    return answer(ok({ kind: "file", fileId: current.fileId }));
  }
  const refused = refuseTus(current);
  if (refused) return answer(refused);
  if (current.status === "completing") {
    const lease = liveLease(current, now);
    if (lease) return answer(locked(lease.expiresAt - now));
    end(cx, current, "failed", now, "client_terminate", { action: "upload.abort", meta, bytes: 0 });
  } else {
    end(cx, current, "aborted", now, "client_terminate", { action: "upload.abort", meta, bytes: 0 });
  }
  cx.store.markTerminated(now);
  return answer(ok({ kind: "terminated" }), ["ledger", "r2"]);
}

/**
 * Refuses the end of a write: nothing is recorded, and the new tail segment it wrote is queued for
 * deletion, if it is a key of this upload's own that is not recorded (review 17a).
 */
function rejectWrite(cx: SessionContext, session: Session | null, fin: TusFinish, refusal: Refusal): Refusal {
  const key = fin.newTail?.key;
  if (key && session && isOwnTailKey(session, key) && !cx.store.tailKeys().includes(key)) discardTail(cx, key);
  return refusal;
}

/** Whether `key` is a key of this upload's own tail prefix (the only keys a writer may name). */
function isOwnTailKey(session: Session, key: string): boolean {
  const prefix = tailPrefix(session.uploadId);
  return key.length > prefix.length && key.startsWith(prefix) && !key.slice(prefix.length).includes("/");
}

/**
 * Parts reported by a writer whose report is refused. If that writer no longer holds the lease (it lost
 * it mid-body, and another writer took over), its parts are in R2 now, under numbers the new writer
 * writes or has written too, and R2 keeps whichever landed last: the record from the lowest of them on
 * can no longer be trusted, so it is forgotten (with the tail that follows it), and the current lease is
 * revoked so its holder re-reads the offset. tus clients resume from HEAD's offset. Returns `refusal`.
 */
function refuseReport(
  cx: SessionContext,
  userId: string,
  token: string,
  parts: readonly TusPart[],
  refusal: Refusal,
): Refusal {
  const session = cx.store.loadOwnedBy(userId);
  if (!session || parts.length === 0 || session.lease?.token === token) return refusal;
  if (session.status !== "active" && session.status !== "completing") return refusal;
  forgetFrom(cx, session, Math.min(...parts.map((p) => p.partNumber)), Date.now());
  cx.store.clearLease();
  return refusal;
}

/**
 * Forgets the recorded parts from `n` on and the tail after them: R2 no longer holds what they describe
 * (tus bytes are in order, so nothing after a forgotten part can stand). A completing upload is handed
 * back first: it could otherwise be assembled from the parts that remain, a shorter file.
 */
function forgetFrom(cx: SessionContext, session: Session, n: number, now: number): void {
  if (n > cx.store.partCount()) return;
  if (session.status === "completing") handBack(cx, session, now);
  cx.store.removePartsFrom(n);
  for (const key of cx.store.tailKeys()) discardTail(cx, key);
  cx.store.clearTail();
  checkpoint(cx, now);
}

/** The caller's tus session, expired if due; refused (404/410) when it is not there for tus any more. */
function tusSession(cx: SessionContext, userId: string): Outcome<Session> {
  const session = cx.store.loadOwnedBy(userId);
  if (session?.protocol !== "tus") return notFound();
  const current = expireIfDue(cx, session);
  return refuseTus(current) ?? ok(current);
}

/** The caller's active tus session, if `token` still holds its lease. */
function tusWritable(cx: SessionContext, userId: string, token: string): Outcome<Session> {
  const got = tusSession(cx, userId);
  if (!got.ok) return got;
  const session = got.value;
  if (session.status !== "active") return conflict(session.status);
  if (session.lease?.token !== token) return leaseLost();
  return got;
}
