import { type AuditAction, auditSql, type RequestMeta } from "../../src/core/audit";
import type { FileRecord, PartRecord, SessionInit, SessionView, UploadStatus } from "../../src/core/domain";
import { type Failure, fail, type Outcome, ok } from "../../src/core/outcome";
import type { AccountPolicy } from "../../src/core/policy";
import type { SqlStatement } from "../../src/core/sql";
import { uploadRowStatement } from "../shared/checkpoints";
import { OUTBOX_SCHEMA, runOnD1 } from "../shared/outbox";
import { oneRow } from "../shared/schema";
import { SqliteObject } from "../shared/sqlite-object";
import { accountFor } from "../stubs";
import type { LedgerMessage } from "../user-account/contract";
import {
  type AssemblyResult,
  type CompletionStep,
  type LedgerView,
  MAX_TAIL_SEGMENTS,
  type PartTicket,
  type TailRef,
  type TusFinish,
  type TusPart,
  type TusStatus,
  type TusWriteGrant,
  type TusWriteRequest,
  type TusWriteResult,
  tailPrefix,
} from "./contract";

/** Schema steps of the session object (append-only; see `migrateSchema`). */
const SCHEMA = [
  `CREATE TABLE session (
     id            INTEGER PRIMARY KEY CHECK (id = 1),
     upload_id     TEXT NOT NULL,
     user_id       TEXT NOT NULL,
     file_id       TEXT NOT NULL,
     r2_key        TEXT NOT NULL,
     r2_upload_id  TEXT,                 -- NULL for an empty file: nothing to assemble
     filename      TEXT NOT NULL,
     content_type  TEXT NOT NULL,
     size          INTEGER NOT NULL,
     part_size     INTEGER NOT NULL,
     part_count    INTEGER NOT NULL,
     sha256        TEXT,
     metadata      TEXT,
     protocol      TEXT NOT NULL,
     status        TEXT NOT NULL,
     ttl_ms        INTEGER NOT NULL,
     created_at    INTEGER NOT NULL,
     updated_at    INTEGER NOT NULL,
     expires_at    INTEGER NOT NULL,
     completed_at  INTEGER,
     file          TEXT,                 -- the FileRecord as JSON, once completed
     failure       TEXT,                 -- why it failed or was aborted
     version       INTEGER NOT NULL DEFAULT 0
   );
   CREATE TABLE parts (
     part_number  INTEGER PRIMARY KEY,
     size         INTEGER NOT NULL,
     etag         TEXT NOT NULL,
     uploaded_at  INTEGER NOT NULL
   );`,
  OUTBOX_SCHEMA,
  // The tus front door: a length the client may declare later, the creation metadata as sent, the lease
  // that makes one writer at a time the only one allowed to add bytes, and the unaligned tail of the
  // bytes received: the bytes past the last whole part, in temporary R2 objects (a new key per write),
  // in order.
  `ALTER TABLE session ADD COLUMN length_deferred INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE session ADD COLUMN tus_metadata TEXT;
   ALTER TABLE session ADD COLUMN write_seq INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE session ADD COLUMN lease_token TEXT;
   ALTER TABLE session ADD COLUMN lease_expires_at INTEGER;
   ALTER TABLE session ADD COLUMN terminated_at INTEGER;
   ALTER TABLE session ADD COLUMN max_length INTEGER;
   CREATE TABLE tail_segments (
     seq   INTEGER PRIMARY KEY,
     key   TEXT NOT NULL UNIQUE,
     size  INTEGER NOT NULL CHECK (size > 0)
   );`,
];

