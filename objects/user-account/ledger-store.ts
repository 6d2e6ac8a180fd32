/**
 * Every SQL statement of the account object (`account`, `reservations`, `files`, `overrides`,
 * `rate_state`), behind named accessors. Each is one synchronous statement: callers compose them into
 * one step between awaits.
 */
import type { FileRecord } from "../../src/core/domain";
import type { GcraState } from "../../src/core/rate-limit";
import { oneRow } from "../shared/schema";
import { parseFileRecord } from "../shared/stored-json";
import type { ActiveUpload, PolicyOverrides, ReserveRequest, Usage } from "./contract";

/** Where a reservation stands: held by a live upload, or settled one way or the other. */
export type ReservationState = "held" | "committed" | "released";

export class LedgerStore {
  constructor(private readonly sql: SqlStorage) {}

  // ---- the account row --------------------------------------------------------------------------

  /** Creates the account row for `userId` on first use (the object is named after the user). */
  bind(userId: string): void {
    this.sql.exec("INSERT INTO account (id, user_id) VALUES (1, ?) ON CONFLICT (id) DO NOTHING", userId);
  }

  userId(): string {
    return oneRow<{ user_id: string }>(this.sql, "SELECT user_id FROM account WHERE id = 1")?.user_id ?? "";
  }

  /** Records the quota last applied, for checkpoints made without a policy. */
  recordLimit(limitBytes: number): void {
    this.sql.exec("UPDATE account SET limit_bytes = ? WHERE id = 1", limitBytes);
  }

  /** Bumps the ledger version (it orders the D1 checkpoints) and returns the new one. */
  bumpVersion(): number {
    this.sql.exec("UPDATE account SET version = version + 1 WHERE id = 1");
    return oneRow<{ version: number }>(this.sql, "SELECT version FROM account WHERE id = 1")?.version ?? 0;
  }

  /** The ledger's totals, with the quota last recorded. */
  totals(): Usage {
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

  // ---- overrides --------------------------------------------------------------------------------

  /** The policy values an administrator set for this user (each written by `setOverride` from a validated patch). */
  overrides(): PolicyOverrides {
    return Object.fromEntries(
      this.sql
        .exec<{ key: string; value: string }>("SELECT key, value FROM overrides")
        .toArray()
        .map((r) => [r.key, JSON.parse(r.value)]),
    ) as PolicyOverrides;
  }

  setOverride(key: string, value: unknown): void {
    this.sql.exec(
      "INSERT INTO overrides (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      key,
      JSON.stringify(value),
    );
  }

  removeOverride(key: string): void {
    this.sql.exec("DELETE FROM overrides WHERE key = ?", key);
  }

  // ---- reservations -----------------------------------------------------------------------------

  /** The reservation of an upload, or null when it never reserved here. */
  reservation(uploadId: string): { bytes: number; state: ReservationState } | null {
    return oneRow<{ bytes: number; state: ReservationState }>(
      this.sql,
      "SELECT bytes, state FROM reservations WHERE upload_id = ?",
      uploadId,
    );
  }

  isHeld(uploadId: string): boolean {
    return !!oneRow(this.sql, "SELECT 1 AS x FROM reservations WHERE upload_id = ? AND state = 'held'", uploadId);
  }

  /** Holds `req.bytes` for a new upload; the account asks after it at `checkAt`. */
  hold(req: ReserveRequest, now: number, checkAt: number): void {
    this.sql.exec(
      `INSERT INTO reservations (upload_id, file_id, filename, bytes, state, created_at, check_at)
       VALUES (?, ?, ?, ?, 'held', ?, ?)`,
      req.uploadId,
      req.fileId,
      req.filename,
      req.bytes,
      now,
      checkAt,
    );
  }

  resize(uploadId: string, bytes: number): void {
    this.sql.exec("UPDATE reservations SET bytes = ? WHERE upload_id = ?", bytes, uploadId);
  }

  /** Settles a reservation into the file it paid for: its bytes now count as used. */
  commit(uploadId: string, now: number): void {
    this.sql.exec("UPDATE reservations SET state = 'committed', settled_at = ? WHERE upload_id = ?", now, uploadId);
  }

  /** Settles a reservation by giving its bytes back. */
  release(uploadId: string, now: number): void {
    this.sql.exec("UPDATE reservations SET state = 'released', settled_at = ? WHERE upload_id = ?", now, uploadId);
  }

  /** Held reservations whose session is due to be asked after (at most 100 per run). */
  dueChecks(now: number): string[] {
    return this.sql
      .exec<{ upload_id: string }>(
        "SELECT upload_id FROM reservations WHERE state = 'held' AND check_at <= ? LIMIT 100",
        now,
      )
      .toArray()
      .map((r) => r.upload_id);
  }

  checkAgainAt(uploadId: string, at: number): void {
    this.sql.exec("UPDATE reservations SET check_at = ? WHERE upload_id = ?", at, uploadId);
  }

  /** When the next held reservation is due to be asked after, or null when none is held. */
  nextCheckAt(): number | null {
    return this.sql
      .exec<{ due: number | null }>("SELECT MIN(check_at) AS due FROM reservations WHERE state = 'held'")
      .one().due;
  }

  /** Held reservations, newest first, after the cursor `after`. */
  held(limit: number, after: { createdAt: number; uploadId: string }): ActiveUpload[] {
    return this.sql
      .exec<{ upload_id: string; file_id: string; filename: string; bytes: number; created_at: number }>(
        `SELECT upload_id, file_id, filename, bytes, created_at FROM reservations
          WHERE state = 'held' AND (created_at < ? OR (created_at = ? AND upload_id < ?))
          ORDER BY created_at DESC, upload_id DESC LIMIT ?`,
        after.createdAt,
        after.createdAt,
        after.uploadId || "\uffff",
        limit,
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

  // ---- files ------------------------------------------------------------------------------------

  hasFile(fileId: string): boolean {
    return !!oneRow(this.sql, "SELECT 1 AS x FROM files WHERE file_id = ?", fileId);
  }

  /** A file that still counts against the quota, or null (unknown or removed). */
  liveFile(fileId: string): FileRecord | null {
    const row = oneRow<{ record: string; state: string }>(
      this.sql,
      "SELECT record, state FROM files WHERE file_id = ?",
      fileId,
    );
    return row?.state === "live" ? parseFileRecord(row.record) : null;
  }

  addFile(file: FileRecord): void {
    this.sql.exec(
      "INSERT INTO files (file_id, record, bytes, state) VALUES (?, ?, ?, 'live')",
      file.id,
      JSON.stringify(file),
      file.size,
    );
  }

  removeFile(fileId: string, now: number): void {
    this.sql.exec("UPDATE files SET state = 'removed', removed_at = ? WHERE file_id = ?", now, fileId);
  }

  // ---- rate limits ------------------------------------------------------------------------------

  /** The GCRA state of every budget that has one, by budget name. */
  rateStates(): Record<string, GcraState> {
    return Object.fromEntries(
      this.sql
        .exec<{ budget: string; tat: number }>("SELECT budget, tat FROM rate_state")
        .toArray()
        .map((r) => [r.budget, { tat: r.tat }]),
    );
  }

  saveRateState(budget: string, state: GcraState): void {
    this.sql.exec(
      "INSERT INTO rate_state (budget, tat) VALUES (?, ?) ON CONFLICT (budget) DO UPDATE SET tat = excluded.tat",
      budget,
      state.tat,
    );
  }
}
