import { type AuditEvent, auditSql, type RequestMeta } from "../../src/core/audit";
import type { FileRecord } from "../../src/core/domain";
import { isAllowedMediaType } from "../../src/core/media-type";
import { fail, type Outcome, ok } from "../../src/core/outcome";
import type { AccountPolicy } from "../../src/core/policy";
import {
  type BudgetCheck,
  BYTES_POLICY,
  type GcraState,
  gcraAll,
  quotaPolicy,
  REQUESTS_POLICY,
  rateLimitHeaders,
  userLimits,
} from "../../src/core/rate-limit";
import type { SqlStatement } from "../../src/core/sql";
import { fileRowStatement, quotaRowStatement } from "../shared/checkpoints";
import { OUTBOX_SCHEMA, runOnD1 } from "../shared/outbox";
import { oneRow } from "../shared/schema";
import { SqliteObject } from "../shared/sqlite-object";
import { sessionFor } from "../stubs";
import type {
  AccountView,
  ActiveUpload,
  Admission,
  LedgerMessage,
  PolicyOverrides,
  ReserveRequest,
  Usage,
} from "./contract";

/** Schema steps of the account object (append-only; see `migrateSchema`). */
const SCHEMA = [
  `CREATE TABLE account (
     id       INTEGER PRIMARY KEY CHECK (id = 1),
     user_id  TEXT NOT NULL,
     version  INTEGER NOT NULL DEFAULT 0,      -- bumped on every ledger change; orders D1 checkpoints
     limit_bytes INTEGER NOT NULL DEFAULT 0    -- the quota last applied, for checkpoints made without a policy
   );
   CREATE TABLE reservations (
     upload_id   TEXT PRIMARY KEY,
     file_id     TEXT NOT NULL,
     filename    TEXT NOT NULL,
     bytes       INTEGER NOT NULL CHECK (bytes >= 0),
     state       TEXT NOT NULL CHECK (state IN ('held', 'committed', 'released')),
     created_at  INTEGER NOT NULL,
     settled_at  INTEGER,
     check_at    INTEGER                        -- when to ask the upload session whether it still needs this
   );
   CREATE INDEX reservations_held ON reservations (state, created_at DESC, upload_id DESC);
   CREATE INDEX reservations_check ON reservations (state, check_at);
   CREATE TABLE files (
     file_id     TEXT PRIMARY KEY,
     record      TEXT NOT NULL,                 -- the FileRecord as JSON
     bytes       INTEGER NOT NULL CHECK (bytes >= 0),
     state       TEXT NOT NULL CHECK (state IN ('live', 'removed')),
     removed_at  INTEGER
   );
   CREATE INDEX files_state ON files (state);`,
  OUTBOX_SCHEMA,
  `CREATE TABLE overrides (
     key    TEXT PRIMARY KEY,              -- an AccountPolicy key set for this user by an administrator
     value  TEXT NOT NULL                  -- JSON
   );
   CREATE TABLE rate_state (
     budget  TEXT PRIMARY KEY,             -- 'requests' | 'bytes'
     tat     REAL NOT NULL                 -- GCRA theoretical arrival time, epoch ms
   );`,
];

/** How long a fresh reservation may wait for its session before the account asks after it. */
const RESERVATION_CHECK_MS = 5 * 60_000;

/**
 * One per user: serializes the user's quota ledger, rate limits and per-user overrides. Reservations are taken
 * when an upload is created and settled when it ends: committed into used bytes on completion, released
 * on abort, expiry or failure. Every grant is decided inside one synchronous step, so concurrent
 * requests can never both squeeze into the last free bytes.
 */