interface SessionRow extends Record<string, SqlStorageValue> {
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
  status: UploadStatus;
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

/** The legal moves of the state machine. Anything else answers 409. */
const TRANSITIONS: Record<UploadStatus, readonly UploadStatus[]> = {
  active: ["completing", "aborted", "expired", "failed"],
  completing: ["completed", "failed"],
  completed: [],
  aborted: [],
  expired: [],
  failed: [],
};

/** R2 clean-up owed by the session, delivered through the outbox until it succeeds. */
type R2Job =
  | { op: "abort"; key: string; uploadId: string }
  | { op: "delete"; key: string }
  /** Every object under a prefix: the temporary tail objects of a tus upload, including any a dead writer left. */
  | { op: "deletePrefix"; prefix: string };

/**
 * One per upload: owns the multipart session (parts and their ETags, since R2's binding cannot list
 * them), its state machine, and its expiry alarm. Bytes never pass through here: the Worker asks for a
 * ticket, streams the part to R2 itself, then records the part's ETag.
 *
 * Every state change and the messages it owes (D1 checkpoint, ledger settlement, R2 clean-up) are
 * written in one synchronous step into SQLite and the outbox; delivery comes after, at least once.
 */
export class UploadSession extends SqliteObject {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env, SCHEMA);
  }

  /**
   * Creates the session and its R2 multipart upload. Retrying with the same init returns the same
   * session; the quota was reserved by the caller beforehand.
   */
  async open(init: SessionInit, meta: RequestMeta): Promise<Outcome<SessionView>> {
    const existing = this.#row();
    if (existing) {
      if (existing.user_id !== init.userId || existing.upload_id !== init.uploadId) return notFound();
      return ok(this.#view(existing));
    }
    // An empty file needs no multipart upload: completion writes an empty object.
    let r2UploadId: string | null = null;
    if (init.size > 0 || init.tus?.lengthDeferred) {
      const mpu = await this.env.BUCKET.createMultipartUpload(init.r2Key, {
        httpMetadata: { contentType: init.contentType },
        customMetadata: { uploadId: init.uploadId, fileId: init.fileId, userId: init.userId },
      });
      r2UploadId = mpu.uploadId;
    }
    // The await above opened the input gate; a concurrent open of the same id may have won.
    const raced = this.#row();
    if (raced) {
      if (r2UploadId) this.outbox.enqueue("r2", { op: "abort", key: init.r2Key, uploadId: r2UploadId } satisfies R2Job);
      this.#schedule();
      return raced.user_id === init.userId ? ok(this.#view(raced)) : notFound();
    }
    const now = Date.now();
    const ttlMs = init.ttlSeconds * 1000;
    this.sql.exec(
      `INSERT INTO session (id, upload_id, user_id, file_id, r2_key, r2_upload_id, filename, content_type, size,
         part_size, part_count, sha256, metadata, protocol, status, ttl_ms, created_at, updated_at, expires_at,
         length_deferred, tus_metadata, max_length)
       VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?)`,
      init.uploadId,
      init.userId,
      init.fileId,
      init.r2Key,
      r2UploadId,
      init.filename,
      init.contentType,
      init.size,
      init.partSize,
      init.partCount,
      init.sha256,
      init.metadata ? JSON.stringify(init.metadata) : null,
      init.protocol,
      ttlMs,
      now,
      now,
      now + ttlMs,
      init.tus?.lengthDeferred ? 1 : 0,
      init.tus?.metadataHeader ?? null,
      init.tus?.lengthDeferred ? init.tus.maxLength : null,
    );
    this.#checkpoint(now, { action: "upload.create", meta, bytes: 0 });
    return ok(this.#view(this.#row()!));
  }

  /** The session as its owner sees it; anyone else gets 404. */
  async view(userId: string): Promise<Outcome<SessionView>> {
    const row = this.#owned(userId);
    if (!row) return notFound();
    return ok(this.#view(this.#expireIfDue(row)));
  }

  /**
   * Checks that part `partNumber` of exactly `size` bytes may be written now and returns where to write
   * it. Nothing is recorded: the part counts only once `recordPart` has its ETag.
   */
  async authorizePart(userId: string, partNumber: number, size: number): Promise<Outcome<PartTicket>> {
    const row = this.#owned(userId);
    if (!row) return notFound();
    if (row.protocol === "tus") return tusOnly();
    const refused = this.#refuseUnlessActive(this.#expireIfDue(row));
    if (refused) return refused;
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > row.part_count) {
      return fail(400, "part_out_of_range", `Part numbers run from 1 to ${row.part_count}`, {
        partNumber,
        partCount: row.part_count,
      });
    }
    const expectedSize = partSizeOf(row, partNumber);
    if (size !== expectedSize) {
      return fail(400, "part_size_mismatch", `Part ${partNumber} must be exactly ${expectedSize} bytes`, {
        partNumber,
        expectedSize,
        actualSize: size,
      });
    }
    return ok({ r2Key: row.r2_key, r2UploadId: row.r2_upload_id!, expectedSize });
  }

  /** Records a part the Worker wrote to R2 (replacing an earlier upload of the same number) and slides the expiry. */
  async recordPart(userId: string, part: PartRecord, meta: RequestMeta): Promise<Outcome<PartRecord>> {
    const row = this.#owned(userId);
    if (!row) return notFound();
    if (row.protocol === "tus") return tusOnly();
    const refused = this.#refuseUnlessActive(this.#expireIfDue(row));
    if (refused) return refused;
    if (part.partNumber < 1 || part.partNumber > row.part_count || part.size !== partSizeOf(row, part.partNumber)) {
      return fail(400, "part_size_mismatch", "The part does not match the session's plan");
    }
    const now = Date.now();
    this.sql.exec(
      `INSERT INTO parts (part_number, size, etag, uploaded_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (part_number) DO UPDATE SET
         size = excluded.size, etag = excluded.etag, uploaded_at = excluded.uploaded_at`,
      part.partNumber,
      part.size,
      part.etag,
      now,
    );
    // Each accepted part slides the expiry: an upload that makes progress never expires mid-way.
    this.sql.exec("UPDATE session SET expires_at = ? WHERE id = 1", now + row.ttl_ms);
    this.#checkpoint(now, { action: "upload.part", meta, bytes: part.size, metadata: { partNumber: part.partNumber } });
    return ok(part);
  }

  /**
   * First half of completion: checks every part is present and moves to `completing`. Returns what the
   * Worker needs to assemble the object. Safe to call again (a retried or concurrent complete gets the
   * same step; a completed upload gets its file).
   */
  async beginCompletion(userId: string): Promise<Outcome<CompletionStep>> {
    const row = this.#owned(userId);
    if (!row) return notFound();
    const current = this.#expireIfDue(row);
    if (current.status === "completed") return ok({ kind: "done", file: JSON.parse(current.file!) as FileRecord });
    if (current.status === "active") {
      // A tus upload moves to completing itself, atomically with its last byte (see tusFinishWrite).
      if (current.protocol === "tus")
        return fail(409, "upload_incomplete", "A tus upload completes when its last byte arrives");
      const missing = this.#missingParts(current);
      if (missing.length > 0) {
        return fail(409, "parts_missing", `${missing.length} part(s) have not been uploaded`, {
          missingParts: missing.slice(0, 1000),
        });
      }
      const now = Date.now();
      this.#move(current, "completing", now);
      this.sql.exec("UPDATE session SET expires_at = ? WHERE id = 1", now + current.ttl_ms);
      this.#checkpoint(now);
    } else if (current.status !== "completing") {
      return this.#refuseUnlessActive(current)!;
    }
    return ok({
      kind: "assemble",
      r2Key: row.r2_key,
      r2UploadId: row.r2_upload_id,
      contentType: row.content_type,
      parts: this.#parts().map((p) => ({ partNumber: p.partNumber, etag: p.etag })),
      sha256: row.sha256,
    });
  }

  /**
   * Second half of completion: records the assembled file and commits the reservation into used bytes,
   * or, when the declared SHA-256 did not match (the Worker has deleted the object), fails the upload
   * and releases the reservation.
   */
  async finishCompletion(userId: string, result: AssemblyResult, meta: RequestMeta): Promise<Outcome<FileRecord>> {
    const row = this.#owned(userId);
    if (!row) return notFound();
    if (row.status === "completed") return ok(JSON.parse(row.file!) as FileRecord);
    if (row.status !== "completing") return this.#refuseUnlessActive(row) ?? conflict(row.status);
    const now = Date.now();
    if (typeof result.checksum === "object") {
      const details = { expected: row.sha256, actual: result.checksum.mismatch };
      this.#move(row, "failed", now, "checksum_mismatch");
      this.outbox.enqueue("ledger", {
        userId,
        uploadId: row.upload_id,
        kind: "release",
        reason: "checksum_mismatch",
      } satisfies LedgerMessage);
      this.#checkpoint(now, {
        action: "upload.fail",
        meta,
        bytes: 0,
        errorCode: "checksum_mismatch",
        metadata: details,
      });
      await this.#deliver(["ledger"]);
      return fail(422, "checksum_mismatch", "The assembled file does not match the declared SHA-256", details);
    }
    const file: FileRecord = {
      id: row.file_id,
      userId,
      uploadId: row.upload_id,
      filename: row.filename,
      size: row.size,
      contentType: row.content_type,
      sha256: row.sha256,
      etag: result.etag,
      r2Key: row.r2_key,
      metadata: row.metadata ? (JSON.parse(row.metadata) as Record<string, string>) : null,
      createdAt: now,
    };
    this.#move(row, "completed", now);
    this.sql.exec(
      "UPDATE session SET completed_at = ?, file = ?, lease_token = NULL, lease_expires_at = NULL WHERE id = 1",
      now,
      JSON.stringify(file),
    );
    if (row.protocol === "tus")
      this.outbox.enqueue("r2", { op: "deletePrefix", prefix: tailPrefix(row.upload_id) } satisfies R2Job);
    this.outbox.enqueue("ledger", { userId, uploadId: row.upload_id, kind: "commit", file } satisfies LedgerMessage);
    this.#checkpoint(now, { action: "upload.complete", meta, bytes: row.size, fileId: file.id });
    // Settle the ledger before answering, so the caller's next look at its usage already shows the file.
    await this.#deliver(["ledger"]);
    return ok(file);
  }

  /** Aborts the upload: the R2 multipart upload is aborted and the reservation released. Idempotent. */
  async abort(userId: string, meta: RequestMeta): Promise<Outcome<{ status: UploadStatus }>> {
    const row = this.#owned(userId);
    if (!row) return notFound();
    const current = this.#expireIfDue(row);
    if (current.status === "aborted") return ok({ status: "aborted" });
    if (current.status !== "active") return this.#refuseUnlessActive(current) ?? conflict(current.status);
    const now = Date.now();
    this.#end(current, "aborted", now, "client_abort", { action: "upload.abort", meta, bytes: 0 });
    await this.#deliver(["ledger", "r2"]);
    return ok({ status: "aborted" });
  }

  // ---- tus ---------------------------------------------------------------------------------------
  //
  // The tus front door writes the same multipart upload as the native API, through a lease: one writer at
  // a time streams a PATCH body into whole parts (recorded as they complete, or all at the end when a
  // checksum must match first) and leaves the bytes past the last whole part in tail segments (recorded
  // at the end). The offset tus reports is always `bytes in recorded parts + recorded tail`, so it
  // covers exactly what the server has acknowledged. Every method here is one synchronous step, except
  // tusBeginWrite, which re-checks everything after its one await.

  /**
   * HEAD: where a tus upload stands. Unknown, another user's or a native upload → 404; gone → 410; its
   * last byte is in and a live writer is completing it → 423.
   */
  async tusStatus(userId: string): Promise<Outcome<TusStatus>> {
    const got = this.#tusRow(userId);
    if (!got.ok) return got;
    const row = got.value;
    const offset = this.#offset();
    const length = row.length_deferred ? null : row.size;
    const finished = row.status === "completing" || (row.status === "active" && length !== null && offset === length);
    const now = Date.now();
    // Every byte is here and a live writer is finishing: reporting the offset now would tell the client it
    // is done before there is a file. 423: tus clients retry.
    if (finished && this.#liveLease(row, now)) return locked(row.lease_expires_at! - now);
    return ok({
      status: row.status,
      offset,
      length,
      metadata: row.tus_metadata,
      expiresAt: row.expires_at,
      file: row.file ? (JSON.parse(row.file) as FileRecord) : null,
      needsFinish: finished,
    });
  }

  /**
   * Grants the write lease to a PATCH (or a creation with a body) whose `Upload-Offset` matches, after
   * checking the bytes it declares fit the upload's length, the largest allowed file and, for a deferred
   * length, the user's quota: the reservation grows BEFORE a byte is accepted, so no byte past the quota
   * is ever taken. A live lease held by another writer → 423. Nothing else changes unless the length was
   * declared by a request without a checksum (then it is recorded now, so a writer that dies mid-body
   * does not lose it).
   */
  async tusBeginWrite(userId: string, req: TusWriteRequest): Promise<Outcome<TusWriteGrant>> {
    const got = this.#tusRow(userId);
    if (!got.ok) return got;
    let row = got.value;
    const now = Date.now();
    const offset = this.#offset();
    if (row.status === "completed") {
      if (req.offset !== offset) return offsetMismatch(offset);
      if (req.contentLength > 0)
        return fail(413, "exceeds_upload_length", "The upload is complete: no more bytes fit", {
          uploadLength: row.size,
        });
      return ok({ kind: "done", offset, file: JSON.parse(row.file!) as FileRecord });
    }
    if (this.#liveLease(row, now)) return locked(row.lease_expires_at! - now);
    // tus 1.0.0 §PATCH: "If the offsets do not match, the Server MUST respond with the 409 Conflict status
    // without modifying the upload resource."
    if (req.offset !== offset) return offsetMismatch(offset);
    if (row.status === "completing") {
      if (req.contentLength > 0)
        return fail(413, "exceeds_upload_length", "Every byte of the upload is here", { uploadLength: row.size });
      return ok({ kind: "complete", token: this.#grantLease(req.leaseMs, now), offset });
    }
    // active
    const recorded = row.length_deferred ? null : row.size;
    const maxLength = row.max_length ?? row.size;
    const declared = req.uploadLength;
    if (declared !== null) {
      // tus 1.0.0 §Creation: "Once set the length MUST NOT be changed."
      if (recorded !== null && declared !== recorded) {
        return fail(400, "upload_length_mismatch", "Upload-Length cannot change once set", {
          uploadLength: recorded,
          declared,
        });
      }
      if (declared < offset)
        return fail(400, "upload_length_too_small", "Upload-Length is below the bytes already received", {
          offset,
          declared,
        });
      if (declared > maxLength) return tooLarge(declared, maxLength);
    }
    const length = recorded ?? declared;
    if (length !== null && offset + req.contentLength > length) {
      return fail(413, "exceeds_upload_length", "The body runs past Upload-Length", {
        offset,
        contentLength: req.contentLength,
        uploadLength: length,
      });
    }
    if (length === null && offset + req.contentLength > maxLength)
      return tooLarge(offset + req.contentLength, maxLength);

    const token = this.#grantLease(req.leaseMs, now);
    if (row.length_deferred) {
      // Grow (or shrink) the reservation to cover every byte this request may bring.
      const bytes = declared ?? offset + req.contentLength;
      let adjusted: Outcome<unknown>;
      try {
        adjusted = await accountFor(this.env, userId).adjustReservation({
          userId,
          uploadId: row.upload_id,
          bytes,
          policy: req.policy,
        });
      } catch (err) {
        adjusted = fail(503, "ledger_unavailable", "The quota ledger did not answer; retry", {
          cause: String(err).slice(0, 200),
        });
      }
      // The await opened the input gate: a DELETE, an expiry or a lease thief may have come in meanwhile.
      row = this.#row()!;
      if (row.lease_token !== token || row.status !== "active") {
        return (
          this.#refuseTus(row) ??
          (row.status === "active" ? fail(409, "lease_lost", "Another writer took the upload") : conflict(row.status))
        );
      }
      if (!adjusted.ok) {
        this.#clearLease();
        return adjusted as { ok: false; error: Failure };
      }
    }
    if (declared !== null && row.length_deferred && !req.checksum) {
      this.#setLength(row, declared);
      this.#checkpoint(now);
      row = this.#row()!;
    }
    return ok({
      kind: "write",
      token,
      leaseExpiresAt: row.lease_expires_at!,
      r2Key: row.r2_key,
      r2UploadId: row.r2_upload_id,
      partSize: row.part_size,
      nextPart: this.#partCount() + 1,
      offset,
      length,
      tail: this.#tail(),
      newTailKey: `${tailPrefix(row.upload_id)}tail-${row.write_seq}-${token.slice(0, 8)}`,
    });
  }

  /** Keeps a live writer's lease from expiring (the writer calls this while it streams). */
  async tusRenewLease(userId: string, token: string, leaseMs: number): Promise<Outcome<{ leaseExpiresAt: number }>> {
    const row = this.#owned(userId);
    if (!row || row.lease_token !== token || (row.status !== "active" && row.status !== "completing")) {
      return fail(409, "lease_lost", "The write lease is no longer held");
    }
    const leaseExpiresAt = Date.now() + leaseMs;
    this.sql.exec("UPDATE session SET lease_expires_at = ? WHERE id = 1", leaseExpiresAt);
    return ok({ leaseExpiresAt });
  }

  /**
   * Records one whole part a writer without a checksum has put in R2 (not the upload's last part: that
   * one is recorded by tusFinishWrite, with the move to completing). Parts go in order; a part that opens
   * with the recorded tail's bytes supersedes it, and its objects are deleted. Slides the expiry and
   * the lease.
   */
  async tusRecordPart(
    userId: string,
    token: string,
    part: TusPart,
    leaseMs: number,
    meta: RequestMeta,
  ): Promise<Outcome<{ offset: number }>> {
    const got = this.#tusWritable(userId, token);
    if (!got.ok) return got;
    const row = got.value;
    const next = this.#partCount() + 1;
    const last = row.length_deferred ? null : row.part_count;
    if (
      part.partNumber !== next ||
      part.size !== row.part_size ||
      (last !== null && part.partNumber >= last) ||
      !sameKeys(part.consumedTail, this.#tailKeys())
    ) {
      return fail(409, "write_rejected", "The part does not follow the recorded bytes", {
        expectedPart: next,
        partNumber: part.partNumber,
      });
    }
    const now = Date.now();
    this.#insertPart(part, now);
    this.#dropTail();
    this.sql.exec(
      "UPDATE session SET expires_at = ?, lease_expires_at = ? WHERE id = 1",
      now + row.ttl_ms,
      now + leaseMs,
    );
    this.#checkpoint(now, partEvent(part, meta));
    return ok({ offset: this.#offset() });
  }

  /**
   * Ends a write: records its parts (all of them, or none if any does not follow), its new tail and the
   * length it declared, in one step. When the offset reaches the length the session moves to completing
   * and the writer keeps the lease to drive the completion; otherwise the lease is released. A refused
   * write's new tail segment is queued for deletion.
   */
  async tusFinishWrite(
    userId: string,
    token: string,
    fin: TusFinish,
    leaseMs: number,
    meta: RequestMeta,
  ): Promise<Outcome<TusWriteResult>> {
    const got = this.#tusWritable(userId, token);
    if (!got.ok) {
      if (fin.newTail) this.#discardTail(fin.newTail.key);
      return got;
    }
    const row = got.value;
    const now = Date.now();
    const reject = (why: string) => {
      if (fin.newTail) this.#discardTail(fin.newTail.key);
      return fail(409, "write_rejected", why);
    };
    if (fin.uploadLength !== null && !row.length_deferred && fin.uploadLength !== row.size)
      return reject("Upload-Length cannot change once set");
    const length = row.length_deferred ? fin.uploadLength : row.size;
    const partCount = length === null ? null : row.length_deferred ? Math.ceil(length / row.part_size) : row.part_count;
    // Check everything before changing anything.
    let next = this.#partCount() + 1;
    let tail = this.#tailKeys();
    let bytes = this.#partBytes();
    for (const part of fin.parts) {
      const lastPart = partCount !== null && part.partNumber === partCount;
      const expected = lastPart ? length! - row.part_size * (partCount! - 1) : row.part_size;
      if (
        part.partNumber !== next ||
        part.size !== expected ||
        (partCount !== null && part.partNumber > partCount) ||
        !sameKeys(part.consumedTail, tail)
      ) {
        return reject("The parts do not follow the recorded bytes");
      }
      bytes += part.size;
      tail = [];
      next++;
    }
    // A new segment either replaces every remaining segment (their bytes were copied in) or follows them.
    if (fin.newTail && fin.newTail.copied.length > 0 && !sameKeys(fin.newTail.copied, tail)) {
      return reject("The new tail does not build on the recorded one");
    }
    const kept = fin.newTail && fin.newTail.copied.length > 0 ? [] : tail;
    if (fin.newTail && kept.length + 1 > MAX_TAIL_SEGMENTS) return reject("Too many tail segments");
    const keptBytes = tail.length > 0 && kept.length > 0 ? this.#tailSize() : 0;
    const offset = bytes + keptBytes + (fin.newTail?.size ?? 0);
    if (length !== null && offset > length) return reject("The write runs past Upload-Length");
    if (length !== null && length < this.#offset()) return reject("Upload-Length is below the bytes already received");

    for (const part of fin.parts) this.#insertPart(part, now);
    if (fin.parts.length > 0 || fin.newTail) {
      // Segments consumed by a part or copied into the new one go; the new one is appended.
      for (const key of this.#tailKeys()) {
        if (!kept.includes(key)) {
          this.#discardTail(key);
          this.sql.exec("DELETE FROM tail_segments WHERE key = ?", key);
        }
      }
      if (fin.newTail)
        this.sql.exec("INSERT INTO tail_segments (key, size) VALUES (?, ?)", fin.newTail.key, fin.newTail.size);
      this.sql.exec("UPDATE session SET expires_at = ? WHERE id = 1", now + row.ttl_ms);
    }
    if (fin.uploadLength !== null && row.length_deferred) this.#setLength(row, fin.uploadLength);
    const current = this.#row()!;
    const completing = length !== null && offset === length && this.#tailKeys().length === 0;
    if (completing) {
      this.#move(current, "completing", now);
      this.sql.exec(
        "UPDATE session SET expires_at = ?, lease_expires_at = ? WHERE id = 1",
        now + current.ttl_ms,
        now + leaseMs,
      );
    } else {
      this.#clearLease();
    }
    this.#checkpoint(
      now,
      fin.parts.map((p) => partEvent(p, meta)),
    );
    const after = this.#row()!;
    return ok({ offset: this.#offset(), length, expiresAt: after.expires_at, completing });
  }

  /**
   * Gives the lease back after a failed write (checksum mismatch, a body cut short, a storage error) and
   * queues the deletion of the tail segment it wrote but never recorded. Nothing recorded changes.
   */
  async tusReleaseLease(userId: string, token: string, unrecordedTail: string | null): Promise<void> {
    const row = this.#owned(userId);
    if (!row) return;
    if (unrecordedTail && !this.#tailKeys().includes(unrecordedTail)) this.#discardTail(unrecordedTail);
    if (row.lease_token === token) this.#clearLease();
  }

  /**
   * tus termination (DELETE). An unfinished upload is aborted like the native DELETE (multipart upload
   * aborted, tail objects deleted, reservation released). A completed one is marked terminated and its
   * file id returned so the Worker removes the file. Afterwards the upload answers 410.
   */
  async tusTerminate(
    userId: string,
    meta: RequestMeta,
  ): Promise<Outcome<{ kind: "terminated" } | { kind: "file"; fileId: string }>> {
    const row = this.#owned(userId);
    if (row?.protocol !== "tus") return notFound();
    const current = this.#expireIfDue(row);
    const now = Date.now();
    if (current.status === "completed") {
      this.sql.exec("UPDATE session SET terminated_at = COALESCE(terminated_at, ?) WHERE id = 1", now);
      return ok({ kind: "file", fileId: current.file_id });
    }
    const refused = this.#refuseTus(current);
    if (refused) return refused;
    if (current.status === "completing") {
      if (this.#liveLease(current, now)) return locked(current.lease_expires_at! - now);
      this.#end(current, "failed", now, "client_terminate", { action: "upload.abort", meta, bytes: 0 }, true);
    } else {
      this.#end(current, "aborted", now, "client_terminate", { action: "upload.abort", meta, bytes: 0 });
    }
    this.sql.exec("UPDATE session SET terminated_at = ? WHERE id = 1", now);
    await this.#deliver(["ledger", "r2"]);
    return ok({ kind: "terminated" });
  }

  /** For the ledger's reconciliation: does this session exist, and how is it doing. */
  async ledgerView(): Promise<LedgerView> {
    const row = this.#row();
    if (!row) return { exists: false };
    return {
      exists: true,
      status: row.status,
      expiresAt: row.expires_at,
      file: row.file ? (JSON.parse(row.file) as FileRecord) : null,
    };
  }

  /** Test and operator view of what is still waiting in the outbox. */
  async pendingCheckpoints(): Promise<Record<string, number>> {
    return this.outbox.pending();
  }

  /** Called by the periodic sweep for sessions D1 still shows active past expiry: runs the due jobs now. */
  async sweep(): Promise<void> {
    await this.alarm();
  }

  /**
   * The one alarm, multiplexed: expire the session when its time has come, then deliver the outbox.
   * At-least-once and idempotent: every step checks the current state first.
   */
  override async alarm(): Promise<void> {
    const row = this.#row();
    if (row) {
      const now = Date.now();
      if (row.status === "active") this.#expireIfDue(row, now);
      else if (row.status === "completing" && now >= row.expires_at) {
        // The Worker that was assembling never came back. The object may or may not exist: remove both
        // the multipart upload and any assembled object, and give the bytes back.
        this.#end(
          row,
          "failed",
          now,
          "completion_abandoned",
          { action: "upload.fail", meta: SYSTEM, bytes: 0, errorCode: "completion_abandoned" },
          true,
        );
      }
    }
    await this.#deliver();
  }

  // ---- internals ---------------------------------------------------------------------------------

  /** The caller's tus session, expired if due; refused (404/410) when it is not there for tus any more. */
  #tusRow(userId: string): Outcome<SessionRow> {
    const row = this.#owned(userId);
    if (row?.protocol !== "tus") return notFound();
    const current = this.#expireIfDue(row);
    return this.#refuseTus(current) ?? ok(current);
  }

  /** The caller's active tus session, if `token` still holds its lease. */
  #tusWritable(userId: string, token: string): Outcome<SessionRow> {
    const got = this.#tusRow(userId);
    if (!got.ok) return got;
    const row = got.value;
    if (row.status !== "active") return conflict(row.status);
    if (row.lease_token !== token) return fail(409, "lease_lost", "Another writer took the upload");
    return got;
  }

  /**
   * tus 1.0.0 §Expiration: "the Server SHOULD respond with the 404 Not Found or 410 Gone status. The
   * latter one SHOULD be used if the Server is keeping track of expired uploads." It is; so is a
   * terminated or failed upload (§Termination: "the Server SHOULD respond with the 404 Not Found or 410
   * Gone status").
   */
  #refuseTus(row: SessionRow): { ok: false; error: Failure } | null {
    if (row.status === "expired") return fail(410, "upload_expired", "The upload expired and was cleaned up");
    if (row.status === "aborted" || row.terminated_at !== null)
      return fail(410, "upload_terminated", "The upload was terminated");
    if (row.status === "failed")
      return fail(410, "upload_failed", "The upload failed and was cleaned up", { reason: row.failure });
    return null;
  }

  #liveLease(row: SessionRow, now: number): boolean {
    return row.lease_token !== null && (row.lease_expires_at ?? 0) > now;
  }

  /** Takes the lease for a new token; every grant also reserves a fresh tail key (`write_seq`). */
  #grantLease(leaseMs: number, now: number): string {
    const token = crypto.randomUUID();
    this.sql.exec(
      "UPDATE session SET lease_token = ?, lease_expires_at = ?, write_seq = write_seq + 1 WHERE id = 1",
      token,
      now + leaseMs,
    );
    return token;
  }

  #clearLease(): void {
    this.sql.exec("UPDATE session SET lease_token = NULL, lease_expires_at = NULL WHERE id = 1");
  }

  #partCount(): number {
    return this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM parts").one().n;
  }

  #partBytes(): number {
    return this.sql.exec<{ bytes: number }>("SELECT COALESCE(SUM(size), 0) AS bytes FROM parts").one().bytes;
  }

  /** The tus offset: bytes in recorded parts plus the recorded tail. */
  #offset(): number {
    return this.#partBytes() + this.#tailSize();
  }

  #tail(): TailRef[] {
    return this.sql
      .exec<{ key: string; size: number }>("SELECT key, size FROM tail_segments ORDER BY seq")
      .toArray()
      .map((t) => ({ key: t.key, size: t.size }));
  }

  #tailKeys(): string[] {
    return this.#tail().map((t) => t.key);
  }

  #tailSize(): number {
    return this.sql.exec<{ bytes: number }>("SELECT COALESCE(SUM(size), 0) AS bytes FROM tail_segments").one().bytes;
  }

  #insertPart(part: PartRecord, now: number): void {
    this.sql.exec(
      "INSERT INTO parts (part_number, size, etag, uploaded_at) VALUES (?, ?, ?, ?)",
      part.partNumber,
      part.size,
      part.etag,
      now,
    );
  }

  /** The recorded tail was consumed into a part: forget it and delete its objects. */
  #dropTail(): void {
    for (const key of this.#tailKeys()) this.#discardTail(key);
    this.sql.exec("DELETE FROM tail_segments");
  }

  /** Queues the deletion of a tail object that is no longer (or never was) part of the upload. */
  #discardTail(key: string): void {
    this.outbox.enqueue("r2", { op: "delete", key } satisfies R2Job);
    this.#schedule();
  }

  /**
   * Records a deferred length: the part count follows from it (the part size was planned for the largest
   * allowed file). A zero-length upload needs no multipart upload: it is aborted and completion writes
   * an empty object.
   */
  #setLength(row: SessionRow, length: number): void {
    this.sql.exec(
      "UPDATE session SET size = ?, part_count = ?, length_deferred = 0 WHERE id = 1",
      length,
      Math.ceil(length / row.part_size),
    );
    if (length === 0 && row.r2_upload_id) {
      this.outbox.enqueue("r2", { op: "abort", key: row.r2_key, uploadId: row.r2_upload_id } satisfies R2Job);
      this.sql.exec("UPDATE session SET r2_upload_id = NULL WHERE id = 1");
    }
  }

  #row(): SessionRow | null {
    return oneRow<SessionRow>(this.sql, "SELECT * FROM session WHERE id = 1");
  }

  #owned(userId: string): SessionRow | null {
    const row = this.#row();
    return row && row.user_id === userId ? row : null;
  }

  #parts(): PartRecord[] {
    return this.sql
      .exec<{ part_number: number; size: number; etag: string }>(
        "SELECT part_number, size, etag FROM parts ORDER BY part_number",
      )
      .toArray()
      .map((p) => ({ partNumber: p.part_number, size: p.size, etag: p.etag }));
  }

  #missingParts(row: SessionRow): number[] {
    const have = new Set(
      this.sql
        .exec<{ n: number }>("SELECT part_number AS n FROM parts")
        .toArray()
        .map((r) => r.n),
    );
    const missing: number[] = [];
    for (let n = 1; n <= row.part_count; n++) if (!have.has(n)) missing.push(n);
    return missing;
  }

  #view(row: SessionRow): SessionView {
    const parts = this.#parts();
    return {
      uploadId: row.upload_id,
      userId: row.user_id,
      fileId: row.file_id,
      status: row.status,
      protocol: row.protocol as SessionView["protocol"],
      filename: row.filename,
      contentType: row.content_type,
      size: row.size,
      partSize: row.part_size,
      partCount: row.part_count,
      sha256: row.sha256,
      metadata: row.metadata ? (JSON.parse(row.metadata) as Record<string, string>) : null,
      parts,
      missingParts: this.#missingParts(row),
      // A tus upload's tail counts: it is what the tus offset reports.
      bytesReceived: parts.reduce((sum, p) => sum + p.size, 0) + this.#tailSize(),
      createdAt: row.created_at,
      expiresAt: row.expires_at,
      completedAt: row.completed_at,
      file: row.file ? (JSON.parse(row.file) as FileRecord) : null,
    };
  }

  /** 410 once expired, 409 for any other state that takes no more writes, null when active. */
  #refuseUnlessActive(row: SessionRow): { ok: false; error: Failure } | null {
    if (row.status === "active") return null;
    if (row.status === "expired") return fail(410, "upload_expired", "The upload expired and was cleaned up");
    return fail(409, "upload_not_active", `The upload is ${row.status}`, { status: row.status });
  }

  /** Expires an active session whose time has passed, even if its alarm has not fired yet. */
  #expireIfDue(row: SessionRow, now = Date.now()): SessionRow {
    if (row.status !== "active" || now < row.expires_at) return row;
    this.#end(row, "expired", now, "expired", { action: "upload.expire", meta: SYSTEM, bytes: 0 });
    return this.#row()!;
  }

  /**
   * Moves to a terminal state that gives the reservation back: queue the R2 clean-up and the ledger
   * release with the state change, in one synchronous step.
   */
  #end(
    row: SessionRow,
    to: UploadStatus,
    now: number,
    reason: string,
    event: CheckpointEvent,
    deleteObject = false,
  ): void {
    this.#move(row, to, now, reason);
    if (row.r2_upload_id)
      this.outbox.enqueue("r2", { op: "abort", key: row.r2_key, uploadId: row.r2_upload_id } satisfies R2Job);
    if (deleteObject) this.outbox.enqueue("r2", { op: "delete", key: row.r2_key } satisfies R2Job);
    if (row.protocol === "tus") {
      // The recorded tail and any tail a writer wrote but never recorded.
      this.sql.exec("DELETE FROM tail_segments");
      this.sql.exec("UPDATE session SET lease_token = NULL, lease_expires_at = NULL WHERE id = 1");
      this.outbox.enqueue("r2", { op: "deletePrefix", prefix: tailPrefix(row.upload_id) } satisfies R2Job);
    }
    this.outbox.enqueue("ledger", {
      userId: row.user_id,
      uploadId: row.upload_id,
      kind: "release",
      reason,
    } satisfies LedgerMessage);
    this.#checkpoint(now, event);
  }

  #move(row: SessionRow, to: UploadStatus, now: number, failure: string | null = null): void {
    if (!TRANSITIONS[row.status].includes(to)) throw new Error(`illegal transition ${row.status} → ${to}`);
    this.sql.exec(
      "UPDATE session SET status = ?, failure = COALESCE(?, failure), updated_at = ? WHERE id = 1",
      to,
      failure,
      now,
    );
  }

  /** Bumps the version and queues the D1 checkpoint of the upload row (plus its audit event), then arms the alarm. */
  #checkpoint(now: number, event?: CheckpointEvent | CheckpointEvent[]): void {
    this.sql.exec("UPDATE session SET version = version + 1, updated_at = ? WHERE id = 1", now);
    const row = this.#row()!;
    const totals = this.sql
      .exec<{ n: number; bytes: number }>("SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM parts")
      .one();
    const statements: SqlStatement[] = [
      uploadRowStatement({
        uploadId: row.upload_id,
        fileId: row.file_id,
        userId: row.user_id,
        r2Key: row.r2_key,
        filename: row.filename,
        contentType: row.content_type,
        size: row.length_deferred ? null : row.size,
        partSize: row.part_size,
        partsUploaded: totals.n,
        bytesReceived: totals.bytes + this.#tailSize(),
        sessionData: {
          r2UploadId: row.r2_upload_id,
          sha256: row.sha256,
          metadata: row.metadata ? JSON.parse(row.metadata) : null,
          failure: row.failure,
        },
        protocol: row.protocol,
        status: row.status,
        createdAt: row.created_at,
        updatedAt: now,
        expiresAt: row.expires_at,
        completedAt: row.completed_at,
        version: row.version,
      }),
    ];
    const events = event === undefined ? [] : Array.isArray(event) ? event : [event];
    for (const e of events) {
      statements.push(
        auditSql({
          id: crypto.randomUUID(),
          userId: row.user_id,
          action: e.action,
          success: !e.errorCode,
          uploadId: row.upload_id,
          fileId: e.fileId ?? row.file_id,
          errorCode: e.errorCode ?? null,
          bytesTransferred: e.bytes,
          ipAddress: e.meta.ipAddress,
          userAgent: e.meta.userAgent,
          metadata: { requestId: e.meta.requestId, ...e.metadata },
          timestamp: now,
        }),
      );
    }
    this.outbox.enqueue("d1", statements, now);
    this.#schedule();
  }

  async #deliver(topics?: ("d1" | "ledger" | "r2")[]): Promise<void> {
    const receivers = {
      d1: (batches: unknown[]) => runOnD1(this.env.DB, (batches as SqlStatement[][]).flat()),
      ledger: async (messages: unknown[]) => {
        for (const msg of messages as LedgerMessage[]) {
          // settle() is idempotent and never refuses; a transport error throws and the batch is retried.
          await accountFor(this.env, msg.userId).settle(msg);
        }
      },
      r2: async (jobs: unknown[]) => {
        for (const job of jobs as R2Job[]) {
          if (job.op === "delete") await this.env.BUCKET.delete(job.key);
          else if (job.op === "deletePrefix") await deletePrefix(this.env.BUCKET, job.prefix);
          else await abortMultipart(this.env.BUCKET, job.key, job.uploadId);
        }
      },
    };
    const chosen = topics ? Object.fromEntries(topics.map((t) => [t, receivers[t]])) : receivers;
    await this.outbox.deliver(chosen);
    this.#schedule();
  }

  /** Arms the single alarm for the earliest due job: outbox delivery or the session's expiry. */
  #schedule(): void {
    const row = this.#row();
    const due = [this.outbox.nextDueAt()];
    if (row && (row.status === "active" || row.status === "completing")) due.push(row.expires_at);
    const times = due.filter((t): t is number => t !== null);
    if (times.length > 0) void this.ctx.storage.setAlarm(Math.min(...times));
  }
}

