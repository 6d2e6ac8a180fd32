import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { sweepExpiredUploads } from "../../src/uploads/expiry-sweep";
import { callJson, callWithVars, drain, putPart, randomBytes, testPolicy, tokenFor, uploadWhole } from "./helpers";

const session = (uploadId: string) => env.UPLOAD_SESSION.get(env.UPLOAD_SESSION.idFromName(uploadId));
const account = (userId: string) => env.USER_ACCOUNT.get(env.USER_ACCOUNT.idFromName(userId));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function d1Upload(uploadId: string) {
  return env.DB.prepare("SELECT * FROM multipart_uploads WHERE upload_id = ?").bind(uploadId).first<any>();
}

describe("expiry", () => {
  it("expires an idle upload from its alarm: R2 upload aborted, reservation released, then 410", async () => {
    const api = callWithVars({ UPLOAD_TTL_SECONDS: "1" });
    const token = await tokenFor("expiring");
    const created = await api("/v1/uploads", {
      method: "POST",
      token,
      json: { filename: "idle", size: 9 * 1024 * 1024 },
    });
    expect(created.status).toBe(201);
    const { uploadId } = created.body;
    expect((await callJson("/v1/usage", { token })).body.reservedBytes).toBe(9 * 1024 * 1024);
    const r2 = await runInDurableObject(session(uploadId), (_o, state) =>
      state.storage.sql
        .exec<{ r2_upload_id: string; r2_key: string }>("SELECT r2_upload_id, r2_key FROM session")
        .one(),
    );

    await sleep(1100);
    // The expiry alarm may already have fired on its own; running it again must be harmless either way.
    await runDurableObjectAlarm(session(uploadId));
    await drain(session(uploadId));

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
    for (let i = 0; i < 50 && audit.results.length < 3; i++) {
      await sleep(20);
      audit.results = (
        await env.DB.prepare(
          "SELECT action, success, error_code FROM file_access_logs WHERE upload_id = ? ORDER BY timestamp",
        )
          .bind(uploadId)
          .all()
      ).results;
    }
    expect(audit.results.at(-1)).toEqual({ action: "upload.part", success: 0, error_code: "upload_expired" });
    // The alarm is idempotent: running it again changes nothing.
    await runDurableObjectAlarm(session(uploadId));
    expect((await callJson("/v1/usage", { token })).body.reservedBytes).toBe(0);
  });

  it("slides the expiry with each accepted part", async () => {
    const api = callWithVars({ UPLOAD_TTL_SECONDS: "2" });
    const token = await tokenFor("sliding");
    const created = await api("/v1/uploads", { method: "POST", token, json: { filename: "s", size: 100 } });
    const before = Date.parse(created.body.expiresAt);
    await sleep(1200);
    expect((await putPart(created.body.uploadId, 1, randomBytes(100), token)).status).toBe(200);
    const after = Date.parse((await callJson(`/v1/uploads/${created.body.uploadId}`, { token })).body.expiresAt);
    expect(after - before).toBeGreaterThanOrEqual(1000);
  });

  it("is enforced on the next request even before the alarm runs", async () => {
    const api = callWithVars({ UPLOAD_TTL_SECONDS: "1" });
    const token = await tokenFor("lazy-expiry");
    const created = await api("/v1/uploads", { method: "POST", token, json: { filename: "l", size: 100 } });
    await sleep(1100);
    const part = await putPart(created.body.uploadId, 1, randomBytes(100), token);
    expect(part.status).toBe(410);
    const complete = await callJson(`/v1/uploads/${created.body.uploadId}/complete`, { method: "POST", token });
    expect(complete.status).toBe(410);
  });

  it("the cron sweep wakes sessions D1 still shows active past expiry", async () => {
    const api = callWithVars({ UPLOAD_TTL_SECONDS: "1" });
    const token = await tokenFor("swept");
    const created = await api("/v1/uploads", { method: "POST", token, json: { filename: "w", size: 100 } });
    const { uploadId } = created.body;
    await drain(session(uploadId)); // the create checkpoint reaches D1; the upload is not yet due to expire
    expect((await d1Upload(uploadId)).status).toBe("active");
    // Lose the expiry alarm, as a platform incident might.
    await runInDurableObject(session(uploadId), (_o, state) => state.storage.deleteAlarm());
    await sleep(1100);
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
      await runDurableObjectAlarm(session(uploadId));
      expect((await session(uploadId).pendingCheckpoints()).d1).toBeGreaterThan(0);
    } finally {
      await env.DB.exec("ALTER TABLE multipart_uploads_offline RENAME TO multipart_uploads");
    }
    // Backoff: the first retry is due about a second later.
    await sleep(1300);
    await drain(session(uploadId));
    await drain(account("outage"));

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
    await session(uploadId).sweep();
    const count = await env.DB.prepare("SELECT COUNT(*) AS n FROM file_access_logs WHERE upload_id = ?")
      .bind(uploadId)
      .first<{ n: number }>();
    expect(count?.n).toBe(3);
  });
});

