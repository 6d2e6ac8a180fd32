import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { clearSettingsCache } from "../../src/settings/settings";
import { adminHeaders, call, callJson, randomBytes, tokenFor, uploadWhole } from "../support/http";

const admin = adminHeaders();

async function putSettings(patch: Record<string, unknown>) {
  const current = await callJson("/v1/admin/settings", { headers: admin });
  const res = await callJson("/v1/admin/settings", {
    method: "PUT",
    headers: { ...admin, "If-Match": `"${current.body.version}"` },
    json: patch,
  });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  clearSettingsCache();
  return res;
}

const create = (token: string, json: Record<string, unknown>) =>
  callJson("/v1/uploads", { method: "POST", token, json });

describe("admin user routes", () => {
  it("require the admin token: missing 401, wrong 403, user token 403", async () => {
    for (const method of ["GET", "PUT"]) {
      const init = { method, json: method === "PUT" ? { quotaBytes: 1 } : undefined };
      expect((await callJson("/v1/admin/users/someone", init)).status).toBe(401);
      expect(
        (await callJson("/v1/admin/users/someone", { ...init, headers: { Authorization: "Bearer wrong" } })).status,
      ).toBe(403);
      const userToken = await tokenFor("someone");
      const asUser = await callJson("/v1/admin/users/someone", { ...init, token: userToken });
      expect(asUser.status).toBe(403);
      expect(asUser.body.error.code).toBe("forbidden");
    }
    const view = await callJson("/v1/admin/users/someone", { headers: admin });
    expect(view.status).toBe(200);
    expect((await callJson("/v1/admin/users/someone", { headers: admin })).body.overrides).toEqual({});
  });

  it("shows the ledger, limits, active uploads and recent audit of a user", async () => {
    const token = await tokenFor("inspected");
    await uploadWhole(token, randomBytes(1234));
    const open = await create(token, { filename: "open", size: 99 });
    const view = await callJson("/v1/admin/users/inspected", { headers: admin });
    expect(view.body.usage).toMatchObject({ usedBytes: 1234, reservedBytes: 99, fileCount: 1, activeUploads: 1 });
    expect(view.body.limits).toMatchObject({
      quotaBytes: 10 * 1024 ** 3,
      maxActiveUploads: 100,
      requestsPerSecond: 50,
      burst: 100,
    });
    expect(view.body.activeUploads.map((u: any) => u.uploadId)).toEqual([open.body.uploadId]);
    expect(Array.isArray(view.body.recentAudit)).toBe(true);
    expect((await callJson("/v1/admin/users/bad user", { headers: admin })).status).toBe(400);
  });

  it("validates overrides and writes nothing when one is invalid", async () => {
    const res = await callJson("/v1/admin/users/validated", {
      method: "PUT",
      headers: admin,
      json: { quotaBytes: -1, burst: 5 },
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("invalid_request");
    expect(
      (await callJson("/v1/admin/users/validated", { method: "PUT", headers: admin, json: { surprise: 1 } })).status,
    ).toBe(400);
    expect((await callJson("/v1/admin/users/validated", { headers: admin })).body.overrides).toEqual({});
  });

  it("lowering a quota below usage deletes nothing and refuses new uploads", async () => {
    const token = await tokenFor("shrunk");
    const { completed } = await uploadWhole(token, randomBytes(3000));
    const res = await callJson("/v1/admin/users/shrunk", { method: "PUT", headers: admin, json: { quotaBytes: 1000 } });
    expect(res.status).toBe(200);
    expect(res.body.usage).toMatchObject({ usedBytes: 3000, limitBytes: 1000 });
    const refused = await create(token, { filename: "more", size: 1 });
    expect(refused.status).toBe(413);
    expect(refused.body.error).toMatchObject({
      code: "quota_exceeded",
      details: { usedBytes: 3000, limitBytes: 1000 },
    });
    const stillThere = await call(`/v1/files/${completed.body.file.id}/content`, { token });
    expect(stillThere.status).toBe(200);
    expect((await stillThere.arrayBuffer()).byteLength).toBe(3000);
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({
      usedBytes: 3000,
      limitBytes: 1000,
      fileCount: 1,
    });
    // null removes the override: the service quota applies again.
    const restored = await callJson("/v1/admin/users/shrunk", {
      method: "PUT",
      headers: admin,
      json: { quotaBytes: null },
    });
    expect(restored.body.overrides).toEqual({});
    expect((await create(token, { filename: "more", size: 1 })).status).toBe(201);
  });
});

describe("settings take effect on the next request, and per-user overrides beat them", () => {
  it("enforces a changed max file size and allowed types on the next create", async () => {
    const plain = await tokenFor("plain-user");
    const vip = await tokenFor("vip-user");
    expect((await create(plain, { filename: "a", size: 5000, contentType: "text/plain" })).status).toBe(201);

    await putSettings({ maxFileSizeBytes: 4000, allowedContentTypes: ["image/*"] });
    const tooBig = await create(plain, { filename: "a", size: 5000, contentType: "image/png" });
    expect(tooBig.status).toBe(413);
    expect(tooBig.body.error).toMatchObject({ code: "file_too_large", details: { maxFileSizeBytes: 4000 } });
    const wrongType = await create(plain, { filename: "a", size: 10, contentType: "text/plain" });
    expect(wrongType.status).toBe(415);
    expect((await create(plain, { filename: "a", size: 10, contentType: "image/png" })).status).toBe(201);

    const override = await callJson("/v1/admin/users/vip-user", {
      method: "PUT",
      headers: admin,
      json: { maxFileSizeBytes: 10_000, allowedContentTypes: ["*/*"] },
    });
    expect(override.body.limits).toMatchObject({ maxFileSizeBytes: 10_000, allowedContentTypes: ["*/*"] });
    expect((await create(vip, { filename: "a", size: 5000, contentType: "text/plain" })).status).toBe(201);
    expect((await create(plain, { filename: "a", size: 5000, contentType: "image/png" })).status).toBe(413);

    await putSettings({ maxFileSizeBytes: null, allowedContentTypes: null });
    expect((await create(plain, { filename: "a", size: 5000, contentType: "text/plain" })).status).toBe(201);
  });

  it("a per-user rate limit override applies to that user only", async () => {
    await callJson("/v1/admin/users/throttled", {
      method: "PUT",
      headers: admin,
      json: { requestsPerSecond: 1, burst: 1 },
    });
    const token = await tokenFor("throttled");
    expect((await callJson("/v1/usage", { token })).status).toBe(200);
    const second = await callJson("/v1/usage", { token });
    expect(second.status).toBe(429);
    expect(second.headers.get("RateLimit-Policy")).toBe('"requests";q=1;w=1');
    const other = await tokenFor("unthrottled");
    expect((await callJson("/v1/usage", { token: other })).status).toBe(200);
    expect((await callJson("/v1/usage", { token: other })).status).toBe(200);
  });
});

describe("POST /v1/admin/users/:userId/tokens", () => {
  it("mints a short-lived user token that works on the user's routes, audited before it is returned", async () => {
    const before = Date.now();
    const res = await callJson("/v1/admin/users/migrated-owner/tokens", {
      method: "POST",
      headers: admin,
      json: { ttlSeconds: 120 },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const expiresAt = Date.parse(res.body.expiresAt);
    expect(expiresAt).toBeGreaterThanOrEqual(before + 119_000);
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 121_000);
    const usage = await callJson("/v1/usage", { token: res.body.token });
    expect(usage.status).toBe(200);
    const rows = await env.DB.prepare(
      "SELECT * FROM file_access_logs WHERE user_id = ? AND action = 'user.token_issue'",
    )
      .bind("migrated-owner")
      .all<Record<string, unknown>>();
    expect(rows.results).toHaveLength(1);
    expect(JSON.parse(String(rows.results[0].metadata))).toMatchObject({ ttlSeconds: 120 });
  });

  it("defaults to 15 minutes, takes an empty body, and refuses bad lifetimes and ids with 400", async () => {
    const res = await callJson("/v1/admin/users/default-ttl/tokens", { method: "POST", headers: admin });
    expect(res.status).toBe(201);
    expect(Date.parse(res.body.expiresAt) - Date.now()).toBeGreaterThan(890_000);
    for (const json of [{ ttlSeconds: 0 }, { ttlSeconds: 86_401 }, { ttlSeconds: 1.5 }, { ttl: 60 }]) {
      const bad = await callJson("/v1/admin/users/default-ttl/tokens", { method: "POST", headers: admin, json });
      expect(bad.status).toBe(400);
      expect(bad.body.error.code).toBe("invalid_request");
    }
    const badId = await callJson("/v1/admin/users/bad%20id/tokens", { method: "POST", headers: admin, json: {} });
    expect(badId.status).toBe(400);
  });

  it("is for operators only", async () => {
    expect((await callJson("/v1/admin/users/x/tokens", { method: "POST", json: {} })).status).toBe(401);
    const asUser = await callJson("/v1/admin/users/x/tokens", { method: "POST", json: {}, token: await tokenFor("x") });
    expect(asUser.status).toBe(403);
  });
});
