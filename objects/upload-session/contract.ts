/**
 * The upload session's contract with the Worker: what its RPC methods take and give back. The Worker's
 * feature modules import these types (and nothing else of the object's internals).
 */

import type { FileRecord, PartRecord, UploadStatus } from "../../src/core/domain";
import type { AccountPolicy } from "../../src/core/policy";

/**
 * What the Worker needs to write a part straight to R2. `attempt` numbers this write of the part: the
 * Worker passes it back to `recordPart` (or `forgetPart` when the write fails), so the session can tell
 * whether another write of the same number was authorized or reported in between.
 */
export interface PartTicket {
  r2Key: string;
  r2UploadId: string;
  expectedSize: number;
  attempt: number;
}

/** What the Worker needs to assemble the object, or the file when the upload is already completed. */
export type CompletionStep =
  | {
      kind: "assemble";
      r2Key: string;
      r2UploadId: string | null;
      contentType: string;
      parts: { partNumber: number; etag: string }[];
      sha256: string | null;
      /** Which completion this is (the session counts them): the Worker names it when it finishes. */
      attempt: number;
    }
  | { kind: "done"; file: FileRecord };

/** The Worker's report of assembling: R2's etag, and whether the declared SHA-256 matched. */
export interface AssemblyResult {
  etag: string;
  checksum: "verified" | "not_declared" | { mismatch: string };
  /**
   * The completion (`CompletionStep.attempt`) this assembly belongs to. With it, an assembly that succeeded
   * after its completion was handed back (the session is active again) still finishes: R2 consumed the
   * multipart upload, so the object is what holds the bytes now.
   */
  attempt?: number;
}

/**
 * Where a completion that the Worker gave up on (`abandonCompletion`) left the upload: `active` again
 * (the usual case), or already settled by someone else (`file` when it completed meanwhile); with the
 * parts now missing (first 1,000), which are all of them when R2 rejected the parts.
 */
export interface AbandonedCompletion {
  status: UploadStatus;
  file: FileRecord | null;
  missingParts: number[];
}

/**
 * One segment of a tus upload's unaligned tail (the bytes past the last whole part): a temporary R2
 * object. A write that completes no part appends one (only its own bytes: nothing is copied), so chunks
 * far smaller than a part cost no more than large ones; the part that finally fills streams every
 * segment in order, then the body. Past {@link MAX_TAIL_SEGMENTS} the writer folds them into one.
 */
export interface TailRef {
  key: string;
  size: number;
}

/** What HEAD reports about a tus upload. Times are epoch ms. */
export interface TusStatus {
  status: UploadStatus;
  /** Bytes in recorded parts plus the recorded tail. */
  offset: number;
  /** null while the length is deferred. */
  length: number | null;
  /** The creation `Upload-Metadata` header as sent. */
  metadata: string | null;
  expiresAt: number;
  file: FileRecord | null;
  /**
   * Every byte is here but no live writer is finishing the upload (it died between its last byte and
   * the completion): whoever asks should drive the completion.
   */
  needsFinish: boolean;
}

/** A tus writer's request for the lease, before it reads a byte of the body. */
export interface TusWriteRequest {
  /** The request's `Upload-Offset`. */
  offset: number;
  /** Bytes in the body (its Content-Length; 0 for none). */
  contentLength: number;
  /** `Upload-Length` sent with this request, if any (a deferred length is declared this way). */
  uploadLength: number | null;
  /** An `Upload-Checksum` came with the body: nothing may be recorded until it is verified. */
  checksum: boolean;
  /** The service policy (the account applies the user's overrides): a deferred length grows the reservation with it. */
  policy: AccountPolicy;
  leaseMs: number;
}

/** The lease, and where the writer puts the bytes; or, when nothing is left to write, what to do instead. */
export type TusWriteGrant =
  | {
      kind: "write";
      token: string;
      leaseExpiresAt: number;
      r2Key: string;
      /** null only for a zero-length upload: nothing to assemble. */
      r2UploadId: string | null;
      partSize: number;
      /** The number of the next part: parts 1..nextPart-1 are recorded. */
      nextPart: number;
      offset: number;
      /** The upload's length as far as this write knows it (recorded, or declared by this request). */
      length: number | null;
      /** The recorded tail, in order (empty when the offset is on a part boundary). */
      tail: TailRef[];
      /** A key no write has used: where this write may put its new tail segment. */
      newTailKey: string;
    }
  /** Every byte is here and the upload is completing: the holder of `token` drives the completion. */
  | { kind: "complete"; token: string; offset: number }
  /** Already completed. */
  | { kind: "done"; offset: number; file: FileRecord };

/**
 * A part a tus writer put in R2; `consumedTail` lists the tail segments whose bytes open it (the first part
 * of a write).
 */
export interface TusPart extends PartRecord {
  consumedTail: string[];
}

/** Tail segments a write may leave before the writer must fold them into one (a copy). */
export const MAX_TAIL_SEGMENTS = 32;

/** The end of a tus write: what to record (all of it or nothing), and the length if this request declared it. */
export interface TusFinish {
  parts: TusPart[];
  /**
   * A new tail segment. `copied` lists the recorded segments whose bytes were copied into it (all that
   * remain after the parts, which it then replaces), or is empty when it is appended after them.
   */
  newTail: (TailRef & { copied: string[] }) | null;
  uploadLength: number | null;
}

export interface TusWriteResult {
  offset: number;
  length: number | null;
  expiresAt: number;
  /** The last byte arrived: the session is completing and the writer (still holding the lease) completes it. */
  completing: boolean;
}

/** What tus termination did: ended an unfinished upload, or (completed) names the file the Worker removes. */
export type TusTermination = { kind: "terminated" } | { kind: "file"; fileId: string };

/** What the ledger's reconciliation needs to know about a session. */
export type LedgerView =
  | { exists: false }
  | { exists: true; status: UploadStatus; expiresAt: number; file: FileRecord | null };

/** Where a tus upload's temporary tail objects live: one prefix per upload, a new key per write. */
export function tailPrefix(uploadId: string): string {
  return `tmp/${uploadId}/`;
}
