import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { callJson, tokenFor } from "../support/http";

// Storage is shared by every test of this file, so each test uses its own user ids.

interface EventOptions {
  id?: string;
  action?: string;
  success?: boolean;
  timestamp: number;
  fileId?: string | null;
  metadata?: string | null;
}

function auditRow(userId: string, o: EventOptions) {
  return env.DB.prepare(
    `INSERT INTO file_access_logs (id, file_id, upload_id, user_id, action, success, error_code, error_message,
                                   bytes_transferred, duration_ms, ip_address, user_agent, metadata, timestamp)
     VALUES (?, ?, NULL, ?, ?, ?, ?, NULL, 0, 5, NULL, NULL, ?, ?)`,
  ).bind(
    o.id ?? crypto.randomUUID(),
    o.fileId ?? null,
    userId,
    o.action ?? "file.read",
    o.success === false ? 0 : 1,
    o.success === false ? "not_found" : null,
    o.metadata ?? null,
    o.timestamp,
  );
}

async function seedEvents(userId: string, events: EventOptions[]): Promise<string[]> {
  const ids = events.map((e) => e.id ?? crypto.randomUUID());
  await env.DB.batch(events.map((e, i) => auditRow(userId, { ...e, id: ids[i] })));
  return ids;
}

describe("GET /v1/audit", () => {
  it("lists the caller's own events newest first, in the public shape", async () => {
    const user = "audit-shape";
    const t = Date.UTC(2026, 5, 1, 12, 0, 0, 250);
    await env.DB.prepare(
      `INSERT INTO file_access_logs (id, file_id, upload_id, user_id, action, success, error_code, error_message,
                                     bytes_transferred, duration_ms, ip_address, user_agent, metadata, timestamp)
       VALUES ('ev-2', 'file-1', NULL, ?, 'file.download', 1, NULL, NULL, 4096, 12, '192.0.2.1', 'curl/8',
               '{"status":206}', ?),
              ('ev-1', NULL, 'up-1', ?, 'upload.create', 0, 'quota_exceeded', 'too big', 0, NULL, NULL, NULL, NULL, ?)`,
    )
      .bind(user, t + 1000, user, t)
      .run();
    await seedEvents("audit-shape-other", [{ timestamp: t + 5000 }]);

    const res = await callJson("/v1/audit", { token: await tokenFor(user) });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      events: [
        {
          id: "ev-2",
          action: "file.download",
          success: true,
          fileId: "file-1",
          uploadId: null,
          errorCode: null,
          bytesTransferred: 4096,
          durationMs: 12,
          ipAddress: "192.0.2.1",
          userAgent: "curl/8",
          metadata: { status: 206 },
          timestamp: "2026-06-01T12:00:01.250Z",
        },
        {
          id: "ev-1",
          action: "upload.create",
          success: false,
          fileId: null,
          uploadId: "up-1",
          errorCode: "quota_exceeded",
          bytesTransferred: 0,
          durationMs: null,
          ipAddress: null,
          userAgent: null,
          metadata: null,
          timestamp: "2026-06-01T12:00:00.250Z",
        },
      ],
      nextCursor: null,
    });
  });

  it("pages over (timestamp, id), stable when events are added meanwhile", async () => {
    const user = "audit-pages";
    const token = await tokenFor(user);
    const t = Date.UTC(2026, 6, 1);
    await seedEvents(user, [
      { id: "a", timestamp: t },
      { id: "b", timestamp: t + 1 },
      { id: "c1", timestamp: t + 1 },
      { id: "c2", timestamp: t + 1 },
      { id: "d", timestamp: t + 2 },
    ]);
    const first = await callJson("/v1/audit?limit=2", { token });
    expect(first.body.events.map((e: any) => e.id)).toEqual(["d", "c2"]);

    // New events arrive: a newer one (never shows on later pages) and one tied with the cursor's timestamp
    // whose id sorts after the cursor (shows exactly once, where it belongs).
    await seedEvents(user, [
      { id: "z", timestamp: t + 10 },
      { id: "c0", timestamp: t + 1 },
    ]);

    const ids: string[] = [];
    let cursor: string | null = first.body.nextCursor;
    while (cursor) {
      const page: any = await callJson(`/v1/audit?limit=2&cursor=${cursor}`, { token });
      expect(page.status).toBe(200);
      ids.push(...page.body.events.map((e: any) => e.id));
      cursor = page.body.nextCursor;
    }
    expect(ids).toEqual(["c1", "c0", "b", "a"]);
  });

  it("filters by exact action", async () => {
    const user = "audit-filter";
    const t = Date.UTC(2026, 7, 1);
    await seedEvents(user, [
      { id: "r1", action: "file.read", timestamp: t },
      { id: "d1", action: "file.download", timestamp: t + 1 },
      { id: "r2", action: "file.read", timestamp: t + 2 },
      { id: "l1", action: "file.link_download", timestamp: t + 3 },
    ]);
    const token = await tokenFor(user);
    const reads = await callJson("/v1/audit?action=file.read", { token });
    expect(reads.body.events.map((e: any) => e.id)).toEqual(["r2", "r1"]);
    const page1 = await callJson("/v1/audit?action=file.read&limit=1", { token });
    expect(page1.body.events.map((e: any) => e.id)).toEqual(["r2"]);
    const page2 = await callJson(`/v1/audit?action=file.read&limit=1&cursor=${page1.body.nextCursor}`, { token });
    expect(page2.body.events.map((e: any) => e.id)).toEqual(["r1"]);
    expect(page2.body.nextCursor).toBeNull();
    const none = await callJson("/v1/audit?action=file.delete", { token });
    expect(none.body).toEqual({ events: [], nextCursor: null });
  });

  it.each(["file.*", "FILE.READ", "file.read ", "delete", "file"])(
    "refuses action=%j with 400 invalid_request",
    async (action) => {
      const res = await callJson(`/v1/audit?action=${encodeURIComponent(action)}`, {
        token: await tokenFor("audit-bad-action"),
      });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe("invalid_request");
      expect(res.body.error.details[0].path).toBe("action");
      expect(res.body.error.details[0].message).toContain("file.link_download");
    },
  );

  it("refuses bad limits and cursors, including a files cursor", async () => {
    const user = "audit-bad-input";
    const token = await tokenFor(user);
    await seedEvents(user, [{ timestamp: 1 }, { timestamp: 2 }]);
    for (const limit of ["0", "1001", "x"]) {
      const res = await callJson(`/v1/audit?limit=${limit}`, { token });
      expect(res.status, limit).toBe(400);
      expect(res.body.error.details[0].path).toBe("limit");
    }
    const filesCursor = btoa(JSON.stringify(["files", 2, "x"])).replace(/=+$/, "");
    for (const cursor of ["@@", filesCursor]) {
      const res = await callJson(`/v1/audit?cursor=${encodeURIComponent(cursor)}`, { token });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe("invalid_request");
    }
  });

  it("records the caller's own file activity, readable here", async () => {
    const user = "audit-live";
    const token = await tokenFor(user);
    const missing = crypto.randomUUID();
    expect((await callJson(`/v1/files/${missing}`, { token, headers: { "User-Agent": "live-test" } })).status).toBe(
      404,
    );
    let events: any[] = [];
    for (let i = 0; i < 60 && events.length === 0; i++) {
      events = (await callJson("/v1/audit?action=file.read", { token })).body.events;
      if (events.length === 0) await new Promise((r) => setTimeout(r, 50));
    }
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      action: "file.read",
      success: false,
      fileId: missing,
      errorCode: "not_found",
      userAgent: "live-test",
    });
    expect(Date.parse(events[0].timestamp)).toBeGreaterThan(Date.now() - 60_000);
  });

  it("needs a bearer token", async () => {
    const res = await callJson("/v1/audit");
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe("unauthorized");
  });
});
