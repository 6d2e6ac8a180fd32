// The upload session's one alarm, driven with runDurableObjectAlarm: expiry (and the cron sweep that wakes
// a session whose alarm was lost), outbox delivery through a D1 outage, and a completion abandoned
// mid-way. The runtime also fires due alarms on its own, so every test holds whichever runs first.
import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { accountFor, sessionFor } from "../../objects/stubs";
import { sweepExpiredUploads } from "../../src/uploads/expiry-sweep";
import {
  callJson,
  callWithVars,
  eventualRows,
  putPart,
  randomBytes,
  sleep,
  tokenFor,
  uploadWhole,
} from "../support/http";
import { d1Upload, drain } from "../support/objects";

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
    const r2 = await runInDurableObject(sessionFor(env, uploadId), (_o, state) =>
      state.storage.sql
        .exec<{ r2_upload_id: string; r2_key: string }>("SELECT r2_upload_id, r2_key FROM session")
        .one(),
    );

    await sleep(1100);
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
    const api = callWithVars({ UPLOAD_TTL_SECONDS: "1" });
    const token = await tokenFor("swept");
    const created = await api("/v1/uploads", { method: "POST", token, json: { filename: "w", size: 100 } });
    const { uploadId } = created.body;
    await drain(sessionFor(env, uploadId)); // the create checkpoint reaches D1; the upload is not yet due to expire
    expect((await d1Upload(uploadId)).status).toBe("active");
    // Lose the expiry alarm, as a platform incident might.
    await runInDurableObject(sessionFor(env, uploadId), (_o, state) => state.storage.deleteAlarm());
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

describe("the session state machine", () => {
  it("fails a completion abandoned mid-way once it expires, releasing quota and removing the object", async () => {
    const api = callWithVars({ UPLOAD_TTL_SECONDS: "1" });
    const token = await tokenFor("abandoned");
    const created = await api("/v1/uploads", { method: "POST", token, json: { filename: "a", size: 10 } });
    const { uploadId } = created.body;
    await putPart(uploadId, 1, randomBytes(10), token);
    // A Worker begins completion, then dies before finishing.
    const step = await sessionFor(env, uploadId).beginCompletion("abandoned");
    expect(step).toMatchObject({ ok: true, value: { kind: "assemble" } });
    await sleep(1100);
    await runDurableObjectAlarm(sessionFor(env, uploadId));
    await drain(sessionFor(env, uploadId));
    expect((await callJson(`/v1/uploads/${uploadId}`, { token })).body.status).toBe("failed");
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ reservedBytes: 0, usedBytes: 0 });
  });
});