describe("the session state machine", () => {
  it("refuses illegal transitions with 409 and keeps every transition idempotent", async () => {
    const token = await tokenFor("machine");
    const { uploadId } = await uploadWhole(token, randomBytes(10));
    const s = session(uploadId);
    const part = await s.recordPart(
      "machine",
      { partNumber: 1, size: 10, etag: "x" },
      { requestId: "t", ipAddress: null, userAgent: null },
    );
    expect(part).toMatchObject({ ok: false, error: { status: 409, code: "upload_not_active" } });
    const abort = await s.abort("machine", { requestId: "t", ipAddress: null, userAgent: null });
    expect(abort).toMatchObject({ ok: false, error: { status: 409 } });
    const finish = await s.finishCompletion(
      "machine",
      { etag: "e", checksum: "not_declared" },
      { requestId: "t", ipAddress: null, userAgent: null },
    );
    expect(finish.ok).toBe(true); // completed already: the same file again
    const view = await s.view("machine");
    expect(view).toMatchObject({ ok: true, value: { status: "completed" } });
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ usedBytes: 10, fileCount: 1 });
  });

  it("fails a completion abandoned mid-way once it expires, releasing quota and removing the object", async () => {
    const api = callWithVars({ UPLOAD_TTL_SECONDS: "1" });
    const token = await tokenFor("abandoned");
    const created = await api("/v1/uploads", { method: "POST", token, json: { filename: "a", size: 10 } });
    const { uploadId } = created.body;
    await putPart(uploadId, 1, randomBytes(10), token);
    // A Worker begins completion, then dies before finishing.
    const step = await session(uploadId).beginCompletion("abandoned");
    expect(step).toMatchObject({ ok: true, value: { kind: "assemble" } });
    await sleep(1100);
    await runDurableObjectAlarm(session(uploadId));
    await drain(session(uploadId));
    expect((await callJson(`/v1/uploads/${uploadId}`, { token })).body.status).toBe("failed");
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ reservedBytes: 0, usedBytes: 0 });
  });
});

