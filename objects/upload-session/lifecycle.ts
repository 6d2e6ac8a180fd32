/**
 * The session's state machine: its legal moves, the terminal moves that give the reservation back (with
 * the clean-up they owe), expiry, and the tus lease and deferred length that change what a session is.
 */
import type { UploadStatus } from "../../src/core/domain";
import { type CheckpointEvent, checkpoint, SYSTEM } from "./checkpoint";
import { tailPrefix } from "./contract";
import type { Lease, Session } from "./session";
import type { SessionContext } from "./session-context";

/**
 * The legal moves of the state machine. Steps refuse (409) anything else before they move; `move` guards
 * it. Every rule, and why:
 *
 * - active → completing: every part is recorded (native `beginCompletion`), or a tus write brought the
 *   last byte (`tusFinishWrite`). The Worker then assembles the object in R2.
 * - active → aborted | expired: the client's DELETE, or no accepted part for a TTL. Both give the
 *   reservation back and clean R2 up (`end`).
 * - active → failed: a Worker's assembly that succeeded after its completion was handed back reports a
 *   declared SHA-256 that does not match (see active → completed).
 * - active → completed: only `finishCompletion`, from a Worker whose R2 assembly SUCCEEDED after the
 *   completion it began was handed back (the alarm resolved a completing session while that Worker was
 *   still assembling, or a concurrent complete gave up). R2 consumed the multipart upload to make the
 *   object, so the object is the only thing left that holds the bytes: recording it is the one outcome
 *   true to R2 (refusing would strand an object no session accounts for, and parts R2 no longer has).
 * - completing → completed | failed: the Worker's assembly (and SHA-256 check) succeeded or did not; or
 *   the completion window passed with an assembled object in R2 (finished when there is no checksum to
 *   verify; failed, object deleted, when there is, since verifying means reading every byte).
 * - completing → active: the completion is handed back. The Worker's R2 assembly failed
 *   (`abandonCompletion`: a storage error, or R2 rejecting the parts, which are then all forgotten), the
 *   completion window passed with no assembled object (the Worker died), or a tus writer that had lost its
 *   lease reported parts R2 may now hold (forgotten from there on). What stays recorded is what R2
 *   holds, so the client can complete again, send parts again, or abort (which releases the reservation
 *   at once). Without this move a failed completion was a dead end: no part, no abort, only the TTL.
 * - completed, aborted, expired, failed: terminal.
 */
const TRANSITIONS: Record<UploadStatus, readonly UploadStatus[]> = {
  active: ["completing", "aborted", "expired", "failed", "completed"],
  completing: ["completed", "failed", "active"],
  completed: [],
  aborted: [],
  expired: [],
  failed: [],
};

/**
 * How long a session may stay `completing` before its alarm resolves it: long enough for a live Worker to
 * assemble the object and read it back through a SHA-256 digest (about a minute per GiB at a slow 17 MB/s,
 * on top of a fixed margin), and bounded by the largest file rather than by the upload's TTL, so a Worker
 * that dies mid-completion holds the upload for minutes, not a day.
 */
export const COMPLETION_MARGIN_MS = 5 * 60_000;
export const COMPLETION_MS_PER_GIB = 60_000;

/** When a completion begun at `now` is due to be resolved by the alarm. */
export function completionDeadline(session: Session, now: number): number {
  return now + COMPLETION_MARGIN_MS + Math.ceil((session.size / 1024 ** 3) * COMPLETION_MS_PER_GIB);
}

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
 * release with the state change, in one synchronous step. The object key is the upload's own
 * (`u/<userId>/<fileId>`, never shared), and only a completed upload has a file there, so any object at
 * it is deleted too: a completion that assembled the object and then lost the session (the Worker died,
 * the alarm or an abort ended the upload) must not leave bytes nobody accounts for.
 */
export function end(
  cx: SessionContext,
  session: Session,
  to: UploadStatus,
  now: number,
  reason: string,
  event: CheckpointEvent,
): void {
  move(cx, session, to, now, reason);
  if (session.r2UploadId) cx.outbox.enqueue("r2", { op: "abort", key: session.r2Key, uploadId: session.r2UploadId });
  cx.outbox.enqueue("r2", { op: "delete", key: session.r2Key });
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
 * Moves an active session to completing: a completion begins (numbered, so its Worker can name it when it
 * finishes) and must be resolved by its deadline, or the alarm resolves it.
 */
export function startCompletion(cx: SessionContext, session: Session, now: number): number {
  move(cx, session, "completing", now);
  cx.store.slideExpiry(completionDeadline(session, now));
  return cx.store.countCompletion();
}

/**
 * completing → active: the completion is handed back (see TRANSITIONS). A tus writer's lease ends with it
 * (HEAD or an empty PATCH drives the completion again), and the upload gets a whole TTL from now, so the
 * client has time to act. `event` records why when the object itself decides it (the alarm); a Worker's
 * refused request is audited by the Worker.
 */
export function handBack(cx: SessionContext, session: Session, now: number, event?: CheckpointEvent): void {
  move(cx, session, "active", now);
  cx.store.clearLease();
  cx.store.slideExpiry(now + session.ttlMs);
  checkpoint(cx, now, event);
}

/** The alarm's own step: expire an active session whose time has come. */
export function runDueExpiry(cx: SessionContext, now: number): void {
  const session = cx.store.load();
  if (session?.status === "active") expireIfDue(cx, session, now);
}

/** A completing session past its deadline: the alarm must find out what R2 holds and resolve it. */
export function dueCompletion(cx: SessionContext, now: number): Session | null {
  const session = cx.store.load();
  return session?.status === "completing" && now >= session.expiresAt ? session : null;
}
