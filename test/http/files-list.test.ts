import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { auditRows, callJson, tokenFor } from "../support/http";

// Storage is shared by every test of this file, so each test uses its own user ids.

interface RowOptions {
  id?: string;
  filename?: string;
  createdAt?: number;
  size?: number;
  mimeType?: string;
  checksum?: string | null;
  etag?: string | null;
  metadata?: string | null;
  status?: "active" | "deleted";
}

/** A `files` row as a completed upload leaves it (listing and metadata never touch R2). */
function fileRow(userId: string, o: RowOptions = {}) {
  const id = o.id ?? crypto.randomUUID();
  const createdAt = o.createdAt ?? Date.now();
  return env.DB.prepare(
    `INSERT INTO files (id, user_id, upload_id, filename, r2_key, mime_type, file_size, checksum, etag, metadata,
                        status, deleted_at, created_at, updated_at, version)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, 1)`,
  ).bind(
    id,
    userId,
    crypto.randomUUID(),
    o.filename ?? `file-${id.slice(0, 8)}.bin`,
    `u/${userId}/${id}`,
    o.mimeType ?? "application/octet-stream",
    o.size ?? 10,
    o.checksum ?? null,
    o.etag === undefined ? "0123456789abcdef0123456789abcdef" : o.etag,
    o.metadata ?? null,
    o.status ?? "active",
    createdAt,
    createdAt,
  );
}

async function seed(userId: string, rows: RowOptions[]): Promise<string[]> {
  const ids = rows.map((r) => r.id ?? crypto.randomUUID());
  await env.DB.batch(rows.map((r, i) => fileRow(userId, { ...r, id: ids[i] })));
  return ids;
}

/** Follows nextCursor to the end; returns every page's ids. */
async function allPages(token: string, query: string): Promise<string[][]> {
  const pages: string[][] = [];
  let cursor: string | null = null;
  do {
    const res: { status: number; body: any } = await callJson(
      `/v1/files?${query}${cursor ? `&cursor=${cursor}` : ""}`,
      { token },
    );
    expect(res.status).toBe(200);
    pages.push(res.body.files.map((f: any) => f.id));
    cursor = res.body.nextCursor;
  } while (cursor);
  return pages;
}

