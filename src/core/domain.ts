/** Types shared by the Worker and the Durable Objects: the vocabulary of uploads, parts and files. */

/**
 * The life of an upload session: active → completing → completed | aborted | expired | failed.
 * `completing` is held while the parts are assembled and (when declared) the checksum is verified.
 */
export type UploadStatus = "active" | "completing" | "completed" | "aborted" | "expired" | "failed";

/** The front door an upload came through. */
export type Protocol = "native" | "tus";

/** A completed file as recorded by the ledger and indexed in D1. Times are epoch ms. */
export interface FileRecord {
  id: string;
  userId: string;
  uploadId: string;
  filename: string;
  size: number;
  contentType: string;
  /** Lowercase hex SHA-256, when the client declared one (and it was verified). */
  sha256: string | null;
  /** R2's etag of the assembled object. */
  etag: string;
  r2Key: string;
  metadata: Record<string, string> | null;
  createdAt: number;
}

/** One accepted part of a multipart upload. */
export interface PartRecord {
  partNumber: number;
  size: number;
  etag: string;
}

/** What an upload is, as decided at creation: who, what, and how it is cut into parts. */
export interface UploadPlan {
  uploadId: string;
  userId: string;
  fileId: string;
  protocol: Protocol;
  filename: string;
  contentType: string;
  size: number;
  partSize: number;
  partCount: number;
  sha256: string | null;
  metadata: Record<string, string> | null;
}

/** Everything a client needs to resume an upload (and the Worker needs to serve it). Times are epoch ms. */
export interface SessionView extends UploadPlan {
  status: UploadStatus;
  parts: PartRecord[];
  missingParts: number[];
  bytesReceived: number;
  createdAt: number;
  expiresAt: number;
  completedAt: number | null;
  /** Set once the upload is completed. */
  file: FileRecord | null;
}

/** What the Worker passes to create an upload session. */
export interface SessionInit extends UploadPlan {
  r2Key: string;
  ttlSeconds: number;
  /** tus uploads only: what the tus front door needs beyond the common session. */
  tus?: TusInit;
}

/**
 * What a tus upload adds to a session. A deferred length (`Upload-Defer-Length: 1`) opens the session
 * with `size` 0 and `partCount` 0 and a part size planned for the largest allowed file; the length is
 * recorded once a PATCH declares it.
 */
export interface TusInit {
  lengthDeferred: boolean;
  /** The `Upload-Metadata` header exactly as the client sent it at creation (validated), echoed on HEAD. */
  metadataHeader: string | null;
  /** The largest length a deferred upload may declare: the user's file size limit at creation. */
  maxLength: number;
}
