import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { adminHeaders, callJson } from "../support/http";

const HOUR = 3_600_000;
const admin = adminHeaders();
const get = (path: string) => callJson(path, { headers: admin });

interface LogSeed {
  id: string;
  user: string;
  action: string;
  success: boolean;
  bytes?: number;
  code?: string | null;
  at: number;
  metadata?: string | null;
}

function insertLog(l: LogSeed): D1PreparedStatement {
  return env.DB.prepare(
    `INSERT INTO file_access_logs (id, file_id, upload_id, user_id, action, success, error_code, error_message,
       bytes_transferred, duration_ms, ip_address, user_agent, metadata, timestamp)
     VALUES (?, NULL, ?, ?, ?, ?, ?, ?, ?, 12, '203.0.113.7', 'test-agent', ?, ?)`,
  ).bind(
    l.id,
    `up-${l.id}`,
    l.user,
    l.action,
    l.success ? 1 : 0,
    l.code ?? null,
    l.code ? `failed: ${l.code}` : null,
    l.bytes ?? 0,
    l.metadata ?? null,
    l.at,
  );
}

function insertUpload(id: string, user: string, status: string, now: number): D1PreparedStatement {
  return env.DB.prepare(
    `INSERT INTO multipart_uploads (upload_id, file_id, user_id, r2_key, filename, mime_type, total_size, part_size,
       status, created_at, updated_at, expires_at)
     VALUES (?, ?, ?, ?, 'a.bin', 'application/octet-stream', 100, 5242880, ?, ?, ?, ?)`,
  ).bind(id, `file-${id}`, user, `${user}/${id}`, status, now, now, now + 24 * HOUR);
}

function insertFile(
  id: string,
  user: string,
  size: number,
  status: "active" | "deleted",
  now: number,
): D1PreparedStatement {
  return env.DB.prepare(
    `INSERT INTO files (id, user_id, filename, r2_key, mime_type, file_size, status, created_at, updated_at)
     VALUES (?, ?, 'f.bin', ?, 'application/octet-stream', ?, ?, ?, ?)`,
  ).bind(id, user, `${user}/${id}`, size, status, now, now);
}

function insertQuota(user: string, used: number, reserved: number, now: number): D1PreparedStatement {
  return env.DB.prepare(
    `INSERT INTO user_quotas (user_id, limit_bytes, used_bytes, reserved_bytes, updated_at) VALUES (?, 10000, ?, ?, ?)`,
  ).bind(user, used, reserved, now);
}

const NOW = Date.now();
/** A fixed instant shared by three of dave's events, to exercise the (timestamp, id) tie-break. */
const TIE = NOW - 3 * HOUR;

const LOGS: LogSeed[] = [
  {
    id: "p1",
    user: "alice",
    action: "upload.part",
    success: true,
    bytes: 1000,
    at: NOW - 1 * HOUR,
    metadata: '{"part":1}',
  },
  { id: "p2", user: "bob", action: "upload.part", success: true, bytes: 2500, at: NOW - 23 * HOUR },
  { id: "p3", user: "bob", action: "upload.part", success: true, bytes: 7777, at: NOW - 25 * HOUR },
  {
    id: "p4",
    user: "alice",
    action: "upload.part",
    success: false,
    bytes: 300,
    code: "quota_exceeded",
    at: NOW - 2 * HOUR,
  },
  { id: "d1", user: "alice", action: "file.download", success: true, bytes: 5000, at: NOW - 1 * HOUR + 1 },
  { id: "r1", user: "bob", action: "upload.create", success: false, code: "rate_limited", at: NOW - 10 * 60_000 },
  { id: "r2", user: "carol", action: "upload.create", success: false, code: "rate_limited", at: NOW - 20 * 60_000 },
  { id: "r3", user: "carol", action: "file.read", success: false, code: "not_found", at: NOW - 30 * 60_000 },
  { id: "r4", user: "carol", action: "file.read", success: false, code: null, at: NOW - 5 * 60_000 },
  { id: "r5", user: "bob", action: "upload.create", success: false, code: "rate_limited", at: NOW - 30 * HOUR },
  { id: "t-a", user: "dave", action: "upload.create", success: true, at: TIE },
  { id: "t-c", user: "dave", action: "upload.part", success: true, bytes: 10, at: TIE },
  { id: "t-b", user: "dave", action: "upload.complete", success: true, at: TIE },
  { id: "t-0", user: "dave", action: "upload.create", success: true, at: TIE - 1 },
  { id: "t-9", user: "dave", action: "upload.create", success: true, at: TIE + 1, metadata: "not json" },
];

