/** Reading the audit log back: one `file_access_logs` row and its JSON views. */

/** One `file_access_logs` row (`SELECT *`). */
export interface AuditRow {
  id: string;
  file_id: string | null;
  upload_id: string | null;
  user_id: string;
  action: string;
  success: number;
  error_code: string | null;
  error_message: string | null;
  bytes_transferred: number;
  duration_ms: number | null;
  ip_address: string | null;
  user_agent: string | null;
  metadata: string | null;
  timestamp: number;
}

/** The metadata column holds a JSON object written by this service; anything unreadable shows as null. */
function parseMetadata(text: string | null): Record<string, unknown> | null {
  if (text === null) return null;
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}

/** An audit event as its own user sees it (`GET /v1/audit`). */
export function auditEventView(row: AuditRow) {
  return {
    id: row.id,
    action: row.action,
    success: row.success === 1,
    fileId: row.file_id,
    uploadId: row.upload_id,
    errorCode: row.error_code,
    bytesTransferred: row.bytes_transferred,
    durationMs: row.duration_ms,
    ipAddress: row.ip_address,
    userAgent: row.user_agent,
    metadata: parseMetadata(row.metadata),
    timestamp: new Date(row.timestamp).toISOString(),
  };
}

/**
 * An audit event as an operator sees it: also whose it is and the error message, and metadata that is
 * not a JSON object is shown as stored rather than hidden, since an operator is investigating.
 */
export function adminAuditEventView(row: AuditRow) {
  let metadata: unknown = null;
  if (row.metadata !== null) {
    try {
      metadata = JSON.parse(row.metadata);
    } catch {
      metadata = row.metadata;
    }
  }
  return { ...auditEventView(row), userId: row.user_id, errorMessage: row.error_message, metadata };
}
