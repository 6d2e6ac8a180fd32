/**
 * The session's D1 checkpoint: every change bumps the session's version and queues, in the same step,
 * the versioned upsert of its `multipart_uploads` row plus the audit events of the change.
 */
import { type AuditAction, auditSql, type RequestMeta } from "../../src/core/audit";
import type { PartRecord } from "../../src/core/domain";
import type { SqlStatement } from "../../src/core/sql";
import { uploadRowStatement } from "../shared/checkpoints";
import type { Session } from "./session";
import { type SessionContext, scheduleAlarm } from "./session-context";

/** One audit event a change records. */
export interface CheckpointEvent {
  action: AuditAction;
  meta: RequestMeta;
  bytes: number;
  fileId?: string;
  errorCode?: string;
  metadata?: Record<string, unknown>;
}

/** Request metadata for events the object causes itself (expiry, clean-up). */
export const SYSTEM: RequestMeta = { requestId: "alarm", ipAddress: null, userAgent: "durable-uploads/alarm" };

/** The audit event of one accepted part. */
export function partEvent(part: PartRecord, meta: RequestMeta): CheckpointEvent {
  return { action: "upload.part", meta, bytes: part.size, metadata: { partNumber: part.partNumber } };
}

/** Bumps the version and queues the D1 checkpoint of the upload row (plus its audit events), then arms the alarm. */
export function checkpoint(cx: SessionContext, now: number, event?: CheckpointEvent | CheckpointEvent[]): void {
  cx.store.bumpVersion(now);
  const session = cx.store.reload();
  const parts = cx.store.partTotals();
  const events = event === undefined ? [] : Array.isArray(event) ? event : [event];
  const statements = checkpointStatements(
    session,
    // A tus upload's tail counts: it is what the tus offset reports.
    { partsUploaded: parts.count, bytesReceived: parts.bytes + cx.store.tailSize() },
    events,
    now,
  );
  cx.outbox.enqueue("d1", statements, now);
  scheduleAlarm(cx);
}

/** The statements of one checkpoint of `session` (already at its new version), in the order D1 runs them. */
export function checkpointStatements(
  session: Session,
  progress: { partsUploaded: number; bytesReceived: number },
  events: readonly CheckpointEvent[],
  now: number,
  newId: () => string = () => crypto.randomUUID(),
): SqlStatement[] {
  const statements: SqlStatement[] = [
    uploadRowStatement({
      uploadId: session.uploadId,
      fileId: session.fileId,
      userId: session.userId,
      r2Key: session.r2Key,
      filename: session.filename,
      contentType: session.contentType,
      size: session.lengthDeferred ? null : session.size,
      partSize: session.partSize,
      partsUploaded: progress.partsUploaded,
      bytesReceived: progress.bytesReceived,
      sessionData: {
        r2UploadId: session.r2UploadId,
        sha256: session.sha256,
        metadata: session.metadata,
        failure: session.failure,
      },
      protocol: session.protocol,
      status: session.status,
      createdAt: session.createdAt,
      updatedAt: now,
      expiresAt: session.expiresAt,
      completedAt: session.completedAt,
      version: session.version,
    }),
  ];
  for (const e of events) {
    statements.push(
      auditSql({
        id: newId(),
        userId: session.userId,
        action: e.action,
        success: !e.errorCode,
        uploadId: session.uploadId,
        fileId: e.fileId ?? session.fileId,
        errorCode: e.errorCode ?? null,
        bytesTransferred: e.bytes,
        ipAddress: e.meta.ipAddress,
        userAgent: e.meta.userAgent,
        metadata: { requestId: e.meta.requestId, ...e.metadata },
        timestamp: now,
      }),
    );
  }
  return statements;
}