describe("GET /v1/files", () => {
  it("lists the caller's live files newest first, in the public shape", async () => {
    const user = "list-shape";
    const t = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
    const sha = "a".repeat(64);
    const [older, newer] = await seed(user, [
      { filename: "old.txt", createdAt: t, size: 5, mimeType: "text/plain" },
      {
        filename: "new.pdf",
        createdAt: t + 1000,
        size: 7,
        mimeType: "application/pdf",
        checksum: sha,
        metadata: '{"album":"trip"}',
      },
      { filename: "gone.txt", createdAt: t + 2000, status: "deleted" },
    ]);
    await seed("list-shape-other", [{ filename: "theirs.txt", createdAt: t + 3000 }]);

    const res = await callJson("/v1/files", { token: await tokenFor(user) });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      files: [
        {
          id: newer,
          filename: "new.pdf",
          size: 7,
          contentType: "application/pdf",
          sha256: sha,
          etag: "0123456789abcdef0123456789abcdef",
          createdAt: "2026-01-02T03:04:06.678Z",
          metadata: { album: "trip" },
        },
        {
          id: older,
          filename: "old.txt",
          size: 5,
          contentType: "text/plain",
          etag: "0123456789abcdef0123456789abcdef",
          createdAt: "2026-01-02T03:04:05.678Z",
          metadata: {},
        },
      ],
      nextCursor: null,
    });
    expect("sha256" in res.body.files[1]).toBe(false);
  });

  it("answers an empty list for a user with no files", async () => {
    const res = await callJson("/v1/files", { token: await tokenFor("list-nobody") });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ files: [], nextCursor: null });
  });

  it("pages with a keyset cursor, breaking created_at ties by id", async () => {
    const user = "list-pages";
    const t = Date.UTC(2026, 1, 1);
    // Seven files, three of them created in the same millisecond.
    const ids = await seed(user, [
      { createdAt: t },
      { createdAt: t + 1 },
      { createdAt: t + 2, id: "tie-a" },
      { createdAt: t + 2, id: "tie-c" },
      { createdAt: t + 2, id: "tie-b" },
      { createdAt: t + 3 },
      { createdAt: t + 4 },
    ]);
    const expected = [ids[6], ids[5], "tie-c", "tie-b", "tie-a", ids[1], ids[0]];
    const pages = await allPages(await tokenFor(user), "limit=2");
    expect(pages).toEqual([expected.slice(0, 2), expected.slice(2, 4), expected.slice(4, 6), expected.slice(6)]);
  });

  it("stays stable when files are inserted between pages", async () => {
    const user = "list-stable";
    const token = await tokenFor(user);
    const t = Date.now() - 60_000;
    const ids = await seed(
      user,
      [0, 1, 2, 3, 4, 5].map((i) => ({ createdAt: t + i * 10 })),
    );
    const newestFirst = [...ids].reverse();

    const first = await callJson("/v1/files?limit=2", { token });
    expect(first.body.files.map((f: any) => f.id)).toEqual(newestFirst.slice(0, 2));

    // New uploads complete while the client pages: newer ones (the usual case) and one that lands in the
    // part of the list the client has already seen.
    const [fresh1, fresh2] = await seed(user, [{ createdAt: Date.now() }, { createdAt: Date.now() + 1 }]);
    const [seenSlot] = await seed(user, [{ createdAt: t + 45 }]);

    const second = await callJson(`/v1/files?limit=2&cursor=${first.body.nextCursor}`, { token });
    expect(second.body.files.map((f: any) => f.id)).toEqual(newestFirst.slice(2, 4));
    const third = await callJson(`/v1/files?limit=2&cursor=${second.body.nextCursor}`, { token });
    expect(third.body.files.map((f: any) => f.id)).toEqual(newestFirst.slice(4, 6));
    expect(third.body.nextCursor).toBeNull();

    // A fresh listing sees everything, newest first.
    const fresh = await callJson("/v1/files?limit=1000", { token });
    expect(fresh.body.files.map((f: any) => f.id)).toEqual([
      fresh2,
      fresh1,
      newestFirst[0],
      seenSlot,
      ...newestFirst.slice(1),
    ]);
  });

  it("defaults to 100 per page and accepts up to 1000", async () => {
    const user = "list-limit";
    const t = Date.UTC(2026, 2, 1);
    await seed(
      user,
      Array.from({ length: 101 }, (_, i) => ({ createdAt: t + i })),
    );
    const token = await tokenFor(user);
    const byDefault = await callJson("/v1/files", { token });
    expect(byDefault.body.files).toHaveLength(100);
    expect(typeof byDefault.body.nextCursor).toBe("string");
    const emptyParams = await callJson("/v1/files?limit=&cursor=&prefix=", { token });
    expect(emptyParams.body.files).toHaveLength(100);
    const max = await callJson("/v1/files?limit=1000", { token });
    expect(max.body.files).toHaveLength(101);
    expect(max.body.nextCursor).toBeNull();
    const rest = await callJson(`/v1/files?cursor=${byDefault.body.nextCursor}`, { token });
    expect(rest.body.files).toHaveLength(1);
    expect(rest.body.files[0].createdAt).toBe(new Date(t).toISOString());
  });

  it.each(["0", "1001", "-1", "abc", "1.5", "1e2", " 5"])(
    "refuses limit=%j with 400 invalid_request",
    async (limit) => {
      const res = await callJson(`/v1/files?limit=${encodeURIComponent(limit)}`, {
        token: await tokenFor("list-bad-limit"),
      });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe("invalid_request");
      expect(res.body.error.details[0].path).toBe("limit");
    },
  );

  it("refuses a cursor it did not make", async () => {
    const token = await tokenFor("list-bad-cursor");
    const notJson = btoa("hello").replace(/=+$/, "");
    const wrongShape = btoa(JSON.stringify(["files", -1, "x"])).replace(/=+$/, "");
    const auditCursor = btoa(JSON.stringify(["audit", 1, "x"])).replace(/=+$/, "");
    for (const cursor of ["!!!", "%%", notJson, wrongShape, auditCursor, "a".repeat(2000)]) {
      const res = await callJson(`/v1/files?cursor=${encodeURIComponent(cursor)}`, { token });
      expect(res.status, cursor).toBe(400);
      expect(res.body.error.code).toBe("invalid_request");
      expect(res.body.error.details[0].path).toBe("cursor");
    }
  });

  it("filters by filename prefix literally and case-sensitively", async () => {
    const user = "list-prefix";
    const t = Date.UTC(2026, 3, 1);
    const names = [
      "report_2024.pdf",
      "report-2024.pdf",
      "reportX2024.pdf",
      "Report.pdf",
      "100%.txt",
      "100x.txt",
      "a\\b.txt",
      "ab.txt",
      "photos/2024/a.jpg",
      "photos/2025/b.jpg",
    ];
    await seed(
      user,
      names.map((filename, i) => ({ filename, createdAt: t + i })),
    );
    const token = await tokenFor(user);
    const list = async (prefix: string) => {
      const res = await callJson(`/v1/files?prefix=${encodeURIComponent(prefix)}`, { token });
      expect(res.status).toBe(200);
      return res.body.files.map((f: any) => f.filename);
    };
    expect(await list("report_")).toEqual(["report_2024.pdf"]);
    expect(await list("report")).toEqual(["reportX2024.pdf", "report-2024.pdf", "report_2024.pdf"]);
    expect(await list("Report")).toEqual(["Report.pdf"]);
    expect(await list("100%")).toEqual(["100%.txt"]);
    expect(await list("a\\")).toEqual(["a\\b.txt"]);
    expect(await list("photos/2024/")).toEqual(["photos/2024/a.jpg"]);
    expect(await list("%")).toEqual([]);
    expect(await list("_")).toEqual([]);
    expect(await list("nothing")).toEqual([]);

    const pages = await allPages(token, `prefix=${encodeURIComponent("photos/")}&limit=1`);
    expect(pages).toHaveLength(2);
    expect(pages.flat()).toHaveLength(2);

    const tooLong = await callJson(`/v1/files?prefix=${"p".repeat(1025)}`, { token });
    expect(tooLong.status).toBe(400);
    expect(tooLong.body.error.details[0].path).toBe("prefix");
  });

  it("needs a bearer token", async () => {
    const res = await callJson("/v1/files");
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe("unauthorized");
  });
});

