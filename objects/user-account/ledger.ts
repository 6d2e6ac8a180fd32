/**
 * The quota ledger's decisions: `used + reserved ≤ limit` whenever a reservation is taken or grown, and
 * how an upload session's final word settles its reservation. Each function is one synchronous step
 * over the account's storage, so concurrent requests can never both squeeze into the last free bytes;
 * every change bumps the ledger version and queues its D1 checkpoint in the same step.
 */
import { type AuditAction, auditSql, type RequestMeta } from "../../src/core/audit";
import type { FileRecord } from "../../src/core/domain";
import { isAllowedMediaType } from "../../src/core/media-type";
import { type Outcome, ok } from "../../src/core/outcome";
import type { AccountPolicy } from "../../src/core/policy";
import type { SqlStatement } from "../../src/core/sql";
import { fileRowStatement, quotaRowStatement } from "../shared/checkpoints";
import type { Outbox } from "../shared/outbox";
import type { R2Job } from "../shared/r2-jobs";
import { fileTooLarge } from "../shared/refusals";
import type { LedgerView } from "../upload-session/contract";
import type { LedgerMessage, ReserveRequest, Usage } from "./contract";
import type { LedgerStore } from "./ledger-store";
import { noReservation, quotaExceeded, tooManyActiveUploads, unsupportedMediaType } from "./refusals";

/** The account's outbox topics: D1 checkpoints (one batch per message) and R2 clean-up. */
export type AccountTopics = { d1: SqlStatement[]; r2: R2Job };

/** What every step of the account writes to: its SQLite rows (through the store), its outbox, its alarm. */
export interface AccountContext {
  store: LedgerStore;
  outbox: Outbox<AccountTopics>;
  /** Sets the object's one alarm to fire at `at` (epoch ms). */
  setAlarm(at: number): void;
}

/** How long a fresh reservation may wait for its session before the account asks after it. */
export const RESERVATION_CHECK_MS = 5 * 60_000;

/** The service policy with this user's overrides on top. */
export function effectivePolicy(store: LedgerStore, policy: AccountPolicy): AccountPolicy {
  return { ...policy, ...store.overrides() };
}

/** The ledger; with a policy, its (effective) quota is recorded as the limit first. */
export function usageOf(store: LedgerStore, policy: AccountPolicy | null): Usage {
  if (policy) store.recordLimit(effectivePolicy(store, policy).quotaBytes);
  return store.totals();
}

/** True when `bytes` more do not fit in the ledger `usage`. */
function exceedsQuota(usage: Usage, bytes: number): boolean {
  return usage.usedBytes + usage.reservedBytes + bytes > usage.limitBytes;
}

/**
 * Reserves `req.bytes` for a new upload if, and only if, they fit: `used + reserved + bytes ≤ limit`.
 * Retrying with the same upload id returns the same grant.
 */
export function reserve(cx: AccountContext, req: ReserveRequest): Outcome<Usage> {
  if (cx.store.reservation(req.uploadId)) return ok(usageOf(cx.store, req.policy));
  // The user's own limits (administrator overrides) decide; they may be looser or stricter than the service's.
  const policy = effectivePolicy(cx.store, req.policy);
  if (req.bytes > policy.maxFileSizeBytes) return fileTooLarge(req.bytes, policy.maxFileSizeBytes);
  if (req.contentType !== undefined && !isAllowedMediaType(req.contentType, policy.allowedContentTypes)) {
    return unsupportedMediaType(req.contentType, policy.allowedContentTypes);
  }
  const before = usageOf(cx.store, req.policy);
  if (exceedsQuota(before, req.bytes)) return quotaExceeded(before, req.bytes);
  if (before.activeUploads >= policy.maxActiveUploads) {
    return tooManyActiveUploads(before.activeUploads, policy.maxActiveUploads);
  }
  const now = Date.now();
  cx.store.hold(req, now, now + RESERVATION_CHECK_MS);
  ledgerChanged(cx, req.policy);
  return ok(usageOf(cx.store, req.policy));
}

/**
 * Resizes a held reservation to `bytes` (a tus upload with a deferred length reserves as its length
 * becomes known). Growing is granted only if the new total still fits the quota; shrinking always is.
 */
