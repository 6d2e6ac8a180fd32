import type { SqlStatement } from "./sql";

/** Everything that may appear in `file_access_logs.action`, as a value (for validation) and a type. */
export const AUDIT_ACTIONS = [
  "upload.create",
  "upload.part",
  "upload.complete",
  "upload.abort",
  "upload.expire",
  "upload.fail",
  "upload.read",
  "file.read",
  "file.download",
  "file.link",
  "file.link_download",
  "file.delete",
  "user.token_issue",
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

/** Who made a request, passed along to the Durable Objects so the events they record carry it. */
export interface RequestMeta {
  requestId: string;
  ipAddress: string | null;
  userAgent: string | null;
}

/** One `file_access_logs` row. `id` is made by the writer so retried writes insert nothing twice. */
export interface AuditEvent {
  id: string;
  userId: string;
  action: AuditAction;
  success: boolean;
  fileId?: string | null;
  uploadId?: string | null;
  errorCode?: string | null;
  errorMessage?: string | null;
  bytesTransferred?: number;
  durationMs?: number | null;
  ipAddress?: string | null;
  userAgent?: string | null;
  metadata?: Record<string, unknown> | null;
  timestamp: number;
}

/** The idempotent insert of one audit event (`INSERT OR IGNORE` on the writer-made id), as SQL + params. */
export function auditSql(e: AuditEvent): SqlStatement {
  return {
    sql: `INSERT OR IGNORE INTO file_access_logs
            (id, file_id, upload_id, user_id, action, success, error_code, error_message, bytes_transferred,
             duration_ms, ip_address, user_agent, metadata, timestamp)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    params: [
      e.id,
      e.fileId ?? null,
      e.uploadId ?? null,
      e.userId,
      e.action,
      e.success ? 1 : 0,
      e.errorCode ?? null,
      e.errorMessage?.slice(0, 1000) ?? null,
      e.bytesTransferred ?? 0,
      e.durationMs ?? null,
      e.ipAddress ?? null,
      e.userAgent ?? null,
      e.metadata ? JSON.stringify(e.metadata) : null,
      e.timestamp,
    ],
  };
}
