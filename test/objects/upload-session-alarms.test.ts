// The upload session's one alarm, driven with runDurableObjectAlarm: expiry (and the cron sweep that wakes
// a session whose alarm was lost), outbox delivery through a D1 outage, and a completion abandoned
// mid-way (resolved within its window from what R2 holds). The runtime also fires due alarms on its own,
// so every test holds whichever runs first.
import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { accountFor, sessionFor } from "../../objects/stubs";
import { sweepExpiredUploads } from "../../src/uploads/expiry-sweep";
import {
  call,
  callJson,
  callWithVars,
  eventualRows,
  putPart,
  randomBytes,
  sha256Hex,
  sleep,
  tokenFor,
  uploadWhole,
} from "../support/http";
import { d1Upload, drain, runAlarmAfter, testMeta } from "../support/objects";

describe("expiry", () => {
  it("expires an idle upload from its alarm: R2 upload aborted, reservation released, then 410", async () => {
    const api = callWithVars({ UPLOAD_TTL_SECONDS: "3" });
    const token = await tokenFor("expiring");
    const created = await api("/v1/uploads", {
      method: "POST",
      token,
      json: { filename: "idle", size: 9 * 1024 * 1024 },
    });
    expect(created.status).toBe(201);
    const { uploadId } = created.body;
    expect((await callJson("/v1/usage", { token })).body.reservedBytes).toBe(9 * 1024 * 1024);
    const r2 = await runInDurableObject(sessionFor(env, uploadId), (_o, state) =>
      state.storage.sql
        .exec<{ r2_upload_id: string; r2_key: string }>("SELECT r2_upload_id, r2_key FROM session")
        .one(),
    );

    await sleep(3100);
    // The expiry alarm may already have fired on its own; running it again must be harmless either way.
    await runDurableObjectAlarm(sessionFor(env, uploadId));
    await drain(sessionFor(env, uploadId));

    const status = await callJson(`/v1/uploads/${uploadId}`, { token });
    expect(status.body.status).toBe("expired");
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ reservedBytes: 0, activeUploads: 0 });
    const part = await putPart(uploadId, 1, randomBytes(8 * 1024 * 1024), token);
    expect(part.status).toBe(410);
    expect(part.body.error.code).toBe("upload_expired");
    // The R2 multipart upload is gone: writing to it fails.
    await expect(env.BUCKET.resumeMultipartUpload(r2.r2_key, r2.r2_upload_id).uploadPart(1, "x")).rejects.toThrow();
    // The checkpoint reached D1, with the audit event.
    const row = await d1Upload(uploadId);
    expect(row.status).toBe("expired");
    const audit = await env.DB.prepare(
      "SELECT action, success, error_code FROM file_access_logs WHERE upload_id = ? ORDER BY timestamp",
    )
      .bind(uploadId)
      .all();
    expect(audit.results.filter((r: any) => r.success === 1).map((r: any) => r.action)).toEqual([
      "upload.create",
      "upload.expire",
    ]);
    // The refused part after expiry is audited too (written by the Worker after the response).
    const withRefusal = await eventualRows(
      "SELECT action, success, error_code FROM file_access_logs WHERE upload_id = ? ORDER BY timestamp",
      [uploadId],
      (rows) => rows.length >= 3,
    );
    expect(withRefusal.at(-1)).toEqual({ action: "upload.part", success: 0, error_code: "upload_expired" });
    // The alarm is idempotent: running it again changes nothing.
    await runDurableObjectAlarm(sessionFor(env, uploadId));
    expect((await callJson("/v1/usage", { token })).body.reservedBytes).toBe(0);
  });

  it("the cron sweep wakes sessions D1 still shows active past expiry", async () => {
    const api = callWithVars({ UPLOAD_TTL_SECONDS: "3" });
    const token = await tokenFor("swept");
    const created = await api("/v1/uploads", { method: "POST", token, json: { filename: "w", size: 100 } });
    const { uploadId } = created.body;
    await drain(sessionFor(env, uploadId)); // the create checkpoint reaches D1; the upload is not yet due to expire
    expect((await d1Upload(uploadId)).status).toBe("active");
    // Lose the expiry alarm, as a platform incident might.
    await runInDurableObject(sessionFor(env, uploadId), (_o, state) => state.storage.deleteAlarm());
    await sleep(3100);
    const { woken } = await sweepExpiredUploads(env, Date.now() + 120_000);
    expect(woken).toBeGreaterThanOrEqual(1);
    expect((await d1Upload(uploadId)).status).toBe("expired");
    expect((await callJson("/v1/usage", { token })).body.reservedBytes).toBe(0);
  });
});