export function adjustReservation(
  cx: AccountContext,
  req: { uploadId: string; bytes: number; policy: AccountPolicy },
): Outcome<Usage> {
  const held = cx.store.reservation(req.uploadId);
  if (held?.state !== "held") return noReservation();
  if (held.bytes === req.bytes) return ok(usageOf(cx.store, req.policy));
  const before = usageOf(cx.store, req.policy);
  const grow = req.bytes - held.bytes;
  if (grow > 0 && exceedsQuota(before, grow)) return quotaExceeded(before, grow);
  cx.store.resize(req.uploadId, req.bytes);
  ledgerChanged(cx, req.policy);
  return ok(usageOf(cx.store, req.policy));
}

/** Applies an upload session's final word on its reservation. Idempotent: a repeat changes nothing. */
export function settle(cx: AccountContext, msg: LedgerMessage): void {
  const now = Date.now();
  const reservation = cx.store.reservation(msg.uploadId);
  if (msg.kind === "commit") {
    if (cx.store.hasFile(msg.file.id)) return; // already committed
    if (reservation) cx.store.commit(msg.uploadId, now);
    cx.store.addFile(msg.file);
    const version = ledgerChanged(cx, null, now);
    cx.outbox.enqueue("d1", [fileRowStatement(msg.file, { deletedAt: null, updatedAt: now, version })]);
  } else {
    if (reservation?.state !== "held") return; // already settled, or never reserved
    cx.store.release(msg.uploadId, now);
    ledgerChanged(cx, null, now);
  }
}

/** What the account does about a held reservation, given what its session says of itself. */
export type ReservationVerdict = { kind: "settle"; message: LedgerMessage } | { kind: "checkAgain"; at: number };

/**
 * Decides a held reservation from its session's view: released when the session is gone or ended without
 * a file, committed when it completed, otherwise asked after again once the session's expiry has passed.
 */
export function reservationVerdict(
  userId: string,
  uploadId: string,
  view: LedgerView,
  now: number,
): ReservationVerdict {
  if (!view.exists || view.status === "aborted" || view.status === "expired" || view.status === "failed") {
    const reason = view.exists ? view.status : "orphaned";
    return { kind: "settle", message: { userId, uploadId, kind: "release", reason } };
  }
  if (view.status === "completed" && view.file) {
    return { kind: "settle", message: { userId, uploadId, kind: "commit", file: view.file } };
  }
  return { kind: "checkAgain", at: Math.max(view.expiresAt, now) + RESERVATION_CHECK_MS };
}

/**
 * Bumps the ledger version, queues the ledger checkpoint for D1 and arms the alarm. Returns the new
 * version, which orders whatever else the change checkpoints. With a policy, its quota is recorded first.
 */
export function ledgerChanged(cx: AccountContext, policy: AccountPolicy | null, now = Date.now()): number {
  const version = cx.store.bumpVersion();
  const u = usageOf(cx.store, policy);
  cx.outbox.enqueue("d1", [
    quotaRowStatement({
      userId: cx.store.userId(),
      limitBytes: u.limitBytes,
      usedBytes: u.usedBytes,
      reservedBytes: u.reservedBytes,
      fileCount: u.fileCount,
      activeUploads: u.activeUploads,
      version,
      updatedAt: now,
    }),
  ]);
  scheduleAlarm(cx);
  return version;
}

/** The audit event of something done to a file, as its D1 statement. */
export function fileAuditStatement(
  file: FileRecord,
  action: AuditAction,
  meta: RequestMeta,
  now: number,
): SqlStatement {
  return auditSql({
    id: crypto.randomUUID(),
    userId: file.userId,
    action,
    success: true,
    fileId: file.id,
    uploadId: file.uploadId,
    bytesTransferred: file.size,
    ipAddress: meta.ipAddress,
    userAgent: meta.userAgent,
    metadata: { requestId: meta.requestId },
    timestamp: now,
  });
}

/** Arms the single alarm for the earliest due job: an outbox delivery or a reservation check. */
export function scheduleAlarm(cx: AccountContext): void {
  const due = [cx.outbox.nextDueAt(), cx.store.nextCheckAt()].filter((t): t is number => t !== null);
  if (due.length > 0) cx.setAlarm(Math.min(...due));
}
