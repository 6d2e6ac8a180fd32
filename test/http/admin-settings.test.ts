import { env } from "cloudflare:test";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { adminFingerprint } from "../../src/admin/admin-auth";
import { readConfig } from "../../src/settings/config";
import {
  appendVersion,
  clearSettingsCache,
  loadSettings,
  type Settings,
  settingsFromConfig,
} from "../../src/settings/settings";
import { adminHeaders, callJson, MiB } from "../support/http";

/** The settings wrangler.toml's vars give (asserted literally once, below). */
const VARS: Settings = settingsFromConfig(readConfig(env));

interface Row {
  version: number;
  settings: string;
  changed_by: string;
  changed_at: number;
  kind: string;
  rolled_back_to: number | null;
}

const rows = async () => (await env.DB.prepare("SELECT * FROM settings_versions ORDER BY version").all<Row>()).results;
const latestVersion = async () =>
  (await env.DB.prepare("SELECT COALESCE(MAX(version), 0) AS v FROM settings_versions").first<{ v: number }>())!.v;

const put = (json: unknown, headers: Record<string, string> = {}) =>
  callJson("/v1/admin/settings", { method: "PUT", headers: adminHeaders(headers), json });

/** Writes a version straight into D1, as another isolate would, without touching this isolate's cache. */
async function insertDirectly(overrides: Record<string, unknown>): Promise<number> {
  const version = (await latestVersion()) + 1;
  await env.DB.prepare(
    `INSERT INTO settings_versions (version, settings, changed_by, changed_at, kind)
     VALUES (?, ?, 'test', ?, 'update')`,
  )
    .bind(version, JSON.stringify(overrides), Date.now())
    .run();
  return version;
}

let fingerprint: string;
beforeAll(async () => {
  fingerprint = await adminFingerprint(env.ADMIN_TOKEN);
  clearSettingsCache();
});

