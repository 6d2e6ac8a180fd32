/**
 * The D1 statements the objects checkpoint through their outboxes. Each is idempotent and ordered by a
 * version the object increments on every change: a retried or late checkpoint never overwrites a newer
 * one, so D1 converges to the objects' state with nothing missing or doubled.
 */
import type { FileRecord, UploadStatus } from "../../src/core/domain";
import type { SqlStatement } from "../../src/core/sql";

export interface UploadRow {
  uploadId: string;
  fileId: string;
  userId: string;
  r2Key: string;
  filename: string;
  contentType: string;
  size: number | null;
  partSize: number;
  partsUploaded: number;
  bytesReceived: number;
  sessionData: Record<string, unknown>;
  protocol: string;
  status: UploadStatus;
  createdAt: number;
  updatedAt: number;
  expiresAt: number;
  completedAt: number | null;
  version: number;
}

/** Upserts a `multipart_uploads` row unless D1 already holds a newer version of it. */
export function uploadRowStatement(r: UploadRow): SqlStatement {
  return {
    sql: `INSERT INTO multipart_uploads
            (upload_id, file_id, user_id, r2_key, filename, mime_type, total_size, part_size, parts_uploaded,
             bytes_received, session_data, protocol, status, created_at, updated_at, expires_at, completed_at, version)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
          ON CONFLICT (upload_id) DO UPDATE SET
            total_size = excluded.total_size, part_size = excluded.part_size,
            parts_uploaded = excluded.parts_uploaded, bytes_received = excluded.bytes_received,
            session_data = excluded.session_data, status = excluded.status, updated_at = excluded.updated_at,
            expires_at = excluded.expires_at, completed_at = excluded.completed_at, version = excluded.version
          WHERE excluded.version > multipart_uploads.version`,
    params: [
      r.uploadId,
      r.fileId,
      r.userId,
      r.r2Key,
      r.filename,
      r.contentType,
      r.size,
      r.partSize,
      r.partsUploaded,
      r.bytesReceived,
      JSON.stringify(r.sessionData),
      r.protocol,
      r.status,
      r.createdAt,
      r.updatedAt,
      r.expiresAt,
      r.completedAt,
      r.version,
    ],
  };
}

/** Upserts a `files` row (live or deleted) unless D1 already holds a newer version of it. */
export function fileRowStatement(
  f: FileRecord,
  state: { deletedAt: number | null; updatedAt: number; version: number },
): SqlStatement {
  return {
    sql: `INSERT INTO files
            (id, user_id, upload_id, filename, r2_key, mime_type, file_size, checksum, etag, metadata, status,
             deleted_at, created_at, updated_at, version)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
          ON CONFLICT (id) DO UPDATE SET
            status = excluded.status, deleted_at = excluded.deleted_at, updated_at = excluded.updated_at,
            version = excluded.version
          WHERE excluded.version > files.version`,
    params: [
      f.id,
      f.userId,
      f.uploadId,
      f.filename,
      f.r2Key,
      f.contentType,
      f.size,
      f.sha256,
      f.etag,
      f.metadata ? JSON.stringify(f.metadata) : null,
      state.deletedAt === null ? "active" : "deleted",
      state.deletedAt,
      f.createdAt,
      state.updatedAt,
      state.version,
    ],
  };
}

export interface QuotaRow {
  userId: string;
  limitBytes: number;
  usedBytes: number;
  reservedBytes: number;
  fileCount: number;
  activeUploads: number;
  version: number;
  updatedAt: number;
}

/** Upserts the `user_quotas` checkpoint of a ledger unless D1 already holds a newer version. */
export function quotaRowStatement(q: QuotaRow): SqlStatement {
  return {
    sql: `INSERT INTO user_quotas
            (user_id, limit_bytes, used_bytes, reserved_bytes, file_count, active_uploads, ledger_version, updated_at)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?)
          ON CONFLICT (user_id) DO UPDATE SET
            limit_bytes = excluded.limit_bytes, used_bytes = excluded.used_bytes,
            reserved_bytes = excluded.reserved_bytes, file_count = excluded.file_count,
            active_uploads = excluded.active_uploads, ledger_version = excluded.ledger_version,
            updated_at = excluded.updated_at
          WHERE excluded.ledger_version > user_quotas.ledger_version`,
    params: [
      q.userId,
      q.limitBytes,
      q.usedBytes,
      q.reservedBytes,
      q.fileCount,
      q.activeUploads,
      q.version,
      q.updatedAt,
    ],
  };
}