export class UserAccount extends SqliteObject {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env, SCHEMA);
  }

  /** The user's ledger. */
  async usage(userId: string, policy: AccountPolicy): Promise<Usage> {
    this.#bind(userId);
    return this.#usage(policy);
  }

  /**
   * Reserves `bytes` for a new upload if, and only if, they fit: `used + reserved + bytes ≤ limit`.
   * Retrying with the same upload id returns the same grant.
   */
  async reserve(req: ReserveRequest): Promise<Outcome<Usage>> {
    this.#bind(req.userId);
    const existing = oneRow<{ state: string }>(
      this.sql,
      "SELECT state FROM reservations WHERE upload_id = ?",
      req.uploadId,
    );
    if (existing) return ok(this.#usage(req.policy));
    // The user's own limits (administrator overrides) decide; they may be looser or stricter than the service's.
    const policy = this.#effective(req.policy);
    if (req.bytes > policy.maxFileSizeBytes) {
      return fail(413, "file_too_large", `Files are limited to ${policy.maxFileSizeBytes} bytes`, {
        size: req.bytes,
        maxFileSizeBytes: policy.maxFileSizeBytes,
      });
    }
    if (req.contentType !== undefined && !isAllowedMediaType(req.contentType, policy.allowedContentTypes)) {
      return fail(415, "unsupported_media_type", `Uploads of ${req.contentType} are not allowed`, {
        contentType: req.contentType,
        allowed: policy.allowedContentTypes,
      });
    }
    const before = this.#usage(req.policy);
    if (before.usedBytes + before.reservedBytes + req.bytes > before.limitBytes) {
      return fail(413, "quota_exceeded", "The upload does not fit in the remaining quota", {
        usedBytes: before.usedBytes,
        reservedBytes: before.reservedBytes,
        limitBytes: before.limitBytes,
        requestedBytes: req.bytes,
      });
    }
    if (before.activeUploads >= policy.maxActiveUploads) {
      return fail(429, "too_many_active_uploads", "Too many uploads are active; complete or abort one first", {
        activeUploads: before.activeUploads,
        maxActiveUploads: policy.maxActiveUploads,
      });
    }
    const now = Date.now();
    this.sql.exec(
      `INSERT INTO reservations (upload_id, file_id, filename, bytes, state, created_at, check_at)
       VALUES (?, ?, ?, ?, 'held', ?, ?)`,
      req.uploadId,
      req.fileId,
      req.filename,
      req.bytes,
      now,
      now + RESERVATION_CHECK_MS,
    );
    this.#changed(req.policy, []);
    return ok(this.#usage(req.policy));
  }

  /**
   * Decides whether one request may proceed under the user's rate limits (GCRA: no timers, exact under
   * concurrency because this object serializes its callers): one request unit, plus `bytes` of the byte
   * budget for a request that carries upload data. A refused request spends nothing.
   */
  async admit(req: { userId: string; policy: AccountPolicy; bytes: number }): Promise<Admission> {
    this.#bind(req.userId);
    const policy = this.#effective(req.policy);
    const limits = userLimits(policy);
    const states = Object.fromEntries(
      this.sql
        .exec<{ budget: string; tat: number }>("SELECT budget, tat FROM rate_state")
        .toArray()
        .map((r) => [r.budget, { tat: r.tat } as GcraState]),
    );
    const now = Date.now();
    const checks: Record<string, BudgetCheck> = {
      [REQUESTS_POLICY]: { state: states[REQUESTS_POLICY], limit: limits.requests, cost: 1 },
    };
    if (req.bytes > 0) checks[BYTES_POLICY] = { state: states[BYTES_POLICY], limit: limits.bytes, cost: req.bytes };
    const decision = gcraAll(checks, now);
    if (decision.allowed) {
      for (const [budget, result] of Object.entries(decision.results)) {
        this.sql.exec(
          "INSERT INTO rate_state (budget, tat) VALUES (?, ?) ON CONFLICT (budget) DO UPDATE SET tat = excluded.tat",
          budget,
          result.state.tat,
        );
      }
    }
    const decisions = [
      { policy: quotaPolicy(REQUESTS_POLICY, limits.requests), result: decision.results[REQUESTS_POLICY] },
      ...(decision.results[BYTES_POLICY]
        ? [{ policy: quotaPolicy(BYTES_POLICY, limits.bytes, "content-bytes"), result: decision.results[BYTES_POLICY] }]
        : []),
    ];
    const headers = rateLimitHeaders(decisions);
    const tooBig = decisions.some((d) => d.result.exceedsBurst);
    const waits = decisions
      .filter((d) => !d.result.allowed && d.result.retryAfterSeconds !== null)
      .map((d) => d.result.retryAfterSeconds!);
    return {
      allowed: decision.allowed,
      status: decision.allowed ? 200 : tooBig ? 413 : 429,
      headers,
      retryAfterSeconds: decision.allowed || tooBig ? null : Math.max(...waits),
    };
  }

  /** Sets or (with null) removes this user's overrides of the service policy. */
  async setOverrides(
    userId: string,
    patch: { [K in keyof AccountPolicy]?: AccountPolicy[K] | null },
    policy: AccountPolicy,
  ): Promise<AccountView> {
    this.#bind(userId);
    for (const [key, value] of Object.entries(patch)) {
      if (value === undefined) continue;
      if (value === null) this.sql.exec("DELETE FROM overrides WHERE key = ?", key);
      else
        this.sql.exec(
          "INSERT INTO overrides (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
          key,
          JSON.stringify(value),
        );
    }
    // The limit is part of the ledger's checkpoint: record the change.
    this.#changed(this.#effective(policy), []);
    return this.adminView(userId, policy);
  }

  /** The user's effective limits (service policy with overrides) and ledger: what a client may still send. */
  async limits(userId: string, policy: AccountPolicy): Promise<{ limits: AccountPolicy; usage: Usage }> {
    this.#bind(userId);
    return { limits: this.#effective(policy), usage: this.#usage(policy) };
  }

  /** Everything an operator needs about this user: ledger, effective limits, overrides, active uploads. */
  async adminView(userId: string, policy: AccountPolicy): Promise<AccountView> {
    this.#bind(userId);
    return {
      userId,
      usage: this.#usage(policy),
      limits: this.#effective(policy),
      overrides: this.#overrides(),
      activeUploads: await this.listActiveUploads({ userId, limit: 100 }),
    };
  }

  /**
   * Resizes a held reservation to `bytes` (a tus upload with a deferred length reserves as its length
   * becomes known). Growing is granted only if the new total still fits the quota; shrinking always is.
   */
  async adjustReservation(req: {
    userId: string;
    uploadId: string;
    bytes: number;
    policy: AccountPolicy;
  }): Promise<Outcome<Usage>> {
    this.#bind(req.userId);
    const res = oneRow<{ bytes: number; state: string }>(
      this.sql,
      "SELECT bytes, state FROM reservations WHERE upload_id = ?",
      req.uploadId,
    );
    if (res?.state !== "held") return fail(409, "upload_not_active", "The upload holds no reservation");
    if (res.bytes === req.bytes) return ok(this.#usage(req.policy));
    const before = this.#usage(req.policy);
    const grow = req.bytes - res.bytes;
    if (grow > 0 && before.usedBytes + before.reservedBytes + grow > before.limitBytes) {
      return fail(413, "quota_exceeded", "The upload does not fit in the remaining quota", {
        usedBytes: before.usedBytes,
        reservedBytes: before.reservedBytes,
        limitBytes: before.limitBytes,
        requestedBytes: grow,
      });
    }
    this.sql.exec("UPDATE reservations SET bytes = ? WHERE upload_id = ?", req.bytes, req.uploadId);
    this.#changed(req.policy, []);
    return ok(this.#usage(req.policy));
  }

  /** Applies an upload session's final word on its reservation. Idempotent: a repeat changes nothing. */
  async settle(msg: LedgerMessage, policy?: AccountPolicy): Promise<Outcome<Usage>> {
    this.#bind(msg.userId);
    this.#settle(msg);
    return ok(this.#usage(policy ?? null));
  }

  /**
   * Removes a completed file: its bytes go back to the ledger at once, and its R2 object and D1 row are
   * cleaned up through the outbox (tried right away, retried until done). Unknown or already removed → 404.
   */
  async removeFile(req: { userId: string; fileId: string; meta: RequestMeta }): Promise<Outcome<{ file: FileRecord }>> {
    this.#bind(req.userId);
    const row = oneRow<{ record: string; state: string }>(
      this.sql,
      "SELECT record, state FROM files WHERE file_id = ?",
      req.fileId,
    );
    if (row?.state !== "live") return fail(404, "not_found", "File not found");
    const file = JSON.parse(row.record) as FileRecord;
    const now = Date.now();
    this.sql.exec("UPDATE files SET state = 'removed', removed_at = ? WHERE file_id = ?", now, req.fileId);
    const version = this.#changed(null, [], now);
    this.outbox.enqueue("r2", { op: "delete", key: file.r2Key });
    this.outbox.enqueue("d1", [
      // A later ledger version than the commit's, so the deletion wins in D1 whatever order they land in.
      fileRowStatement(file, { deletedAt: now, updatedAt: now, version }),
      this.#audit(file, "file.delete", req.meta, now),
    ]);
    await this.#deliver();
    return ok({ file });
  }

  /** The user's uploads that still hold a reservation (active or completing), newest first. */
  async listActiveUploads(req: {
    userId: string;
    limit: number;
    after?: { createdAt: number; uploadId: string };
  }): Promise<ActiveUpload[]> {
    this.#bind(req.userId);
    const after = req.after ?? { createdAt: Number.MAX_SAFE_INTEGER, uploadId: "" };
    return this.sql
      .exec<{ upload_id: string; file_id: string; filename: string; bytes: number; created_at: number }>(
        `SELECT upload_id, file_id, filename, bytes, created_at FROM reservations
          WHERE state = 'held' AND (created_at < ? OR (created_at = ? AND upload_id < ?))
          ORDER BY created_at DESC, upload_id DESC LIMIT ?`,
        after.createdAt,
        after.createdAt,
        after.uploadId || "\uffff",
        req.limit,
      )
      .toArray()
      .map((r) => ({
        uploadId: r.upload_id,
        fileId: r.file_id,
        filename: r.filename,
        size: r.bytes,
        createdAt: r.created_at,
      }));
  }

  /** Test and operator view of what is still waiting in the outbox. */
  async pendingCheckpoints(): Promise<Record<string, number>> {
    return this.outbox.pending();
  }

  /**
   * One alarm for every due job: ask after reservations whose session may be gone (so a Worker that died
   * between reserving and opening the session cannot leak quota), then deliver the outbox. Idempotent.
   */
  override async alarm(): Promise<void> {
    await this.#reconcileReservations();
    await this.#deliver();
  }

  // ---- internals ---------------------------------------------------------------------------------

  #bind(userId: string): void {
    this.sql.exec("INSERT INTO account (id, user_id) VALUES (1, ?) ON CONFLICT (id) DO NOTHING", userId);
  }

  #userId(): string {
    return oneRow<{ user_id: string }>(this.sql, "SELECT user_id FROM account WHERE id = 1")?.user_id ?? "";
  }

  #overrides(): PolicyOverrides {
    return Object.fromEntries(
      this.sql
        .exec<{ key: string; value: string }>("SELECT key, value FROM overrides")
        .toArray()
        .map((r) => [r.key, JSON.parse(r.value)]),
    ) as PolicyOverrides;
  }

  /** The service policy with this user's overrides on top. */
  #effective(policy: AccountPolicy): AccountPolicy {
    return { ...policy, ...this.#overrides() };
  }

  #usage(policy: AccountPolicy | null): Usage {
    if (policy) this.sql.exec("UPDATE account SET limit_bytes = ? WHERE id = 1", this.#effective(policy).quotaBytes);
    const t = this.sql
      .exec<{ lim: number | null; used: number; files: number; reserved: number; active: number }>(
        `SELECT (SELECT limit_bytes FROM account WHERE id = 1) AS lim,
                (SELECT COALESCE(SUM(bytes), 0) FROM files WHERE state = 'live') AS used,
                (SELECT COUNT(*) FROM files WHERE state = 'live') AS files,
                (SELECT COALESCE(SUM(bytes), 0) FROM reservations WHERE state = 'held') AS reserved,
                (SELECT COUNT(*) FROM reservations WHERE state = 'held') AS active`,
      )
      .one();
    return {
      usedBytes: t.used,
      reservedBytes: t.reserved,
      limitBytes: t.lim ?? 0,
      fileCount: t.files,
      activeUploads: t.active,
    };
  }

  #settle(msg: LedgerMessage): void {
    const now = Date.now();
    const res = oneRow<{ state: string }>(this.sql, "SELECT state FROM reservations WHERE upload_id = ?", msg.uploadId);
    if (msg.kind === "commit") {
      if (oneRow(this.sql, "SELECT 1 AS x FROM files WHERE file_id = ?", msg.file.id)) return; // already committed
      if (res)
        this.sql.exec(
          "UPDATE reservations SET state = 'committed', settled_at = ? WHERE upload_id = ?",
          now,
          msg.uploadId,
        );
      this.sql.exec(
        "INSERT INTO files (file_id, record, bytes, state) VALUES (?, ?, ?, 'live')",
        msg.file.id,
        JSON.stringify(msg.file),
        msg.file.size,
      );
      const version = this.#changed(null, [], now);
      this.outbox.enqueue("d1", [fileRowStatement(msg.file, { deletedAt: null, updatedAt: now, version })]);
    } else {
      if (res?.state !== "held") return; // already settled, or never reserved
      this.sql.exec(
        "UPDATE reservations SET state = 'released', settled_at = ? WHERE upload_id = ?",
        now,
        msg.uploadId,
      );
      this.#changed(null, [], now);
    }
  }

  /** Bumps the ledger version, queues the ledger checkpoint (plus `extra`) for D1 and arms the alarm. */
  #changed(policy: AccountPolicy | null, extra: SqlStatement[], now = Date.now()): number {
    this.sql.exec("UPDATE account SET version = version + 1 WHERE id = 1");
    const version = oneRow<{ version: number }>(this.sql, "SELECT version FROM account WHERE id = 1")?.version ?? 0;
    const u = this.#usage(policy);
    this.outbox.enqueue("d1", [
      quotaRowStatement({
        userId: this.#userId(),
        limitBytes: u.limitBytes,
        usedBytes: u.usedBytes,
        reservedBytes: u.reservedBytes,
        fileCount: u.fileCount,
        activeUploads: u.activeUploads,
        version,
        updatedAt: now,
      }),
      ...extra,
    ]);
    this.#schedule();
    return version;
  }

  #audit(file: FileRecord, action: AuditEvent["action"], meta: RequestMeta, now: number): SqlStatement {
    return auditSql({
      id: crypto.randomUUID(),
      userId: file.userId,
      action,
      success: true,
      fileId: file.id,
      uploadId: file.uploadId,
      bytesTransferred: file.size,
      ipAddress: meta.ipAddress,
      userAgent: meta.userAgent,
      metadata: { requestId: meta.requestId },
      timestamp: now,
    });
  }

  async #reconcileReservations(): Promise<void> {
    const now = Date.now();
    const due = this.sql
      .exec<{ upload_id: string }>(
        "SELECT upload_id FROM reservations WHERE state = 'held' AND check_at <= ? LIMIT 100",
        now,
      )
      .toArray();
    const userId = this.#userId();
    for (const { upload_id: uploadId } of due) {
      let view: Awaited<ReturnType<ReturnType<typeof sessionFor>["ledgerView"]>>;
      try {
        view = await sessionFor(this.env, uploadId).ledgerView();
      } catch {
        this.sql.exec("UPDATE reservations SET check_at = ? WHERE upload_id = ?", now + 60_000, uploadId);
        continue;
      }
      // The await above let other requests in: act only on what is still held.
      if (!oneRow(this.sql, "SELECT 1 AS x FROM reservations WHERE upload_id = ? AND state = 'held'", uploadId))
        continue;
      if (!view.exists || view.status === "aborted" || view.status === "expired" || view.status === "failed") {
        this.#settle({ userId, uploadId, kind: "release", reason: view.exists ? view.status : "orphaned" });
      } else if (view.status === "completed" && view.file) {
        this.#settle({ userId, uploadId, kind: "commit", file: view.file });
      } else {
        this.sql.exec(
          "UPDATE reservations SET check_at = ? WHERE upload_id = ?",
          Math.max(view.expiresAt, now) + RESERVATION_CHECK_MS,
          uploadId,
        );
      }
    }
    this.#schedule();
  }

  async #deliver(): Promise<void> {
    await this.outbox.deliver({
      d1: (batches) => runOnD1(this.env.DB, (batches as SqlStatement[][]).flat()),
      r2: async (jobs) => {
        for (const job of jobs as { op: "delete"; key: string }[]) await this.env.BUCKET.delete(job.key);
      },
    });
    this.#schedule();
  }

  /** Arms the single alarm for the earliest due job: an outbox delivery or a reservation check. */
  #schedule(): void {
    const outboxDue = this.outbox.nextDueAt();
    const checkDue = this.sql
      .exec<{ due: number | null }>("SELECT MIN(check_at) AS due FROM reservations WHERE state = 'held'")
      .one().due;
    const due = [outboxDue, checkDue].filter((t): t is number => t !== null);
    if (due.length > 0) void this.ctx.storage.setAlarm(Math.min(...due));
  }
}
