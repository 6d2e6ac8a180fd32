import { DurableObject } from "cloudflare:workers";
import { auditSql, type AuditAction, type RequestMeta } from "../src/audit";
import type { FileRecord, PartRecord, SessionInit, SessionView, UploadStatus } from "../src/domain";
import { fail, ok, type Failure, type Outcome } from "../src/errors";
import { accountFor } from "../src/stubs";
import { uploadRowStatement } from "./checkpoints";
import { OUTBOX_SCHEMA, Outbox, runOnD1, type SqlStatement } from "./outbox";
import { migrateSchema, oneRow } from "./schema";
import type { LedgerMessage } from "./user-account";

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
type R2Job = { op: "abort"; key: string; uploadId: string } | { op: "delete"; key: string };

/** What the Worker needs to write a part straight to R2. */
export interface PartTicket {
  r2Key: string;
  r2UploadId: string;
  expectedSize: number;
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
    }
  | { kind: "done"; file: FileRecord };

/** The Worker's report of assembling: R2's etag, and whether the declared SHA-256 matched. */
export interface AssemblyResult {
  etag: string;
  checksum: "verified" | "not_declared" | { mismatch: string };
}

/** What the ledger's reconciliation needs to know about a session. */
export type LedgerView =
  | { exists: false }
  | { exists: true; status: UploadStatus; expiresAt: number; file: FileRecord | null };

/**
 * One per upload: owns the multipart session (parts and their ETags, since R2's binding cannot list
 * them), its state machine, and its expiry alarm. Bytes never pass through here: the Worker asks for a
 * ticket, streams the part to R2 itself, then records the part's ETag.
 *
 * Every state change and the messages it owes (D1 checkpoint, ledger settlement, R2 clean-up) are
 * written in one synchronous step into SQLite and the outbox; delivery comes after, at least once.
 */
