import type { RequestMeta } from "../../src/core/audit";
import type { FileRecord, PartRecord, SessionInit, SessionView, UploadStatus } from "../../src/core/domain";
import { fail, type Outcome, ok } from "../../src/core/outcome";
import { runOnD1, type Topic } from "../shared/outbox";
import { runR2Jobs } from "../shared/r2-jobs";
import { SqliteObject } from "../shared/sqlite-object";
import { accountFor } from "../stubs";
import { abandonCompletion, beginCompletion, finishCompletion, resolveDueCompletion } from "./completion";
import type {
  AbandonedCompletion,
  AssemblyResult,
  CompletionStep,
  LedgerView,
  PartTicket,
  TusFinish,
  TusPart,
  TusStatus,
  TusTermination,
  TusWriteGrant,
  TusWriteRequest,
  TusWriteResult,
} from "./contract";
import { dueCompletion, runDueExpiry } from "./lifecycle";
import { abortUpload, authorizePart, createSession, forgetPart, recordPart, viewFor, viewOf } from "./native-upload";
import { notFound } from "./refusals";
import { SESSION_SCHEMA } from "./schema";
import { type Answer, type SessionContext, type SessionTopics, scheduleAlarm } from "./session-context";
import { SessionStore } from "./session-store";
import {
  finishTusWrite,
  grantTusWrite,
  recordTusPart,
  releaseTusLease,
  renewTusLease,
  resumeTusWrite,
  startTusWrite,
  terminateTus,
  tusStatus,
} from "./tus-upload";

/** How soon the alarm asks R2 again about a completion past its window when R2 did not answer. */
const RETRY_COMPLETION_CHECK_MS = 60_000;

/**
 * One per upload: owns the multipart session (parts and their ETags, since R2's binding cannot list
 * them), its state machine, and its expiry alarm. Bytes never pass through here: the Worker asks for a
 * ticket, streams the part to R2 itself, then records the part's ETag.
 *
 * Every state change and the messages it owes (D1 checkpoint, ledger settlement, R2 clean-up) are
 * written in one synchronous step into SQLite and the outbox; delivery comes after, at least once.
 *
 * The methods here are the RPC surface the Worker calls. Each runs the synchronous steps of
 * `native-upload.ts` and `tus-upload.ts`; every `await` (R2, the account object, outbox delivery) is
 * here, and after one that lets other requests in, the step that follows loads the session again.
 */