describe("the ledger", () => {
  const policy = testPolicy({ quotaBytes: 1000, maxActiveUploads: 3 });
  const meta = { requestId: "t", ipAddress: null, userAgent: null };

  it("keeps used + reserved ≤ limit and settles idempotently", async () => {
    const a = account("ledger-user");
    const r1 = await a.reserve({
      userId: "ledger-user",
      uploadId: "u1",
      fileId: "f1",
      filename: "a",
      bytes: 600,
      policy,
    });
    expect(r1).toMatchObject({ ok: true, value: { reservedBytes: 600, limitBytes: 1000 } });
    expect(
      await a.reserve({ userId: "ledger-user", uploadId: "u1", fileId: "f1", filename: "a", bytes: 600, policy }),
    ).toMatchObject({ ok: true, value: { reservedBytes: 600 } });
    expect(
      await a.reserve({ userId: "ledger-user", uploadId: "u2", fileId: "f2", filename: "b", bytes: 401, policy }),
    ).toMatchObject({ ok: false, error: { code: "quota_exceeded" } });
    expect(
      await a.reserve({ userId: "ledger-user", uploadId: "u2", fileId: "f2", filename: "b", bytes: 400, policy }),
    ).toMatchObject({ ok: true, value: { reservedBytes: 1000 } });

    const file = {
      id: "f1",
      userId: "ledger-user",
      uploadId: "u1",
      filename: "a",
      size: 600,
      contentType: "x/y",
      sha256: null,
      etag: "e",
      r2Key: "u/ledger-user/f1",
      metadata: null,
      createdAt: 1,
    };
    for (let i = 0; i < 2; i++) await a.settle({ userId: "ledger-user", uploadId: "u1", kind: "commit", file });
    expect(await a.usage("ledger-user", policy)).toMatchObject({
      usedBytes: 600,
      reservedBytes: 400,
      fileCount: 1,
      activeUploads: 1,
    });
    for (let i = 0; i < 2; i++)
      await a.settle({ userId: "ledger-user", uploadId: "u2", kind: "release", reason: "test" });
    expect(await a.usage("ledger-user", policy)).toMatchObject({ usedBytes: 600, reservedBytes: 0, activeUploads: 0 });
    // A release after a commit does not take back committed bytes.
    await a.settle({ userId: "ledger-user", uploadId: "u1", kind: "release", reason: "late" });
    expect(await a.usage("ledger-user", policy)).toMatchObject({ usedBytes: 600 });

    await env.BUCKET.put("u/ledger-user/f1", "x");
    expect(await a.removeFile({ userId: "ledger-user", fileId: "f1", meta })).toMatchObject({ ok: true });
    expect(await a.removeFile({ userId: "ledger-user", fileId: "f1", meta })).toMatchObject({
      ok: false,
      error: { status: 404 },
    });
    expect(await a.usage("ledger-user", policy)).toMatchObject({ usedBytes: 0, fileCount: 0 });
    expect(await env.BUCKET.head("u/ledger-user/f1")).toBeNull();
  });

  it("limits concurrently active uploads", async () => {
    const a = account("busy-user");
    for (let i = 0; i < 3; i++) {
      expect(
        (await a.reserve({ userId: "busy-user", uploadId: `b${i}`, fileId: `f${i}`, filename: "x", bytes: 1, policy }))
          .ok,
      ).toBe(true);
    }
    expect(
      await a.reserve({ userId: "busy-user", uploadId: "b3", fileId: "f3", filename: "x", bytes: 1, policy }),
    ).toMatchObject({ ok: false, error: { status: 429, code: "too_many_active_uploads" } });
  });

  it("releases a reservation whose session never opened", async () => {
    const a = account("orphan-user");
    await a.reserve({
      userId: "orphan-user",
      uploadId: crypto.randomUUID(),
      fileId: "f",
      filename: "x",
      bytes: 500,
      policy,
    });
    expect(await a.usage("orphan-user", policy)).toMatchObject({ reservedBytes: 500 });
    // Time passes beyond the check: bring the check forward instead of waiting five minutes.
    await runInDurableObject(a, (_o, state) => state.storage.sql.exec("UPDATE reservations SET check_at = 1"));
    await runDurableObjectAlarm(a);
    expect(await a.usage("orphan-user", policy)).toMatchObject({ reservedBytes: 0, activeUploads: 0 });
  });

  it("keeps a reservation whose session is alive", async () => {
    const token = await tokenFor("alive-user");
    const created = await callJson("/v1/uploads", { method: "POST", token, json: { filename: "x", size: 77 } });
    const a = account("alive-user");
    await runInDurableObject(a, (_o, state) => state.storage.sql.exec("UPDATE reservations SET check_at = 1"));
    await runDurableObjectAlarm(a);
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ reservedBytes: 77, activeUploads: 1 });
    expect((await callJson(`/v1/uploads/${created.body.uploadId}`, { token })).body.status).toBe("active");
  });
});

describe("reservation adjustments (deferred lengths)", () => {
  const policy = testPolicy({ quotaBytes: 1000, maxActiveUploads: 10 });
  it("grows only within the quota and shrinks freely", async () => {
    const a = account("adjust-user");
    await a.reserve({ userId: "adjust-user", uploadId: "d1", fileId: "f", filename: "x", bytes: 0, policy });
    await a.reserve({ userId: "adjust-user", uploadId: "d2", fileId: "g", filename: "y", bytes: 300, policy });
    expect(await a.adjustReservation({ userId: "adjust-user", uploadId: "d1", bytes: 700, policy })).toMatchObject({
      ok: true,
      value: { reservedBytes: 1000 },
    });
    expect(await a.adjustReservation({ userId: "adjust-user", uploadId: "d1", bytes: 701, policy })).toMatchObject({
      ok: false,
      error: { status: 413, code: "quota_exceeded" },
    });
    expect(await a.adjustReservation({ userId: "adjust-user", uploadId: "d1", bytes: 100, policy })).toMatchObject({
      ok: true,
      value: { reservedBytes: 400 },
    });
    expect(await a.adjustReservation({ userId: "adjust-user", uploadId: "nope", bytes: 1, policy })).toMatchObject({
      ok: false,
      error: { status: 409 },
    });
  });
});