export class UploadSession extends DurableObject<Env> {
  readonly #sql: SqlStorage;
  readonly #outbox: Outbox;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    migrateSchema(ctx.storage, SCHEMA);
    this.#outbox = new Outbox(this.#sql);
  }

  /** Readiness probe: proves the namespace routes to a live object with working storage. */
  async ping(): Promise<"pong"> {
    this.#sql.exec("SELECT 1");
    return "pong";
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
    if (init.size > 0) {
      const mpu = await this.env.BUCKET.createMultipartUpload(init.r2Key, {
        httpMetadata: { contentType: init.contentType },
        customMetadata: { uploadId: init.uploadId, fileId: init.fileId, userId: init.userId },
      });
      r2UploadId = mpu.uploadId;
    }
    // The await above opened the input gate; a concurrent open of the same id may have won.
    const raced = this.#row();
    if (raced) {
      if (r2UploadId) this.#outbox.enqueue("r2", { op: "abort", key: init.r2Key, uploadId: r2UploadId } satisfies R2Job);
      this.#schedule();
      return raced.user_id === init.userId ? ok(this.#view(raced)) : notFound();
    }
    const now = Date.now();
    const ttlMs = init.ttlSeconds * 1000;
    this.#sql.exec(
      `INSERT INTO session (id, upload_id, user_id, file_id, r2_key, r2_upload_id, filename, content_type, size,
         part_size, part_count, sha256, metadata, protocol, status, ttl_ms, created_at, updated_at, expires_at)
       VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, ?, ?)`,
      init.uploadId, init.userId, init.fileId, init.r2Key, r2UploadId, init.filename, init.contentType, init.size,
      init.partSize, init.partCount, init.sha256, init.metadata ? JSON.stringify(init.metadata) : null, init.protocol,
      ttlMs, now, now, now + ttlMs,
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
    const refused = this.#refuseUnlessActive(this.#expireIfDue(row));
    if (refused) return refused;
    if (part.partNumber < 1 || part.partNumber > row.part_count || part.size !== partSizeOf(row, part.partNumber)) {
      return fail(400, "part_size_mismatch", "The part does not match the session's plan");
    }
    const now = Date.now();
    this.#sql.exec(
      `INSERT INTO parts (part_number, size, etag, uploaded_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (part_number) DO UPDATE SET size = excluded.size, etag = excluded.etag, uploaded_at = excluded.uploaded_at`,
      part.partNumber,
      part.size,
      part.etag,
      now,
    );
    // Each accepted part slides the expiry: an upload that makes progress never expires mid-way.
    this.#sql.exec("UPDATE session SET expires_at = ? WHERE id = 1", now + row.ttl_ms);
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
      const missing = this.#missingParts(current);
      if (missing.length > 0) {
        return fail(409, "parts_missing", `${missing.length} part(s) have not been uploaded`, { missingParts: missing.slice(0, 1000) });
      }
      const now = Date.now();
      this.#move(current, "completing", now);
      this.#sql.exec("UPDATE session SET expires_at = ? WHERE id = 1", now + current.ttl_ms);
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
      this.#outbox.enqueue("ledger", { userId, uploadId: row.upload_id, kind: "release", reason: "checksum_mismatch" } satisfies LedgerMessage);
      this.#checkpoint(now, { action: "upload.fail", meta, bytes: 0, errorCode: "checksum_mismatch", metadata: details });
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
    this.#sql.exec("UPDATE session SET completed_at = ?, file = ? WHERE id = 1", now, JSON.stringify(file));
    this.#outbox.enqueue("ledger", { userId, uploadId: row.upload_id, kind: "commit", file } satisfies LedgerMessage);
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

  /** For the ledger's reconciliation: does this session exist, and how is it doing. */
  async ledgerView(): Promise<LedgerView> {
    const row = this.#row();
    if (!row) return { exists: false };
    return { exists: true, status: row.status, expiresAt: row.expires_at, file: row.file ? (JSON.parse(row.file) as FileRecord) : null };
  }

  /** Test and operator view of what is still waiting in the outbox. */
  async pendingCheckpoints(): Promise<Record<string, number>> {
    return this.#outbox.pending();
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
        this.#end(row, "failed", now, "completion_abandoned", { action: "upload.fail", meta: SYSTEM, bytes: 0, errorCode: "completion_abandoned" }, true);
      }
    }
    await this.#deliver();
  }

  // ---- internals ---------------------------------------------------------------------------------

  #row(): SessionRow | null {
    return oneRow<SessionRow>(this.#sql, "SELECT * FROM session WHERE id = 1");
  }

  #owned(userId: string): SessionRow | null {
    const row = this.#row();
    return row && row.user_id === userId ? row : null;
  }

  #parts(): PartRecord[] {
    return this.#sql
      .exec<{ part_number: number; size: number; etag: string }>("SELECT part_number, size, etag FROM parts ORDER BY part_number")
      .toArray()
      .map((p) => ({ partNumber: p.part_number, size: p.size, etag: p.etag }));
  }

  #missingParts(row: SessionRow): number[] {
    const have = new Set(this.#sql.exec<{ n: number }>("SELECT part_number AS n FROM parts").toArray().map((r) => r.n));
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
      bytesReceived: parts.reduce((sum, p) => sum + p.size, 0),
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
  #end(row: SessionRow, to: UploadStatus, now: number, reason: string, event: CheckpointEvent, deleteObject = false): void {
    this.#move(row, to, now, reason);
    if (row.r2_upload_id) this.#outbox.enqueue("r2", { op: "abort", key: row.r2_key, uploadId: row.r2_upload_id } satisfies R2Job);
    if (deleteObject) this.#outbox.enqueue("r2", { op: "delete", key: row.r2_key } satisfies R2Job);
    this.#outbox.enqueue("ledger", { userId: row.user_id, uploadId: row.upload_id, kind: "release", reason } satisfies LedgerMessage);
    this.#checkpoint(now, event);
  }

  #move(row: SessionRow, to: UploadStatus, now: number, failure: string | null = null): void {
    if (!TRANSITIONS[row.status].includes(to)) throw new Error(`illegal transition ${row.status} → ${to}`);
    this.#sql.exec("UPDATE session SET status = ?, failure = COALESCE(?, failure), updated_at = ? WHERE id = 1", to, failure, now);
  }

  /** Bumps the version and queues the D1 checkpoint of the upload row (plus its audit event), then arms the alarm. */
  #checkpoint(now: number, event?: CheckpointEvent): void {
    this.#sql.exec("UPDATE session SET version = version + 1, updated_at = ? WHERE id = 1", now);
    const row = this.#row()!;
    const totals = this.#sql.exec<{ n: number; bytes: number }>("SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM parts").one();
    const statements: SqlStatement[] = [
      uploadRowStatement({
        uploadId: row.upload_id,
        fileId: row.file_id,
        userId: row.user_id,
        r2Key: row.r2_key,
        filename: row.filename,
        contentType: row.content_type,
        size: row.size,
        partSize: row.part_size,
        partsUploaded: totals.n,
        bytesReceived: totals.bytes,
        sessionData: { r2UploadId: row.r2_upload_id, sha256: row.sha256, metadata: row.metadata ? JSON.parse(row.metadata) : null, failure: row.failure },
        protocol: row.protocol,
        status: row.status,
        createdAt: row.created_at,
        updatedAt: now,
        expiresAt: row.expires_at,
        completedAt: row.completed_at,
        version: row.version,
      }),
    ];
    if (event) {
      statements.push(
        auditSql({
          id: crypto.randomUUID(),
          userId: row.user_id,
          action: event.action,
          success: !event.errorCode,
          uploadId: row.upload_id,
          fileId: event.fileId ?? row.file_id,
          errorCode: event.errorCode ?? null,
          bytesTransferred: event.bytes,
          ipAddress: event.meta.ipAddress,
          userAgent: event.meta.userAgent,
          metadata: { requestId: event.meta.requestId, ...event.metadata },
          timestamp: now,
        }),
      );
    }
    this.#outbox.enqueue("d1", statements, now);
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
          else await abortMultipart(this.env.BUCKET, job.key, job.uploadId);
        }
      },
    };
    const chosen = topics ? Object.fromEntries(topics.map((t) => [t, receivers[t]])) : receivers;
    await this.#outbox.deliver(chosen);
    this.#schedule();
  }

  /** Arms the single alarm for the earliest due job: outbox delivery or the session's expiry. */
  #schedule(): void {
    const row = this.#row();
    const due = [this.#outbox.nextDueAt()];
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

/** Aborts an R2 multipart upload; one that R2 no longer knows (already aborted or completed) is done. */
async function abortMultipart(bucket: R2Bucket, key: string, uploadId: string): Promise<void> {
  try {
    await bucket.resumeMultipartUpload(key, uploadId).abort();
  } catch (err) {
    if (/NoSuchUpload|does not exist|not found/i.test(String(err))) return;
    throw err;
  }
}