describe("checkpoints through the outbox", () => {
  it("survive D1 failing, then converge with nothing missing or doubled", async () => {
    const token = await tokenFor("outage");
    // Break D1 for these tables: every checkpoint write now fails.
    await env.DB.exec("ALTER TABLE multipart_uploads RENAME TO multipart_uploads_offline");
    let uploadId: string;
    let fileId: string;
    try {
      const { uploadId: id, completed } = await uploadWhole(token, randomBytes(1000));
      expect(completed.status).toBe(200); // D1 being down does not fail the upload
      uploadId = id;
      fileId = completed.body.file.id;
      await runDurableObjectAlarm(sessionFor(env, uploadId));
      expect((await sessionFor(env, uploadId).pendingCheckpoints()).d1).toBeGreaterThan(0);
    } finally {
      await env.DB.exec("ALTER TABLE multipart_uploads_offline RENAME TO multipart_uploads");
    }
    // Backoff: the first retry is due about a second later.
    await sleep(1300);
    await drain(sessionFor(env, uploadId));
    await drain(accountFor(env, "outage"));

    const row = await d1Upload(uploadId);
    expect(row).toMatchObject({ status: "completed", parts_uploaded: 1, bytes_received: 1000, file_id: fileId });
    const file = await env.DB.prepare("SELECT * FROM files WHERE id = ?").bind(fileId).first<any>();
    expect(file).toMatchObject({ user_id: "outage", file_size: 1000, status: "active" });
    const quota = await env.DB.prepare("SELECT * FROM user_quotas WHERE user_id = ?").bind("outage").first<any>();
    expect(quota).toMatchObject({ used_bytes: 1000, reserved_bytes: 0, file_count: 1, active_uploads: 0 });
    const audit = await env.DB.prepare(
      "SELECT action, COUNT(*) AS n FROM file_access_logs WHERE upload_id = ? GROUP BY action ORDER BY action",
    )
      .bind(uploadId)
      .all();
    expect(audit.results).toEqual([
      { action: "upload.complete", n: 1 },
      { action: "upload.create", n: 1 },
      { action: "upload.part", n: 1 },
    ]);
    // Delivering again (an at-least-once retry) inserts nothing twice and does not regress the row.
    await sessionFor(env, uploadId).sweep();
    const count = await env.DB.prepare("SELECT COUNT(*) AS n FROM file_access_logs WHERE upload_id = ?")
      .bind(uploadId)
      .first<{ n: number }>();
    expect(count?.n).toBe(3);
  });
});

/**
 * A completion whose Worker never came back (issue 17 item 2): the session stays `completing` only for its
 * completion window (minutes, not the TTL), then its alarm asks R2 what was assembled and resolves it.
 * Tests move the deadline into the past rather than wait, then run the alarm.
 */