interface CheckpointEvent {
  action: AuditAction;
  meta: RequestMeta;
  bytes: number;
  fileId?: string;
  errorCode?: string;
  metadata?: Record<string, unknown>;
}

/** Request metadata for events the object causes itself (expiry, clean-up). */
const SYSTEM: RequestMeta = { requestId: "alarm", ipAddress: null, userAgent: "durable-uploads/alarm" };

/** The exact size of part `n`: every part is `part_size` except the last, which holds the remainder. */
function partSizeOf(row: SessionRow, n: number): number {
  return n < row.part_count ? row.part_size : row.size - row.part_size * (row.part_count - 1);
}

function notFound(): { ok: false; error: Failure } {
  return fail(404, "upload_not_found", "Upload not found");
}

function conflict(status: UploadStatus): { ok: false; error: Failure } {
  return fail(409, "upload_not_active", `The upload is ${status}`, { status });
}

function offsetMismatch(offset: number): { ok: false; error: Failure } {
  return fail(409, "offset_mismatch", "Upload-Offset does not match the upload's offset", { offset });
}

/** 423 Locked: another writer holds the lease (tus clients retry on 423). */
function locked(remainingMs: number): { ok: false; error: Failure } {
  return fail(423, "upload_locked", "Another request is writing this upload; retry shortly", {
    retryAfterSeconds: Math.max(1, Math.ceil(remainingMs / 1000)),
  });
}

