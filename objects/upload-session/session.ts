/**
 * The upload session as the object's code sees it: the one `session` row, parsed once (by
 * `sessionFromRow`, which `SessionStore.load` calls) into a `Session` whose status says which fields hold.
 */
import type { FileRecord, Protocol, UploadStatus } from "../../src/core/domain";
import { parseFileRecord, parseMetadata } from "../shared/stored-json";

/** The `session` row as SQLite returns it (columns of every schema step). */
export interface SessionRow extends Record<string, SqlStorageValue> {
  upload_id: string;
  user_id: string;
  file_id: string;
  r2_key: string;
  r2_upload_id: string | null;
  filename: string;
  content_type: string;
  size: number;
  part_size: number;
  part_count: number;
  sha256: string | null;
  metadata: string | null;
  protocol: string;
  status: string;
  ttl_ms: number;
  created_at: number;
  updated_at: number;
  expires_at: number;
  completed_at: number | null;
  file: string | null;
  failure: string | null;
  version: number;
  length_deferred: number;
  tus_metadata: string | null;
  write_seq: number;
  lease_token: string | null;
  lease_expires_at: number | null;
  terminated_at: number | null;
  max_length: number | null;
}

/** The right of one tus writer at a time to add bytes, until `expiresAt` (epoch ms) unless renewed. */
export interface Lease {
  token: string;
  expiresAt: number;
}

/** What every session has, whatever its status. Times are epoch ms. */
interface SessionCore {
  uploadId: string;
  userId: string;
  fileId: string;
  r2Key: string;
  /** The R2 multipart upload; null for an empty file (nothing to assemble). */
  r2UploadId: string | null;
  filename: string;
  contentType: string;
  protocol: Protocol;
  /** The upload's length in bytes; 0 while a tus length is deferred (see `lengthDeferred`). */
  size: number;
  partSize: number;
  /** Parts the length is cut into; 0 while a tus length is deferred. */
  partCount: number;
  sha256: string | null;
  metadata: Record<string, string> | null;
  /** How long the session lives past its last accepted part. */
  ttlMs: number;
  createdAt: number;
  updatedAt: number;
  expiresAt: number;
  /** Why it failed or was aborted (null until then). */
  failure: string | null;
  /** Bumped on every change; orders the D1 checkpoints. */
  version: number;
  // tus only (defaults for a native upload): the length a client may declare later, the creation
  // metadata as sent, the write lease and the counter that gives each write a fresh tail key.
  lengthDeferred: boolean;
  /** The largest length a deferred upload may declare; null when the length was known at creation. */
  maxLength: number | null;
  tusMetadata: string | null;
  writeSeq: number;
  lease: Lease | null;
  terminatedAt: number | null;
}

/** A session that still takes writes (or, `completing`, is being assembled): it holds a reservation. */
export interface OpenSession extends SessionCore {
  status: "active" | "completing";
  completedAt: null;
  file: null;
}

/** A completed session: its file exists and the ledger commits it. */
export interface CompletedSession extends SessionCore {
  status: "completed";
  completedAt: number;
  file: FileRecord;
}

/** A session that ended without a file; its reservation was given back. */
export interface EndedSession extends SessionCore {
  status: "aborted" | "expired" | "failed";
  completedAt: null;
  file: null;
}

/** The upload session, discriminated by its status. */
export type Session = OpenSession | CompletedSession | EndedSession;

/** Parses the `session` row. Throws on a row no version of this code could have written. */
export function sessionFromRow(row: SessionRow): Session {
  const core: SessionCore = {
    uploadId: row.upload_id,
    userId: row.user_id,
    fileId: row.file_id,
    r2Key: row.r2_key,
    r2UploadId: row.r2_upload_id,
    filename: row.filename,
    contentType: row.content_type,
    protocol: protocolOf(row.protocol),
    size: row.size,
    partSize: row.part_size,
    partCount: row.part_count,
    sha256: row.sha256,
    metadata: parseMetadata(row.metadata),
    ttlMs: row.ttl_ms,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    expiresAt: row.expires_at,
    failure: row.failure,
    version: row.version,
    lengthDeferred: row.length_deferred !== 0,
    maxLength: row.max_length,
    tusMetadata: row.tus_metadata,
    writeSeq: row.write_seq,
    // The lease columns are set and cleared together.
    lease: row.lease_token === null ? null : { token: row.lease_token, expiresAt: row.lease_expires_at ?? 0 },
    terminatedAt: row.terminated_at,
  };
  const status = statusOf(row.status);
  switch (status) {
    case "completed":
      // Completion writes both in one statement, in the same step as the move to completed.
      if (row.file === null || row.completed_at === null) throw new Error("completed session without its file");
      return { ...core, status, completedAt: row.completed_at, file: parseFileRecord(row.file) };
    case "active":
    case "completing":
      return { ...core, status, completedAt: null, file: null };
    case "aborted":
    case "expired":
    case "failed":
      return { ...core, status, completedAt: null, file: null };
  }
}

/** The session's lease while a writer that may still be writing holds it; null when there is none or it lapsed. */
export function liveLease(session: Session, now: number): Lease | null {
  return session.lease !== null && session.lease.expiresAt > now ? session.lease : null;
}

/** The exact size of part `n` of a native upload: `partSize` except the last, which holds the remainder. */
export function partSizeOf(session: Session, n: number): number {
  return n < session.partCount ? session.partSize : session.size - session.partSize * (session.partCount - 1);
}

/** The part numbers of the plan (1..partCount) not among `have`, in order. */
export function missingParts(partCount: number, have: Iterable<number>): number[] {
  const present = new Set(have);
  const missing: number[] = [];
  for (let n = 1; n <= partCount; n++) if (!present.has(n)) missing.push(n);
  return missing;
}

const STATUSES: readonly UploadStatus[] = ["active", "completing", "completed", "aborted", "expired", "failed"];
const PROTOCOLS: readonly Protocol[] = ["native", "tus"];

function statusOf(value: string): UploadStatus {
  const status = STATUSES.find((s) => s === value);
  if (status === undefined) throw new Error(`unknown session status ${JSON.stringify(value)}`);
  return status;
}

function protocolOf(value: string): Protocol {
  const protocol = PROTOCOLS.find((p) => p === value);
  if (protocol === undefined) throw new Error(`unknown session protocol ${JSON.stringify(value)}`);
  return protocol;
}
