// The account object's quota ledger through its RPC methods: reservations within the quota and the
// active-upload limit, idempotent settlement, and the alarm that gives back a reservation whose session
// never opened (made due through storage rather than waited for).
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { accountFor } from "../../objects/stubs";
import { callJson, tokenFor } from "../support/http";
import { runAlarmAfter, testMeta, testPolicy } from "../support/objects";

describe("the ledger", () => {
  const policy = testPolicy({ quotaBytes: 1000, maxActiveUploads: 3 });

  it("keeps used + reserved ≤ limit and settles idempotently", async () => {
    const a = accountFor(env, "ledger-user");
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
    expect(await a.removeFile({ userId: "ledger-user", fileId: "f1", meta: testMeta })).toMatchObject({ ok: true });
    expect(await a.removeFile({ userId: "ledger-user", fileId: "f1", meta: testMeta })).toMatchObject({
      ok: false,
      error: { status: 404 },
    });
    expect(await a.usage("ledger-user", policy)).toMatchObject({ usedBytes: 0, fileCount: 0 });
    expect(await env.BUCKET.head("u/ledger-user/f1")).toBeNull();
  });

  it("limits concurrently active uploads", async () => {
    const a = accountFor(env, "busy-user");
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
    const a = accountFor(env, "orphan-user");
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
    await runAlarmAfter(a);
    expect(await a.usage("orphan-user", policy)).toMatchObject({ reservedBytes: 0, activeUploads: 0 });
  });

  it("keeps a reservation whose session is alive", async () => {
    const token = await tokenFor("alive-user");
    const created = await callJson("/v1/uploads", { method: "POST", token, json: { filename: "x", size: 77 } });
    const a = accountFor(env, "alive-user");
    await runInDurableObject(a, (_o, state) => state.storage.sql.exec("UPDATE reservations SET check_at = 1"));
    await runAlarmAfter(a);
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ reservedBytes: 77, activeUploads: 1 });
    expect((await callJson(`/v1/uploads/${created.body.uploadId}`, { token })).body.status).toBe("active");
  });
});

describe("reservation adjustments (deferred lengths)", () => {
  const policy = testPolicy({ quotaBytes: 1000, maxActiveUploads: 10 });
  it("grows only within the quota and shrinks freely", async () => {
    const a = accountFor(env, "adjust-user");
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
