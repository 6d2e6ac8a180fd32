/**
 * Every SQL statement of the session object (the `session` row, `parts`, `tail_segments`), behind named
 * accessors. Each is one synchronous statement: callers compose them into one step between awaits.
 */
import type { FileRecord, PartRecord, SessionInit, UploadStatus } from "../../src/core/domain";
import { oneRow } from "../shared/schema";
import type { TailRef } from "./contract";
import { type Session, type SessionRow, sessionFromRow } from "./session";

export class SessionStore {
  constructor(private readonly sql: SqlStorage) {}

  // ---- the session row --------------------------------------------------------------------------

  /** The session, parsed; null before `open` created it. */
  load(): Session | null {
    const row = oneRow<SessionRow>(this.sql, "SELECT * FROM session WHERE id = 1");
    return row && sessionFromRow(row);
  }

  /** The session when `userId` owns it; null otherwise (someone else's upload is not told apart from none). */
  loadOwnedBy(userId: string): Session | null {
    const session = this.load();
    return session && session.userId === userId ? session : null;
  }

  /** The session again, after this step wrote it (or an await let other requests in): it exists by now. */
  reload(): Session {
    const session = this.load();
    if (!session) throw new Error("the session row is missing after it was written");
    return session;
  }

  /** Writes the new session row, `active`, expiring one TTL from `now`. */
  create(init: SessionInit, r2UploadId: string | null, now: number): void {
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
  }

  /** Moves to `status`; `failure` (when given) records why, and a reason recorded earlier is kept. */
  setStatus(status: UploadStatus, failure: string | null, now: number): void {
    this.sql.exec(
      "UPDATE session SET status = ?, failure = COALESCE(?, failure), updated_at = ? WHERE id = 1",
      status,
      failure,
      now,
    );
  }

  /** Bumps the version that orders the D1 checkpoints. */
  bumpVersion(now: number): void {
    this.sql.exec("UPDATE session SET version = version + 1, updated_at = ? WHERE id = 1", now);
  }

  slideExpiry(expiresAt: number): void {
    this.sql.exec("UPDATE session SET expires_at = ? WHERE id = 1", expiresAt);
  }

  slideExpiryAndLease(expiresAt: number, leaseExpiresAt: number): void {
    this.sql.exec("UPDATE session SET expires_at = ?, lease_expires_at = ? WHERE id = 1", expiresAt, leaseExpiresAt);
  }

  /** Records the assembled file (the lease, if a tus writer held one, ends with it). */
  recordFile(file: FileRecord, now: number): void {
    this.sql.exec(
      "UPDATE session SET completed_at = ?, file = ?, lease_token = NULL, lease_expires_at = NULL WHERE id = 1",
      now,
      JSON.stringify(file),
    );
  }

  /** Records a deferred length and the part count that follows from it. */
  setLength(length: number, partCount: number): void {
    this.sql.exec("UPDATE session SET size = ?, part_count = ?, length_deferred = 0 WHERE id = 1", length, partCount);
  }

  /** The multipart upload was given up (its abort is queued): the session has none any more. */
  forgetMultipartUpload(): void {
    this.sql.exec("UPDATE session SET r2_upload_id = NULL WHERE id = 1");
  }

  markTerminated(now: number): void {
    this.sql.exec("UPDATE session SET terminated_at = ? WHERE id = 1", now);
  }

  /** Marks a termination unless one is already recorded (the first time is kept). */
  markTerminatedOnce(now: number): void {
    this.sql.exec("UPDATE session SET terminated_at = COALESCE(terminated_at, ?) WHERE id = 1", now);
  }

  // ---- the tus write lease ----------------------------------------------------------------------

  /** Gives the lease to `token`; every grant also uses up one tail key number (`write_seq`). */
  takeLease(token: string, expiresAt: number): void {
    this.sql.exec(
      "UPDATE session SET lease_token = ?, lease_expires_at = ?, write_seq = write_seq + 1 WHERE id = 1",
      token,
      expiresAt,
    );
  }

  renewLease(expiresAt: number): void {
    this.sql.exec("UPDATE session SET lease_expires_at = ? WHERE id = 1", expiresAt);
  }

  clearLease(): void {
    this.sql.exec("UPDATE session SET lease_token = NULL, lease_expires_at = NULL WHERE id = 1");
  }

  // ---- parts ------------------------------------------------------------------------------------

  /** The recorded parts, by number. */
  parts(): PartRecord[] {
    return this.sql
      .exec<{ part_number: number; size: number; etag: string }>(
        "SELECT part_number, size, etag FROM parts ORDER BY part_number",
      )
      .toArray()
      .map((p) => ({ partNumber: p.part_number, size: p.size, etag: p.etag }));
  }

  partNumbers(): number[] {
    return this.sql
      .exec<{ n: number }>("SELECT part_number AS n FROM parts")
      .toArray()
      .map((r) => r.n);
  }