describe("a completion abandoned mid-way", () => {
  /** A one-part upload of `size` random bytes, its part recorded; `sha256` declared when asked. */
  async function withPart(user: string, opts: { sha256?: boolean } = {}) {
    const token = await tokenFor(user);
    const bytes = randomBytes(10);
    const created = await callJson("/v1/uploads", {
      method: "POST",
      token,
      json: { filename: "a", size: bytes.length, ...(opts.sha256 ? { sha256: await sha256Hex(bytes) } : {}) },
    });
    const { uploadId } = created.body;
    expect((await putPart(uploadId, 1, bytes, token)).status).toBe(200);
    return { token, uploadId, session: sessionFor(env, uploadId), bytes };
  }

  /** A Worker begins the completion (and dies): the step it got. */
  async function begin(session: ReturnType<typeof sessionFor>, user: string) {
    const step = await session.beginCompletion(user);
    if (!step.ok || step.value.kind !== "assemble") throw new Error(`no step: ${JSON.stringify(step)}`);
    return step.value;
  }

  /** What R2 does for a Worker that got as far as assembling the object. */
  async function assemble(step: { r2Key: string; r2UploadId: string | null; parts: R2UploadedPart[] }) {
    if (!step.r2UploadId) throw new Error("no multipart upload");
    return env.BUCKET.resumeMultipartUpload(step.r2Key, step.r2UploadId).complete(step.parts);
  }

  /** Moves the completion's deadline into the past and runs the alarm. */
  async function passWindow(session: ReturnType<typeof sessionFor>) {
    await runInDurableObject(session, (_o, state) => {
      state.storage.sql.exec("UPDATE session SET expires_at = ?", Date.now() - 1);
    });
    await runAlarmAfter(session);
  }

  it("is due within minutes, not the TTL", async () => {
    const { session } = await withPart("window");
    const before = Date.now();
    await begin(session, "window");
    const view = await session.view("window");
    if (!view.ok) throw new Error("no view");
    expect(view.value.status).toBe("completing");
    expect(view.value.expiresAt).toBeLessThanOrEqual(before + 6 * 60_000 + 1000);
    const alarm = await runInDurableObject(session, (_o, state) => state.storage.getAlarm());
    expect(alarm).not.toBeNull();
    expect(alarm).toBeLessThanOrEqual(view.value.expiresAt);
  });

  it("nothing assembled: handed back (active, parts intact), and completing again succeeds", async () => {
    const { token, uploadId, session } = await withPart("abandoned");
    await begin(session, "abandoned");
    await passWindow(session);
    const view = await callJson(`/v1/uploads/${uploadId}`, { token });
    expect(view.body).toMatchObject({ status: "active", missingParts: [] });
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ reservedBytes: 10, usedBytes: 0 });
    const done = await callJson(`/v1/uploads/${uploadId}/complete`, { method: "POST", token });
    expect(done.status).toBe(200);
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ reservedBytes: 0, usedBytes: 10 });
    await drain(session);
    expect(await d1Upload(uploadId)).toMatchObject({ status: "completed" });
    const audit = await env.DB.prepare(
      "SELECT action, success, error_code FROM file_access_logs WHERE upload_id = ? AND error_code IS NOT NULL",
    )
      .bind(uploadId)
      .all();
    expect(audit.results).toContainEqual({ action: "upload.complete", success: 0, error_code: "completion_abandoned" });
  });

  it("assembled, no SHA-256 declared: finished by the alarm; the slow Worker gets the same file", async () => {
    const { token, uploadId, session } = await withPart("assembled");
    const step = await begin(session, "assembled");
    const object = await assemble(step);
    await passWindow(session);
    await drain(session);
    const view = await callJson(`/v1/uploads/${uploadId}`, { token });
    expect(view.body).toMatchObject({ status: "completed", file: { size: 10, etag: object.etag } });
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ usedBytes: 10, reservedBytes: 0 });
    const late = await session.finishCompletion(
      "assembled",
      { etag: object.etag, checksum: "not_declared", attempt: step.attempt },
      testMeta,
    );
    expect(late).toMatchObject({ ok: true, value: { id: view.body.file.id, etag: object.etag } });
  });

  it("assembled but its SHA-256 never verified: failed, the object deleted, the quota released", async () => {
    const { token, uploadId, session } = await withPart("unverified", { sha256: true });
    const step = await begin(session, "unverified");
    const object = await assemble(step);
    await passWindow(session);
    await drain(session);
    expect((await callJson(`/v1/uploads/${uploadId}`, { token })).body.status).toBe("failed");
    expect(await env.BUCKET.head(step.r2Key)).toBeNull();
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ reservedBytes: 0, usedBytes: 0 });
    // The Worker was only slow: its finish is refused, and what it assembled does not come back.
    const late = await session.finishCompletion(
      "unverified",
      { etag: object.etag, checksum: "verified", attempt: step.attempt },
      testMeta,
    );
    expect(late).toMatchObject({ ok: false, error: { status: 409, code: "upload_not_active" } });
    await drain(session);
    expect(await env.BUCKET.head(step.r2Key)).toBeNull();
  });

  it("a Worker whose assembly succeeds after the hand-back still finishes it (review 17c)", async () => {
    const { token, uploadId, session } = await withPart("slow-worker");
    const step = await begin(session, "slow-worker");
    await passWindow(session);
    expect((await callJson(`/v1/uploads/${uploadId}`, { token })).body.status).toBe("active");
    const object = await assemble(step);
    // Without the completion it belongs to, a finish on an active upload changes nothing.
    for (const attempt of [undefined, 0, step.attempt + 1]) {
      const refused = await session.finishCompletion(
        "slow-worker",
        { etag: object.etag, checksum: "not_declared", attempt },
        testMeta,
      );
      expect(refused, String(attempt)).toMatchObject({ ok: false, error: { status: 409 } });
    }
    const done = await session.finishCompletion(
      "slow-worker",
      { etag: object.etag, checksum: "not_declared", attempt: step.attempt },
      testMeta,
    );
    expect(done).toMatchObject({ ok: true, value: { etag: object.etag, size: 10 } });
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ usedBytes: 10, reservedBytes: 0 });
  });

  it("a slow Worker that finds the upload aborted: what it assembled is deleted", async () => {
    const { token, uploadId, session } = await withPart("slow-aborted");
    const step = await begin(session, "slow-aborted");
    await passWindow(session);
    const object = await assemble(step);
    expect((await call(`/v1/uploads/${uploadId}`, { method: "DELETE", token })).status).toBe(204);
    const late = await session.finishCompletion(
      "slow-aborted",
      { etag: object.etag, checksum: "not_declared", attempt: step.attempt },
      testMeta,
    );
    expect(late).toMatchObject({ ok: false, error: { status: 409, code: "upload_not_active" } });
    await drain(session);
    expect(await env.BUCKET.head(step.r2Key)).toBeNull();
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ usedBytes: 0, reservedBytes: 0 });
  });
});