describe("GET /v1/files/:id", () => {
  it("returns one file and audits the read", async () => {
    const user = "meta-read";
    const [id] = await seed(user, [
      {
        filename: "notes.md",
        createdAt: Date.UTC(2026, 4, 5, 6, 7, 8),
        size: 12345,
        mimeType: "text/markdown",
        checksum: "b".repeat(64),
        metadata: '{"a":"1","b":"two"}',
        etag: "e-3",
      },
    ]);
    const res = await callJson(`/v1/files/${id}`, {
      token: await tokenFor(user),
      headers: { "User-Agent": "meta-test" },
    });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      id,
      filename: "notes.md",
      size: 12345,
      contentType: "text/markdown",
      sha256: "b".repeat(64),
      etag: "e-3",
      createdAt: "2026-05-05T06:07:08.000Z",
      metadata: { a: "1", b: "two" },
    });
    const rows = await auditRows(user, "action = 'file.read' AND file_id = ?", id);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ success: 1, error_code: null, user_agent: "meta-test" });
  });

  it("answers another user's file exactly like an unknown id, and audits the denial", async () => {
    const [id] = await seed("meta-owner", [{}]);
    const token = await tokenFor("meta-intruder");
    const foreign = await callJson(`/v1/files/${id}`, { token });
    const unknown = await callJson(`/v1/files/${crypto.randomUUID()}`, { token });
    expect(foreign.status).toBe(404);
    expect(foreign.body).toEqual({ error: { code: "not_found", message: "File not found" } });
    expect(unknown).toMatchObject({ status: 404, body: foreign.body });

    const denied = await auditRows("meta-intruder", "file_id = ?", id);
    expect(denied).toHaveLength(1);
    expect(denied[0]).toMatchObject({ action: "file.read", success: 0, error_code: "not_found" });
    const ownerRows = await env.DB.prepare(
      "SELECT COUNT(*) AS n FROM file_access_logs WHERE user_id = 'meta-owner'",
    ).first<{ n: number }>();
    expect(ownerRows?.n).toBe(0);
  });

  it("answers 404 for a deleted file and 400 for a malformed id", async () => {
    const user = "meta-deleted";
    const [id] = await seed(user, [{ status: "deleted" }]);
    const token = await tokenFor(user);
    const deleted = await callJson(`/v1/files/${id}`, { token });
    expect(deleted.status).toBe(404);
    expect(deleted.body.error.code).toBe("not_found");
    const malformed = await callJson(`/v1/files/${encodeURIComponent("x".repeat(129))}`, { token });
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.code).toBe("invalid_request");
  });

  it("shows unreadable stored metadata as an empty map instead of failing", async () => {
    const user = "meta-corrupt";
    const [a, b] = await seed(user, [{ metadata: "{not json" }, { metadata: '{"n":1}' }]);
    const token = await tokenFor(user);
    expect((await callJson(`/v1/files/${a}`, { token })).body.metadata).toEqual({});
    expect((await callJson(`/v1/files/${b}`, { token })).body.metadata).toEqual({});
  });
});