  partCount(): number {
    return this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM parts").one().n;
  }

  partBytes(): number {
    return this.sql.exec<{ bytes: number }>("SELECT COALESCE(SUM(size), 0) AS bytes FROM parts").one().bytes;
  }

  /** How many parts are recorded and how many bytes they hold, in one read. */
  partTotals(): { count: number; bytes: number } {
    const totals = this.sql
      .exec<{ n: number; bytes: number }>("SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM parts")
      .one();
    return { count: totals.n, bytes: totals.bytes };
  }

  /** Records a native part, replacing an earlier upload of the same number. */
  putPart(part: PartRecord, now: number): void {
    this.sql.exec(
      `INSERT INTO parts (part_number, size, etag, uploaded_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (part_number) DO UPDATE SET
         size = excluded.size, etag = excluded.etag, uploaded_at = excluded.uploaded_at`,
      part.partNumber,
      part.size,
      part.etag,
      now,
    );
  }

  /** The recorded part `n`, or null. */
  part(n: number): PartRecord | null {
    const row = oneRow<{ part_number: number; size: number; etag: string }>(
      this.sql,
      "SELECT part_number, size, etag FROM parts WHERE part_number = ?",
      n,
    );
    return row && { partNumber: row.part_number, size: row.size, etag: row.etag };
  }

  /** Forgets part `n`; true when it was recorded. */
  removePart(n: number): boolean {
    return this.sql.exec("DELETE FROM parts WHERE part_number = ? RETURNING part_number", n).toArray().length > 0;
  }

  /** Forgets part `n` and every part after it; true when any was recorded. */
  removePartsFrom(n: number): boolean {
    return this.sql.exec("DELETE FROM parts WHERE part_number >= ? RETURNING part_number", n).toArray().length > 0;
  }

  /** Forgets every recorded part and outdates every ticket issued so far. */
  forgetParts(): void {
    this.sql.exec("DELETE FROM parts");
    this.sql.exec("UPDATE part_attempts SET attempt = attempt + 1");
  }

  /** Issues the next ticket number for part `n` (1 for its first write), which outdates every earlier one. */
  nextPartAttempt(n: number): number {
    return this.sql
      .exec<{ attempt: number }>(
        `INSERT INTO part_attempts (part_number, attempt) VALUES (?, 1)
         ON CONFLICT (part_number) DO UPDATE SET attempt = attempt + 1
         RETURNING attempt`,
        n,
      )
      .one().attempt;
  }

  /** The number of the latest ticket issued for part `n`, or null when none was. */
  partAttempt(n: number): number | null {
    return (
      oneRow<{ attempt: number }>(this.sql, "SELECT attempt FROM part_attempts WHERE part_number = ?", n)?.attempt ??
      null
    );
  }

  /** How many completions were begun (each move to completing counts one; the first is 1). */
  completionAttempts(): number {
    return this.sql.exec<{ n: number }>("SELECT completion_attempts AS n FROM session WHERE id = 1").one().n;
  }

  /** Counts one more completion begun and returns its number. */
  countCompletion(): number {
    return this.sql
      .exec<{ n: number }>(
        `UPDATE session SET completion_attempts = completion_attempts + 1 WHERE id = 1
         RETURNING completion_attempts AS n`,
      )
      .one().n;
  }

  /**
   * Records a tus part. Parts go in order, so its number is new: the tus steps check that no reported
   * part is recorded before they write (a second INSERT of a number would be a constraint error).
   */
  insertPart(part: PartRecord, now: number): void {
    this.sql.exec(
      "INSERT INTO parts (part_number, size, etag, uploaded_at) VALUES (?, ?, ?, ?)",
      part.partNumber,
      part.size,
      part.etag,
      now,
    );
  }

  // ---- the tus tail -----------------------------------------------------------------------------

  /** The recorded tail segments, in order. */
  tail(): TailRef[] {
    return this.sql
      .exec<{ key: string; size: number }>("SELECT key, size FROM tail_segments ORDER BY seq")
      .toArray()
      .map((t) => ({ key: t.key, size: t.size }));
  }

  tailKeys(): string[] {
    return this.tail().map((t) => t.key);
  }

  tailSize(): number {
    return this.sql.exec<{ bytes: number }>("SELECT COALESCE(SUM(size), 0) AS bytes FROM tail_segments").one().bytes;
  }

  appendTailSegment(segment: TailRef): void {
    this.sql.exec("INSERT INTO tail_segments (key, size) VALUES (?, ?)", segment.key, segment.size);
  }

  removeTailSegment(key: string): void {
    this.sql.exec("DELETE FROM tail_segments WHERE key = ?", key);
  }

  clearTail(): void {
    this.sql.exec("DELETE FROM tail_segments");
  }

  /** The tus offset: bytes in recorded parts plus the recorded tail. */
  offset(): number {
    return this.partBytes() + this.tailSize();
  }
}