export class UploadSession extends SqliteObject<SessionTopics> {
  readonly #cx: SessionContext;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env, SESSION_SCHEMA);
    this.#cx = {
      store: new SessionStore(this.sql),
      outbox: this.outbox,
      setAlarm: (at) => void ctx.storage.setAlarm(at),
    };
  }

  /**
   * Creates the session and its R2 multipart upload. Retrying with the same init returns the same
   * session; the quota was reserved by the caller beforehand.
   */
  async open(init: SessionInit, meta: RequestMeta): Promise<Outcome<SessionView>> {
    const existing = this.#cx.store.load();
    if (existing) {
      if (existing.userId !== init.userId || existing.uploadId !== init.uploadId) return notFound();
      return ok(viewOf(this.#cx.store, existing));
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
    const raced = this.#cx.store.load();
    if (raced) {
      if (r2UploadId) this.outbox.enqueue("r2", { op: "abort", key: init.r2Key, uploadId: r2UploadId });
      scheduleAlarm(this.#cx);
      return raced.userId === init.userId ? ok(viewOf(this.#cx.store, raced)) : notFound();
    }
    return ok(createSession(this.#cx, init, r2UploadId, meta));
  }

  /** The session as its owner sees it; anyone else gets 404. */
  async view(userId: string): Promise<Outcome<SessionView>> {
    return viewFor(this.#cx, userId);
  }

  /**
   * Checks that part `partNumber` of exactly `size` bytes may be written now and returns where to write
   * it, with the write's ticket number. A part recorded before is forgotten now (R2 may replace it from
   * this moment): the part counts again only once `recordPart` has the new write's ETag.
   */
  async authorizePart(userId: string, partNumber: number, size: number): Promise<Outcome<PartTicket>> {
    return authorizePart(this.#cx, userId, partNumber, size);
  }

  /**
   * Records a part the Worker wrote to R2 and slides the expiry. `attempt` is the ticket's number: a write
   * that another write of the same part overlapped is refused (409 part_write_conflict) and the part stays
   * missing.
   */
  async recordPart(
    userId: string,
    part: PartRecord,
    meta: RequestMeta,
    attempt?: number,
  ): Promise<Outcome<PartRecord>> {
    return recordPart(this.#cx, userId, part, meta, attempt);
  }

  /**
   * A write of part `partNumber` failed after its ticket (digest mismatch, a body cut short, a storage
   * error): R2 may hold its bytes now, so the part is missing until it is sent again. Idempotent.
   */
  async forgetPart(userId: string, partNumber: number): Promise<Outcome<{ missing: true }>> {
    return forgetPart(this.#cx, userId, partNumber);
  }

  /**
   * First half of completion: checks every part is present and moves to `completing`. Returns what the
   * Worker needs to assemble the object. Safe to call again (a retried or concurrent complete gets the
   * same step; a completed upload gets its file).
   */
  async beginCompletion(userId: string): Promise<Outcome<CompletionStep>> {
    return beginCompletion(this.#cx, userId);
  }

  /**
   * Second half of completion: records the assembled file and commits the reservation into used bytes,
   * or, when the declared SHA-256 did not match (the Worker has deleted the object), fails the upload
   * and releases the reservation.
   */
  async finishCompletion(userId: string, result: AssemblyResult, meta: RequestMeta): Promise<Outcome<FileRecord>> {
    return this.#answer(finishCompletion(this.#cx, userId, result, meta));
  }

  /**
   * The Worker could not assemble the object for completion `attempt` (R2 refused the parts or failed):
   * the upload is handed back, active again, so the client can complete again, re-send parts or abort.
   * `partsRejected` (R2 does not hold a part as recorded, and does not say which): every part is
   * forgotten, to be sent again. Says where the upload stands (with its file, if another request
   * completed it meanwhile).
   */
  async abandonCompletion(
    userId: string,
    attempt?: number,
    partsRejected?: boolean,
  ): Promise<Outcome<AbandonedCompletion>> {
    return abandonCompletion(this.#cx, userId, attempt, partsRejected);
  }

  /** Aborts the upload: the R2 multipart upload is aborted and the reservation released. Idempotent. */
  async abort(userId: string, meta: RequestMeta): Promise<Outcome<{ status: UploadStatus }>> {
    return this.#answer(abortUpload(this.#cx, userId, meta));
  }

  // ---- tus (see tus-upload.ts) --------------------------------------------------------------------

  /**
   * HEAD: where a tus upload stands. Unknown, another user's or a native upload → 404; gone → 410; its
   * last byte is in and a live writer is completing it → 423.
   */
  async tusStatus(userId: string): Promise<Outcome<TusStatus>> {
    return tusStatus(this.#cx, userId);
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
    const now = Date.now();
    const write = startTusWrite(this.#cx, userId, req, now);
    if (write.kind === "answer") return write.outcome;
    const bytes = write.admission.reserveBytes;
    if (bytes === null) return grantTusWrite(this.#cx, write, write.session, now);
    let adjusted: Outcome<unknown>;
    try {
      adjusted = await accountFor(this.env, userId).adjustReservation({
        userId,
        uploadId: write.session.uploadId,
        bytes,
        policy: req.policy,
      });
    } catch (err) {
      adjusted = fail(503, "ledger_unavailable", "The quota ledger did not answer; retry", {
        cause: String(err).slice(0, 200),
      });
    }
    // The await opened the input gate: resumeTusWrite checks the lease and the state again.
    return resumeTusWrite(this.#cx, write, adjusted, now);
  }

  /** Keeps a live writer's lease from expiring (the writer calls this while it streams). */
  async tusRenewLease(userId: string, token: string, leaseMs: number): Promise<Outcome<{ leaseExpiresAt: number }>> {
    return renewTusLease(this.#cx, userId, token, leaseMs);
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
    return recordTusPart(this.#cx, userId, token, part, leaseMs, meta);
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
    return finishTusWrite(this.#cx, userId, token, fin, leaseMs, meta);
  }

  /**
   * Gives the lease back after a failed write (checksum mismatch, a body cut short, a storage error) and
   * queues the deletion of the tail segment it wrote but never recorded. Nothing recorded changes.
   */
  async tusReleaseLease(
    userId: string,
    token: string,
    unrecordedTail: string | null,
  ): Promise<Outcome<{ released: boolean }>> {
    return releaseTusLease(this.#cx, userId, token, unrecordedTail);
  }

  /**
   * tus termination (DELETE). An unfinished upload is aborted like the native DELETE (multipart upload
   * aborted, tail objects deleted, reservation released). A completed one is marked terminated and its
   * file id returned so the Worker removes the file. Afterwards the upload answers 410.
   */
  async tusTerminate(userId: string, meta: RequestMeta): Promise<Outcome<TusTermination>> {
    return this.#answer(terminateTus(this.#cx, userId, meta));
  }

  // ---- the ledger, operators and the alarm ---------------------------------------------------------

  /** For the ledger's reconciliation: does this session exist, and how is it doing. */
  async ledgerView(): Promise<LedgerView> {
    const session = this.#cx.store.load();
    if (!session) return { exists: false };
    return { exists: true, status: session.status, expiresAt: session.expiresAt, file: session.file };
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
   * The one alarm, multiplexed: expire the session when its time has come, resolve a completion past its
   * window, then deliver the outbox. At-least-once and idempotent: every step checks the current state
   * first.
   */
  override async alarm(): Promise<void> {
    runDueExpiry(this.#cx, Date.now());
    await this.#resolveDueCompletion();
    await this.#deliver();
  }

  /**
   * A completion whose Worker never came back (or is far slower than the window allows): ask R2 whether
   * the object was assembled, then resolve it (completion.ts `resolveDueCompletion`). If R2 does not
   * answer, try again in a minute: the deadline moves, or the alarm would fire again at once.
   */
  async #resolveDueCompletion(): Promise<void> {
    const due = dueCompletion(this.#cx, Date.now());
    if (!due) return;
    let assembled: { etag: string } | null;
    try {
      const head = await this.env.BUCKET.head(due.r2Key);
      assembled = head ? { etag: head.etag } : null;
    } catch (err) {
      console.warn(JSON.stringify({ level: "warn", msg: "completion check failed", error: String(err) }));
      if (dueCompletion(this.#cx, Date.now())) this.#cx.store.slideExpiry(Date.now() + RETRY_COMPLETION_CHECK_MS);
      return;
    }
    // The await let other requests in: resolveDueCompletion checks the session again.
    resolveDueCompletion(this.#cx, assembled, Date.now());
  }

  /** Delivers what `answer` waits for, then gives its outcome. */
  async #answer<T>(answer: Answer<T>): Promise<Outcome<T>> {
    if (answer.deliver.length > 0) await this.#deliver(answer.deliver);
    return answer.outcome;
  }

  /** Delivers the outbox (only `topics`, when given), then re-arms the alarm for what is left. */
  async #deliver(topics?: readonly Topic<SessionTopics>[]): Promise<void> {
    await this.outbox.deliver(
      {
        d1: (batches) => runOnD1(this.env.DB, batches.flat()),
        ledger: async (messages) => {
          for (const msg of messages) {
            // settle() is idempotent and never refuses; a transport error throws and the batch is retried.
            await accountFor(this.env, msg.userId).settle(msg);
          }
        },
        r2: (jobs) => runR2Jobs(this.env.BUCKET, jobs),
      },
      topics,
    );
    scheduleAlarm(this.#cx);
  }
}