describe("settings lifecycle", () => {
  it("starts at version 0 with the vars", async () => {
    expect(VARS).toEqual({
      defaultQuotaBytes: 10_737_418_240,
      maxFileSizeBytes: 5_368_709_120,
      allowedContentTypes: ["*/*"],
      uploadTtlSeconds: 86_400,
      partSizeBytes: 8_388_608,
      requestsPerSecond: 50,
      burst: 100,
      bytesPerMinute: 10_737_418_240,
      maxActiveUploads: 100,
      corsOrigins: ["*"],
    });
    const res = await callJson("/v1/admin/settings", { headers: adminHeaders() });
    expect(res.status).toBe(200);
    expect(res.headers.get("ETag")).toBe('"0"');
    expect(res.body).toEqual({ version: 0, settings: VARS, overrides: {} });
    expect(await loadSettings(env)).toEqual({ version: 0, settings: VARS });
  });

  it("requires If-Match (428) and writes nothing without it", async () => {
    const res = await put({ burst: 150 });
    expect(res.status).toBe(428);
    expect(res.body.error.code).toBe("precondition_required");
    expect(await rows()).toEqual([]);
  });

  it("treats a malformed or weak If-Match as false (412), writing nothing", async () => {
    for (const value of ["abc", '"v1"', '"0', "1.5", 'W/"0"', '"1", W/"0"']) {
      const res = await put({ burst: 150 }, { "If-Match": value });
      expect(res.status, value).toBe(412);
      expect(res.body.error).toMatchObject({ code: "version_conflict", details: { currentVersion: 0 } });
      expect(res.headers.get("ETag")).toBe('"0"');
    }
    expect(await rows()).toEqual([]);
  });

  it("applies an update as version 1, attributed to the token's fingerprint", async () => {
    const started = Date.now();
    const res = await put({ burst: 150, maxActiveUploads: 20 }, { "If-Match": '"0"' });
    expect(res.status).toBe(200);
    expect(res.headers.get("ETag")).toBe('"1"');
    expect(res.body).toEqual({
      version: 1,
      settings: { ...VARS, burst: 150, maxActiveUploads: 20 },
      overrides: { burst: 150, maxActiveUploads: 20 },
    });
    const [row] = await rows();
    expect(row).toMatchObject({ version: 1, changed_by: fingerprint, kind: "update", rolled_back_to: null });
    expect(JSON.parse(row.settings)).toEqual({ burst: 150, maxActiveUploads: 20 });
    expect(row.changed_at).toBeGreaterThanOrEqual(started);
    expect(fingerprint).toMatch(/^token:[0-9a-f]{12}$/);

    const get = await callJson("/v1/admin/settings", { headers: adminHeaders() });
    expect(get.headers.get("ETag")).toBe('"1"');
    expect(get.body.settings.burst).toBe(150);
  });

  it("accepts a bare version in If-Match and records X-Admin-Actor; normalizes lists", async () => {
    const res = await put(
      {
        allowedContentTypes: [" Image/* ", "application/pdf", "image/*"],
        corsOrigins: ["HTTPS://App.Example", "http://localhost:5173"],
      },
      { "If-Match": "1", "X-Admin-Actor": "ops@example.com" },
    );
    expect(res.status).toBe(200);
    expect(res.body.version).toBe(2);
    expect(res.body.overrides).toEqual({
      allowedContentTypes: ["image/*", "application/pdf"],
      burst: 150,
      maxActiveUploads: 20,
      corsOrigins: ["https://app.example", "http://localhost:5173"],
    });
    const row = (await rows())[1];
    expect(row).toMatchObject({ version: 2, changed_by: "ops@example.com", kind: "update" });
    expect(JSON.parse(row.settings)).toEqual(res.body.overrides);
  });

  it("accepts a list in If-Match if any tag is current", async () => {
    const res = await put({ uploadTtlSeconds: 3600 }, { "If-Match": '"0", W/"2", "2"' });
    expect(res.status).toBe(200);
    expect(res.body.version).toBe(3);
    expect(res.body.settings.uploadTtlSeconds).toBe(3600);
  });

  it("refuses a stale If-Match with 412 and the current version, writing nothing", async () => {
    const before = await rows();
    const res = await put({ burst: 1 }, { "If-Match": '"2"' });
    expect(res.status).toBe(412);
    expect(res.headers.get("ETag")).toBe('"3"');
    expect(res.body).toEqual({
      error: {
        code: "version_conflict",
        message: "Settings changed since that version; the current version is 3",
        details: { currentVersion: 3 },
      },
    });
    expect(await rows()).toEqual(before);
  });

  it("refuses invalid changes with 400 and zod details, writing nothing", async () => {
    const before = await rows();
    const cases: [unknown, string][] = [
      [{ burstt: 5 }, ""],
      [{ partSizeBytes: MiB }, "partSizeBytes"],
      [{ partSizeBytes: 96 * MiB }, "partSizeBytes"],
      [{ requestsPerSecond: 0 }, "requestsPerSecond"],
      [{ burst: 1.5 }, "burst"],
      [{ burst: "5" }, "burst"],
      [{ maxActiveUploads: -1 }, "maxActiveUploads"],
      [{ uploadTtlSeconds: 8 * 86_400 }, "uploadTtlSeconds"],
      [{ allowedContentTypes: [] }, "allowedContentTypes"],
      [{ allowedContentTypes: ["not a type"] }, "allowedContentTypes.0"],
      [{ corsOrigins: ["https://x.example/path"] }, "corsOrigins.0"],
      [{ corsOrigins: ["ftp://x.example"] }, "corsOrigins.0"],
      [{ corsOrigins: ["https://x.example:70000"] }, "corsOrigins.0"],
      [{}, ""],
      [[], ""],
      [null, ""],
      // Valid alone, invalid with the rest: the byte budget must fit one part.
      [{ bytesPerMinute: 8 * MiB - 1 }, "bytesPerMinute"],
    ];
    for (const [body, path] of cases) {
      const res = await put(body, { "If-Match": '"3"' });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toBe("invalid_request");
      expect(Array.isArray(res.body.error.details), JSON.stringify(body)).toBe(true);
      expect(
        res.body.error.details.map((d: { path: string }) => d.path),
        JSON.stringify(body),
      ).toContain(path);
    }
    const notJson = await callJson("/v1/admin/settings", {
      method: "PUT",
      headers: adminHeaders({ "If-Match": '"3"', "Content-Type": "application/json" }),
      body: "{burst: 5",
    });
    expect(notJson.status).toBe(400);
    expect(notJson.body.error).toEqual({ code: "invalid_request", message: "Malformed JSON in request body" });
    const badActor = await put({ burst: 5 }, { "If-Match": '"3"', "X-Admin-Actor": "bad actor; drop" });
    expect(badActor.status).toBe(400);
    expect(badActor.body.error.details[0].path).toBe("");
    expect(await rows()).toEqual(before);
  });

  it("removes an override with null, so the var applies again", async () => {
    const res = await put({ burst: null, requestsPerSecond: null }, { "If-Match": '"3"' });
    expect(res.status).toBe(200);
    expect(res.body.version).toBe(4);
    expect(res.body.settings.burst).toBe(VARS.burst);
    expect(res.body.overrides).not.toHaveProperty("burst");
    const row = (await rows())[3];
    expect(JSON.parse(row.settings)).toEqual({
      allowedContentTypes: ["image/*", "application/pdf"],
      uploadTtlSeconds: 3600,
      maxActiveUploads: 20,
      corsOrigins: ["https://app.example", "http://localhost:5173"],
    });
  });

  it("lists history newest first with diffs against the previous version", async () => {
    const res = await callJson("/v1/admin/settings/history", { headers: adminHeaders() });
    expect(res.status).toBe(200);
    expect(res.body.nextCursor).toBeNull();
    expect(res.body.versions.map((i: { version: number }) => i.version)).toEqual([4, 3, 2, 1]);
    const [v4, v3, v2, v1] = res.body.versions;
    expect(v4).toMatchObject({ version: 4, changedBy: fingerprint, kind: "update" });
    expect(v4).not.toHaveProperty("rolledBackTo");
    expect(new Date(v4.changedAt).toISOString()).toBe(v4.changedAt);
    expect(v4.diff).toEqual([{ key: "burst", from: 150, to: 100 }]);
    expect(v3.diff).toEqual([{ key: "uploadTtlSeconds", from: 86_400, to: 3600 }]);
    expect(v2.changedBy).toBe("ops@example.com");
    expect(v2.diff).toEqual([
      { key: "allowedContentTypes", from: ["*/*"], to: ["image/*", "application/pdf"] },
      { key: "corsOrigins", from: ["*"], to: ["https://app.example", "http://localhost:5173"] },
    ]);
    expect(v1.diff).toEqual([
      { key: "burst", from: 100, to: 150 },
      { key: "maxActiveUploads", from: 100, to: 20 },
    ]);
  });

  it("pages history with a cursor, diffing the last item of a page against the next page", async () => {
    const first = await callJson("/v1/admin/settings/history?limit=2", { headers: adminHeaders() });
    expect(first.body.versions.map((i: { version: number }) => i.version)).toEqual([4, 3]);
    expect(first.body.versions[1].diff).toEqual([{ key: "uploadTtlSeconds", from: 86_400, to: 3600 }]);
    expect(first.body.nextCursor).toBe("3");
    const second = await callJson(`/v1/admin/settings/history?limit=2&cursor=${first.body.nextCursor}`, {
      headers: adminHeaders(),
    });
    expect(second.body.versions.map((i: { version: number }) => i.version)).toEqual([2, 1]);
    expect(second.body.nextCursor).toBeNull();
    expect(second.body.versions[1].diff).toEqual([
      { key: "burst", from: 100, to: 150 },
      { key: "maxActiveUploads", from: 100, to: 20 },
    ]);
    const empty = await callJson("/v1/admin/settings/history?cursor=&limit=", { headers: adminHeaders() });
    expect(empty.body.versions.map((i: { version: number }) => i.version)).toEqual([4, 3, 2, 1]);
    for (const query of ["limit=0", "limit=101", "limit=x", "cursor=-1", "cursor=abc", "unknown=1"]) {
      const res = await callJson(`/v1/admin/settings/history?${query}`, { headers: adminHeaders() });
      expect(res.status, query).toBe(400);
      expect(res.body.error.code).toBe("invalid_request");
    }
  });

  it("rolls back to an old version as a new version, leaving history intact", async () => {
    const before = await rows();
    const res = await callJson("/v1/admin/settings/rollback/1", {
      method: "POST",
      headers: adminHeaders({ "X-Admin-Actor": "oncall" }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("ETag")).toBe('"5"');
    expect(res.body).toEqual({
      version: 5,
      settings: { ...VARS, burst: 150, maxActiveUploads: 20 },
      overrides: { burst: 150, maxActiveUploads: 20 },
    });
    const after = await rows();
    expect(after.slice(0, 4)).toEqual(before);
    expect(after[4]).toMatchObject({ version: 5, kind: "rollback", rolled_back_to: 1, changed_by: "oncall" });
    expect(JSON.parse(after[4].settings)).toEqual(JSON.parse(after[0].settings));

    const history = await callJson("/v1/admin/settings/history?limit=1", { headers: adminHeaders() });
    expect(history.body.versions[0]).toMatchObject({ version: 5, kind: "rollback", rolledBackTo: 1 });
    expect(history.body.versions[0].diff).toEqual([
      { key: "allowedContentTypes", from: ["image/*", "application/pdf"], to: ["*/*"] },
      { key: "uploadTtlSeconds", from: 3600, to: 86_400 },
      { key: "burst", from: 100, to: 150 },
      { key: "corsOrigins", from: ["https://app.example", "http://localhost:5173"], to: ["*"] },
    ]);
  });

  it("honours If-Match on rollback and 404s unknown versions", async () => {
    const stale = await callJson("/v1/admin/settings/rollback/2", {
      method: "POST",
      headers: adminHeaders({ "If-Match": '"4"' }),
    });
    expect(stale.status).toBe(412);
    expect(stale.body.error.details).toEqual({ currentVersion: 5 });
    for (const version of ["99", "0"]) {
      const res = await callJson(`/v1/admin/settings/rollback/${version}`, { method: "POST", headers: adminHeaders() });
      expect(res.status, version).toBe(404);
      expect(res.body.error.code).toBe("not_found");
    }
    const bad = await callJson("/v1/admin/settings/rollback/abc", { method: "POST", headers: adminHeaders() });
    expect(bad.status).toBe(400);
    expect(await latestVersion()).toBe(5);

    const ok = await callJson("/v1/admin/settings/rollback/2", {
      method: "POST",
      headers: adminHeaders({ "If-Match": '"5"' }),
    });
    expect(ok.status).toBe(200);
    expect(ok.body.version).toBe(6);
    expect(ok.body.overrides).toEqual({
      allowedContentTypes: ["image/*", "application/pdf"],
      burst: 150,
      maxActiveUploads: 20,
      corsOrigins: ["https://app.example", "http://localhost:5173"],
    });
  });

  it("lets exactly one of two concurrent updates with the same If-Match win", async () => {
    const version = await latestVersion();
    const [a, b] = await Promise.all([
      put({ maxActiveUploads: 31 }, { "If-Match": `"${version}"` }),
      put({ maxActiveUploads: 32 }, { "If-Match": `"${version}"` }),
    ]);
    expect([a.status, b.status].sort()).toEqual([200, 412]);
    const winner = a.status === 200 ? a : b;
    const loser = a.status === 200 ? b : a;
    expect(loser.body.error).toMatchObject({ code: "version_conflict", details: { currentVersion: version + 1 } });
    const all = await rows();
    expect(all).toHaveLength(version + 1);
    expect(JSON.parse(all[version].settings).maxActiveUploads).toBe(winner.body.settings.maxActiveUploads);
  });

  it("judges a change by the conflicts it creates, not by odd vars it leaves alone", async () => {
    const { createApp } = await import("../../src/http/app");
    // Vars an e2e run might use: a 5 s TTL (below the admin minimum) and a byte budget below one part.
    const oddEnv = { ...env, UPLOAD_TTL_SECONDS: "5", RATE_LIMIT_BYTES_PER_MINUTE: "1000" } as Env;
    const send = async (json: unknown) => {
      const res = await createApp().request(
        "/v1/admin/settings",
        {
          method: "PUT",
          headers: {
            ...adminHeaders({ "If-Match": `"${await latestVersion()}"` }),
            "Content-Type": "application/json",
          },
          body: JSON.stringify(json),
        },
        oddEnv,
      );
      return { status: res.status, body: (await res.json()) as any };
    };
    const unrelated = await send({ maxActiveUploads: 25 });
    expect(unrelated.status).toBe(200);
    expect(unrelated.body.settings).toMatchObject({ uploadTtlSeconds: 5, bytesPerMinute: 1000, maxActiveUploads: 25 });

    const before = await rows();
    const touching = await send({ partSizeBytes: 6 * MiB });
    expect(touching.status).toBe(400);
    expect(touching.body.error.details).toEqual([
      {
        path: "bytesPerMinute",
        message: `must be at least partSizeBytes (${6 * MiB}): a part larger than the byte budget never passes`,
      },
    ]);
    expect(await rows()).toEqual(before);
    expect((await send({ partSizeBytes: 6 * MiB, bytesPerMinute: 6 * MiB })).status).toBe(200);
  });

  it("appends at most one version per expected version, even when the writers race in D1", async () => {
    const version = await latestVersion();
    const write = (n: number) =>
      appendVersion(env.DB, {
        expectedVersion: version,
        overrides: { maxActiveUploads: n },
        changedBy: "race",
        changedAt: Date.now(),
        kind: "update",
      });
    // Both statements are sent before either has finished; the guard inside the INSERT decides.
    const results = await Promise.all([write(33), write(34)]);
    expect(results.filter((r) => r === version + 1)).toHaveLength(1);
    expect(results.filter((r) => r === null)).toHaveLength(1);
    expect(await latestVersion()).toBe(version + 1);
    // A stale writer gets null too, and the table is unchanged.
    expect(await write(35)).toBeNull();
    expect(await latestVersion()).toBe(version + 1);
  });

  it("applies If-Match: * unconditionally, each change merged onto the latest so none is lost", async () => {
    const version = await latestVersion();
    const [a, b] = await Promise.all([
      put({ maxActiveUploads: 41 }, { "If-Match": "*" }),
      put({ burst: 151 }, { "If-Match": "*" }),
    ]);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect([a.body.version, b.body.version].sort()).toEqual([version + 1, version + 2]);
    const latest = await callJson("/v1/admin/settings", { headers: adminHeaders() });
    expect(latest.body.version).toBe(version + 2);
    expect(latest.body.settings).toMatchObject({ maxActiveUploads: 41, burst: 151 });
  });

  it("refuses to rewrite or delete history, even from SQL", async () => {
    await expect(
      env.DB.prepare("UPDATE settings_versions SET changed_by = 'x' WHERE version = 1").run(),
    ).rejects.toThrow(/append-only/);
    await expect(env.DB.prepare("DELETE FROM settings_versions WHERE version = 1").run()).rejects.toThrow(
      /append-only/,
    );
    await expect(
      env.DB.prepare(
        `INSERT INTO settings_versions (version, settings, changed_by, changed_at, kind)
         VALUES (100, '{}', 'x', 0, 'update')`,
      ).run(),
    ).rejects.toThrow(/MAX\(version\) \+ 1/);
  });
});

describe("loadSettings", () => {
  afterEach(() => {
    vi.restoreAllMocks();
    clearSettingsCache();
  });

  it("reflects a change made elsewhere once the cache is cleared", async () => {
    clearSettingsCache();
    const before = await loadSettings(env);
    expect(before.version).toBe(await latestVersion());
    const version = await insertDirectly({ requestsPerSecond: 7 });
    // Cached: this isolate has not seen the write yet.
    expect(await loadSettings(env)).toEqual(before);
    clearSettingsCache();
    expect(await loadSettings(env)).toEqual({ version, settings: { ...VARS, requestsPerSecond: 7 } });
  });

  it("re-reads D1 once the cache lifetime (10 s) has passed", async () => {
    const now = Date.now();
    const before = await loadSettings(env);
    const version = await insertDirectly({ requestsPerSecond: 8 });
    vi.spyOn(Date, "now").mockReturnValue(now + 9_000);
    expect((await loadSettings(env)).version).toBe(before.version);
    vi.spyOn(Date, "now").mockReturnValue(now + 10_001);
    expect(await loadSettings(env)).toEqual({ version, settings: { ...VARS, requestsPerSecond: 8 } });
  });

  it("reflects an admin update through the API at once in this isolate", async () => {
    await loadSettings(env);
    const res = await put({ requestsPerSecond: 9 }, { "If-Match": `"${await latestVersion()}"` });
    expect(res.status).toBe(200);
    expect(await loadSettings(env)).toEqual({ version: res.body.version, settings: res.body.settings });
  });

  it("keeps serving the last value when D1 fails, and the vars when it has none", async () => {
    const good = await loadSettings(env);
    const brokenDb = {
      prepare() {
        throw new Error("D1 is down");
      },
    } as unknown as D1Database;
    const broken = { ...env, DB: brokenDb } as Env;
    vi.spyOn(Date, "now").mockReturnValue(Date.now() + 60_000);
    const logged = vi.spyOn(console, "error").mockImplementation(() => {});
    expect(await loadSettings(broken)).toEqual(good);
    clearSettingsCache();
    expect(await loadSettings(broken)).toEqual({ version: 0, settings: VARS });
    expect(logged).toHaveBeenCalledWith(expect.stringContaining("settings read failed"));
  });

  it("ignores stored keys that are no longer valid, keeping the rest", async () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    const version = await insertDirectly({ requestsPerSecond: 11, burst: -5, retired: true });
    const loaded = await loadSettings(env);
    expect(loaded).toEqual({ version, settings: { ...VARS, requestsPerSecond: 11 } });
  });
});