function tooLarge(size: number, maxFileSizeBytes: number): { ok: false; error: Failure } {
  return fail(413, "file_too_large", `Files are limited to ${maxFileSizeBytes} bytes`, { size, maxFileSizeBytes });
}

function partEvent(part: PartRecord, meta: RequestMeta): CheckpointEvent {
  return { action: "upload.part", meta, bytes: part.size, metadata: { partNumber: part.partNumber } };
}

function sameKeys(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((k, i) => k === b[i]);
}

function tusOnly(): { ok: false; error: Failure } {
  return fail(409, "protocol_mismatch", "This upload is written through the tus endpoint, /v1/tus/{id}");
}

/** Deletes every object under `prefix`, a page at a time. */
async function deletePrefix(bucket: R2Bucket, prefix: string): Promise<void> {
  let cursor: string | undefined;
  do {
    const listed = await bucket.list({ prefix, cursor, limit: 1000 });
    if (listed.objects.length > 0) await bucket.delete(listed.objects.map((o) => o.key));
    cursor = listed.truncated ? listed.cursor : undefined;
  } while (cursor);
}

/** Aborts an R2 multipart upload; one that R2 no longer knows (already aborted or completed) is done. */
async function abortMultipart(bucket: R2Bucket, key: string, uploadId: string): Promise<void> {
  try {
    await bucket.resumeMultipartUpload(key, uploadId).abort();
  } catch (err) {
    if (/NoSuchUpload|does not exist|not found/i.test(String(err))) return;
    throw err;
  }
}