/** The seeded events in the order the API must list them: newest first, then id descending. */
const ordered = (logs: LogSeed[]) =>
  [...logs].sort((a, b) => b.at - a.at || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0)).map((l) => l.id);

const ids = (body: { events: { id: string }[] }) => body.events.map((i) => i.id);

describe("GET /v1/admin/stats", () => {
  it("answers zeros on an empty index", async () => {
    const res = await get("/v1/admin/stats");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      users: 0,
      bytesStored: 0,
      bytesReserved: 0,
      filesStored: 0,
      uploadsByStatus: { active: 0, completing: 0, completed: 0, aborted: 0, expired: 0, failed: 0 },
      last24h: { bytesUploaded: 0, requestsRejected: {} },
    });
  });

  it("sums the ledger, files, uploads and the last 24 h of the audit log", async () => {
    await env.DB.batch([
      insertQuota("alice", 1000, 500, NOW),
      insertQuota("bob", 2000, 0, NOW),
      insertQuota("carol", 0, 250, NOW),
      insertFile("f1", "alice", 600, "active", NOW),
      insertFile("f2", "alice", 400, "active", NOW),
      insertFile("f3", "bob", 2000, "active", NOW),
      insertFile("f4", "bob", 999, "deleted", NOW),
      ...["u1", "u2"].map((id) => insertUpload(id, "alice", "active", NOW)),
      insertUpload("u3", "bob", "completing", NOW),
      ...["u4", "u5", "u6"].map((id) => insertUpload(id, "bob", "completed", NOW)),
      insertUpload("u7", "carol", "aborted", NOW),
      insertUpload("u8", "carol", "expired", NOW),
      ...LOGS.map(insertLog),
    ]);
    const res = await get("/v1/admin/stats");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      users: 3,
      bytesStored: 3000, // active files only
      bytesReserved: 750,
      filesStored: 3,
      uploadsByStatus: { active: 2, completing: 1, completed: 3, aborted: 1, expired: 1, failed: 0 },
      last24h: {
        // Successful upload.part rows within 24 h: p1 + p2 + dave's t-c; not p3 (25 h), p4 (failed), d1 (a download).
        bytesUploaded: 1000 + 2500 + 10,
        // Failed rows within 24 h by error code; r5 is 30 h old; a row without a code counts as "unknown".
        requestsRejected: { not_found: 1, quota_exceeded: 1, rate_limited: 2, unknown: 1 },
      },
    });
  });
});

