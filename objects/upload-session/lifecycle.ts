/**
 * The session's state machine: its legal moves, the terminal moves that give the reservation back (with
 * the clean-up they owe), expiry, and the tus lease and deferred length that change what a session is.
 */
import type { UploadStatus } from "../../src/core/domain";
import { type CheckpointEvent, checkpoint, SYSTEM } from "./checkpoint";
import { tailPrefix } from "./contract";
import type { Lease, Session } from "./session";
import type { SessionContext } from "./session-context";

/** The legal moves of the state machine. Steps refuse (409) anything else before they move; `move` guards it. */
const TRANSITIONS: Record<UploadStatus, readonly UploadStatus[]> = {
  active: ["completing", "aborted", "expired", "failed"],
  completing: ["completed", "failed"],
  completed: [],
  aborted: [],
  expired: [],
  failed: [],
};

/** Moves `session` to `to` (throws on a move the state machine does not have); `failure` says why. */
export function move(
  cx: SessionContext,
  session: Session,
  to: UploadStatus,
  now: number,
  failure: string | null = null,
): void {
  if (!TRANSITIONS[session.status].includes(to)) throw new Error(`illegal transition ${session.status} → ${to}`);
  cx.store.setStatus(to, failure, now);
}

/**
 * Moves to a terminal state that gives the reservation back: queue the R2 clean-up and the ledger
 * release with the state change, in one synchronous step. `deleteObject` also removes an assembled
 * object that may exist.
 */
export function end(
  cx: SessionContext,
  session: Session,
  to: UploadStatus,
  now: number,
  reason: string,
  event: CheckpointEvent,
  deleteObject = false,
): void {
  move(cx, session, to, now, reason);
  if (session.r2UploadId) cx.outbox.enqueue("r2", { op: "abort", key: session.r2Key, uploadId: session.r2UploadId });
  if (deleteObject) cx.outbox.enqueue("r2", { op: "delete", key: session.r2Key });
  if (session.protocol === "tus") {
    // The recorded tail and any tail a writer wrote but never recorded.
    cx.store.clearTail();
    cx.store.clearLease();
    cx.outbox.enqueue("r2", { op: "deletePrefix", prefix: tailPrefix(session.uploadId) });
  }
  cx.outbox.enqueue("ledger", { userId: session.userId, uploadId: session.uploadId, kind: "release", reason });
  checkpoint(cx, now, event);
}

/** Expires an active session whose time has passed, even if its alarm has not fired yet. */
export function expireIfDue(cx: SessionContext, session: Session, now = Date.now()): Session {
  if (session.status !== "active" || now < session.expiresAt) return session;
  end(cx, session, "expired", now, "expired", { action: "upload.expire", meta: SYSTEM, bytes: 0 });
  return cx.store.reload();
}

/** Takes the lease for a new token, valid for `leaseMs` from `now`. */
export function grantLease(cx: SessionContext, leaseMs: number, now: number): Lease {
  const lease = { token: crypto.randomUUID(), expiresAt: now + leaseMs };
  cx.store.takeLease(lease.token, lease.expiresAt);
  return lease;
}

/**
 * Records a deferred length: the part count follows from it (the part size was planned for the largest
 * allowed file). A zero-length upload needs no multipart upload: it is aborted and completion writes
 * an empty object.
 */
export function recordLength(cx: SessionContext, session: Session, length: number): void {
  cx.store.setLength(length, Math.ceil(length / session.partSize));
  if (length === 0 && session.r2UploadId) {
    cx.outbox.enqueue("r2", { op: "abort", key: session.r2Key, uploadId: session.r2UploadId });
    cx.store.forgetMultipartUpload();
  }
}

/**
 * The alarm's own step: expire an active session whose time has come, and fail a completing one whose
 * assembling Worker never came back.
 */
export function runDueExpiry(cx: SessionContext, now: number): void {
  const session = cx.store.load();
  if (!session) return;
  if (session.status === "active") expireIfDue(cx, session, now);
  else if (session.status === "completing" && now >= session.expiresAt) {
    // The Worker that was assembling never came back. The object may or may not exist: remove both
    // the multipart upload and any assembled object, and give the bytes back.
    const event: CheckpointEvent = { action: "upload.fail", meta: SYSTEM, bytes: 0, errorCode: "completion_abandoned" };
    end(cx, session, "failed", now, "completion_abandoned", event, true);
  }
}
