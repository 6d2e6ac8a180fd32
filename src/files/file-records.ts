/** Completed files as D1 indexes them (`files` table): lookup by owner and the public JSON view. */
import { z } from "zod";
import type { FileRecord } from "../core/domain";

/** A file id in a path: 1–128 characters of `[A-Za-z0-9._-]` (UUIDs in practice). */
export const FileId = z.string().regex(/^[A-Za-z0-9._-]{1,128}$/, "must be 1-128 characters of A-Z a-z 0-9 . _ -");

/** One `files` row (see migrations/0001_init.sql). */
export interface FileRow {
  id: string;
  user_id: string;
  upload_id: string | null;
  filename: string;
  r2_key: string;
  mime_type: string;
  file_size: number;
  checksum: string | null;
  etag: string | null;
  metadata: string | null;
  status: "active" | "deleted";
  deleted_at: number | null;
  created_at: number;
  updated_at: number;
  version: number;
}

/** A file as the API shows it. `sha256` is present only when the client declared a checksum. */
export interface FileView {
  id: string;
  filename: string;
  size: number;
  contentType: string;
  sha256?: string;
  etag: string | null;
  createdAt: string;
  metadata: Record<string, string>;
}

/** The columns every file query selects, in one place so the row type and the SQL agree. */
export const FILE_COLUMNS =
  "id, user_id, upload_id, filename, r2_key, mime_type, file_size, checksum, etag, metadata, status, deleted_at, " +
  "created_at, updated_at, version";

/**
 * The caller's live (status `active`) file `fileId`, or null. Owner and status are part of the query,
 * so another user's file and a deleted file are indistinguishable from an unknown id: callers answer
 * all three with the same 404.
 */
export async function findLiveFile(db: D1Database, userId: string, fileId: string): Promise<FileRow | null> {
  return db
    .prepare(`SELECT ${FILE_COLUMNS} FROM files WHERE id = ? AND user_id = ? AND status = 'active'`)
    .bind(fileId, userId)
    .first<FileRow>();
}

const Metadata = z.record(z.string(), z.string());

/**
 * The stored metadata as a string map. The column is written by the upload flow from a validated map;
 * a NULL or (should it ever happen) unreadable value shows as `{}` rather than failing the whole read.
 */
function parseMetadata(row: FileRow): Record<string, string> {
  if (row.metadata === null) return {};
  try {
    const parsed = Metadata.safeParse(JSON.parse(row.metadata));
    if (parsed.success) return parsed.data;
  } catch {
    // fall through
  }
  console.warn(JSON.stringify({ level: "warn", msg: "unreadable file metadata", fileId: row.id }));
  return {};
}

/** The public JSON view of a file row. */
export function fileView(row: FileRow): FileView {
  return publicFile({
    id: row.id,
    filename: row.filename,
    size: row.file_size,
    contentType: row.mime_type,
    sha256: row.checksum,
    etag: row.etag,
    createdAt: row.created_at,
    metadata: parseMetadata(row),
  });
}

/**
 * A file as the API shows it, from a D1 row ({@link fileView}) or from the record an upload session made
 * when it completed: one shape, so a client can keep the completion answer as the file.
 */
export function publicFile(
  f: Pick<FileRecord, "id" | "filename" | "size" | "contentType" | "sha256" | "createdAt"> & {
    etag: string | null;
    metadata: Record<string, string> | null;
  },
): FileView {
  return {
    id: f.id,
    filename: f.filename,
    size: f.size,
    contentType: f.contentType,
    ...(f.sha256 ? { sha256: f.sha256 } : {}),
    etag: f.etag,
    createdAt: new Date(f.createdAt).toISOString(),
    metadata: f.metadata ?? {},
  };
}