describe("GET /v1/admin/audit", () => {
  it("lists every user's events newest first, with full rows", async () => {
    const res = await get("/v1/admin/audit?limit=200");
    expect(res.status).toBe(200);
    expect(ids(res.body)).toEqual(ordered(LOGS));
    expect(res.body.nextCursor).toBeNull();
    const p1 = res.body.events.find((i: { id: string }) => i.id === "p1");
    expect(p1).toEqual({
      id: "p1",
      userId: "alice",
      action: "upload.part",
      success: true,
      fileId: null,
      uploadId: "up-p1",
      errorCode: null,
      errorMessage: null,
      bytesTransferred: 1000,
      durationMs: 12,
      ipAddress: "203.0.113.7",
      userAgent: "test-agent",
      metadata: { part: 1 },
      timestamp: new Date(NOW - HOUR).toISOString(),
    });
    const r4 = res.body.events.find((i: { id: string }) => i.id === "r4");
    expect(r4).toMatchObject({ success: false, errorCode: null, metadata: null });
    // Metadata that is not JSON is passed through as text rather than failing the listing.
    expect(res.body.events.find((i: { id: string }) => i.id === "t-9").metadata).toBe("not json");
  });

  it("filters by user, action and since (ISO date-time, date or epoch ms)", async () => {
    expect(ids((await get("/v1/admin/audit?userId=carol")).body)).toEqual(
      ordered(LOGS.filter((l) => l.user === "carol")),
    );
    expect(ids((await get("/v1/admin/audit?action=upload.part")).body)).toEqual(
      ordered(LOGS.filter((l) => l.action === "upload.part")),
    );
    expect(ids((await get("/v1/admin/audit?userId=bob&action=upload.create")).body)).toEqual(["r1", "r5"]);
    // Empty parameters mean "not given".
    expect(ids((await get("/v1/admin/audit?userId=&action=&since=&cursor=&limit=")).body)).toEqual(ordered(LOGS));
    // A well-formed action nobody wrote finds nothing rather than failing.
    expect((await get("/v1/admin/audit?action=file.teleport")).body).toEqual({ events: [], nextCursor: null });

    const since = NOW - 2 * HOUR;
    const recent = ordered(LOGS.filter((l) => l.at >= since));
    expect(ids((await get(`/v1/admin/audit?since=${since}`)).body)).toEqual(recent);
    const iso = encodeURIComponent(new Date(since).toISOString());
    expect(ids((await get(`/v1/admin/audit?since=${iso}`)).body)).toEqual(recent);
    const offset = encodeURIComponent(new Date(since).toISOString().replace("Z", "+00:00"));
    expect(ids((await get(`/v1/admin/audit?since=${offset}`)).body)).toEqual(recent);

    const tomorrow = new Date(NOW + 86_400_000).toISOString().slice(0, 10);
    expect(ids((await get(`/v1/admin/audit?since=${tomorrow}`)).body)).toEqual([]);
  });

  it("pages by (timestamp, id) without skipping or repeating rows that share a timestamp", async () => {
    const expected = ordered(LOGS.filter((l) => l.user === "dave"));
    expect(expected).toEqual(["t-9", "t-c", "t-b", "t-a", "t-0"]);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await get(`/v1/admin/audit?userId=dave&limit=2${cursor ? `&cursor=${cursor}` : ""}`);
      expect(res.status).toBe(200);
      seen.push(...ids(res.body));
      cursor = res.body.nextCursor;
      pages++;
    } while (cursor && pages < 10);
    expect(pages).toBe(3);
    expect(seen).toEqual(expected);

    // Across all users too, one row at a time.
    const all: string[] = [];
    cursor = null;
    do {
      const res = await get(`/v1/admin/audit?limit=1${cursor ? `&cursor=${cursor}` : ""}`);
      all.push(...ids(res.body));
      cursor = res.body.nextCursor;
    } while (cursor && all.length <= LOGS.length);
    expect(all).toEqual(ordered(LOGS));
  });

  it("refuses invalid queries with 400", async () => {
    for (const query of [
      "limit=0",
      "limit=201",
      "limit=ten",
      "since=yesterday",
      "since=2026-13-45",
      "cursor=garbage",
      `cursor=${btoa(JSON.stringify(["x", 1]))}`,
      "userId=bad%20id",
      "action=DROP%20TABLE",
      "user=alice",
    ]) {
      const res = await get(`/v1/admin/audit?${query}`);
      expect(res.status, query).toBe(400);
      expect(res.body.error.code).toBe("invalid_request");
      expect(Array.isArray(res.body.error.details)).toBe(true);
    }
  });
});
