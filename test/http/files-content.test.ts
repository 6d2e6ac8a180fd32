import { env } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { auditRows, call, callJson, randomBytes, type SeededFile, seedFile, tokenFor } from "../support/http";

// Storage is shared by every test of this file, so each test uses its own user ids.

async function bytesOf(res: Response): Promise<Uint8Array> {
  return new Uint8Array(await res.arrayBuffer());
}

describe("GET /v1/files/:id/content", () => {
  it("streams the whole file with every representation header", async () => {
    const user = "content-full";
    const file = await seedFile(user, { filename: "report.pdf", mimeType: "application/pdf" });
    const res = await call(`/v1/files/${file.id}/content`, { token: await tokenFor(user) });
    expect(res.status).toBe(200);
    expect(await bytesOf(res)).toEqual(file.bytes);
    expect(res.headers.get("ETag")).toBe(`"${file.etag}"`);
    expect(res.headers.get("Last-Modified")).toBe(file.lastModified);
    expect(res.headers.get("Content-Length")).toBe("1000");
    expect(res.headers.get("Content-Type")).toBe("application/pdf");
    expect(res.headers.get("Accept-Ranges")).toBe("bytes");
    expect(res.headers.get("Content-Disposition")).toBe('attachment; filename="report.pdf"');
    expect(res.headers.get("Cache-Control")).toBe("private");
    expect(res.headers.get("X-Content-Type-Options")).toBe("nosniff");
    expect(res.headers.get("Content-Range")).toBeNull();
  });

  it("streams a multi-megabyte object intact, whole and by range", async () => {
    const user = "content-large";
    const body = randomBytes(3 * 1024 * 1024 + 17);
    const file = await seedFile(user, { body });
    const token = await tokenFor(user);
    const whole = await call(`/v1/files/${file.id}/content`, { token });
    expect(whole.status).toBe(200);
    const got = await bytesOf(whole);
    expect(got.byteLength).toBe(body.byteLength);
    const digest = async (b: Uint8Array) => new Uint8Array(await crypto.subtle.digest("SHA-256", b));
    expect(await digest(got)).toEqual(await digest(body));

    const start = 2 * 1024 * 1024 - 5;
    const part = await call(`/v1/files/${file.id}/content`, {
      token,
      headers: { Range: `bytes=${start}-${start + 99_999}` },
    });
    expect(part.status).toBe(206);
    expect(part.headers.get("Content-Range")).toBe(`bytes ${start}-${start + 99_999}/${body.byteLength}`);
    expect(await bytesOf(part)).toEqual(body.slice(start, start + 100_000));
  });

  it("answers HEAD with the headers of GET and no body", async () => {
    const user = "content-head";
    const file = await seedFile(user);
    const res = await call(`/v1/files/${file.id}/content`, { method: "HEAD", token: await tokenFor(user) });
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Length")).toBe("1000");
    expect(res.headers.get("ETag")).toBe(`"${file.etag}"`);
    expect(res.headers.get("Last-Modified")).toBe(file.lastModified);
    expect(res.headers.get("Accept-Ranges")).toBe("bytes");
    expect((await bytesOf(res)).byteLength).toBe(0);
  });

  describe("Range matrix (RFC 9110 §14) on a 1000-byte file", () => {
    const user = "content-range";
    let file: SeededFile;
    let token: string;
    beforeAll(async () => {
      file = await seedFile(user);
      token = await tokenFor(user);
    });

    const cases: { range: string; start: number; end: number; why: string }[] = [
      { range: "bytes=0-0", start: 0, end: 0, why: "first byte" },
      { range: "bytes=999-999", start: 999, end: 999, why: "last byte" },
      { range: "bytes=-1", start: 999, end: 999, why: "suffix of one byte" },
      { range: "bytes=-100", start: 900, end: 999, why: "suffix" },
      { range: "bytes=-5000", start: 0, end: 999, why: "suffix longer than the file = whole file" },
      { range: "bytes=500-", start: 500, end: 999, why: "open-ended" },
      { range: "bytes=0-", start: 0, end: 999, why: "whole file as a range" },
      { range: "bytes=0-999", start: 0, end: 999, why: "whole file, explicit" },
      { range: "bytes=990-5000", start: 990, end: 999, why: "last-pos beyond the end is clamped" },
      { range: "bytes=10-19", start: 10, end: 19, why: "middle" },
      { range: "BYTES=3-4", start: 3, end: 4, why: "unit is case-insensitive" },
      { range: "bytes= 3-4 ,", start: 3, end: 4, why: "whitespace and an empty list element are allowed" },
    ];

    it.each(cases)("$range → 206 ($why)", async ({ range, start, end }) => {
      const res = await call(`/v1/files/${file.id}/content`, { token, headers: { Range: range } });
      expect(res.status).toBe(206);
      expect(res.headers.get("Content-Range")).toBe(`bytes ${start}-${end}/1000`);
      expect(res.headers.get("Content-Length")).toBe(String(end - start + 1));
      expect(res.headers.get("ETag")).toBe(`"${file.etag}"`);
      expect(res.headers.get("Accept-Ranges")).toBe("bytes");
      expect(await bytesOf(res)).toEqual(file.bytes.slice(start, end + 1));
    });

    it.each(["bytes=1000-", "bytes=1000-1000", "bytes=5000-6000", "bytes=-0"])(
      "%s → 416 with bytes */1000",
      async (range) => {
        const res = await call(`/v1/files/${file.id}/content`, { token, headers: { Range: range } });
        expect(res.status).toBe(416);
        expect(res.headers.get("Content-Range")).toBe("bytes */1000");
        const body = (await res.json()) as any;
        expect(body.error.code).toBe("range_not_satisfiable");
        expect(body.error.details).toEqual({ size: 1000 });
      },
    );

    it.each([
      "bytes=abc",
      "bytes=5-1",
      "bytes 0-1",
      "bytes=",
      "bytes=--1",
      "bytes=1-2-3",
      "bytes=0x10-20",
      "bytes=+1-2",
      "items=0-1",
      "bytes=0-1,5-9",
      "bytes=0-1, 2000-3000",
      "",
    ])("%j (malformed, multi-range or unknown unit) → 200 with the whole file", async (range) => {
      const res = await call(`/v1/files/${file.id}/content`, { token, headers: { Range: range } });
      expect(res.status).toBe(200);
      expect(res.headers.get("Content-Range")).toBeNull();
      expect(res.headers.get("Content-Length")).toBe("1000");
      expect(await bytesOf(res)).toEqual(file.bytes);
    });

    it("ignores Range on HEAD (RFC 9110 §14.2: GET is the only method with range handling)", async () => {
      const res = await call(`/v1/files/${file.id}/content`, {
        method: "HEAD",
        token,
        headers: { Range: "bytes=0-9" },
      });
      expect(res.status).toBe(200);
      expect(res.headers.get("Content-Length")).toBe("1000");
      expect(res.headers.get("Content-Range")).toBeNull();
    });
  });

  describe("conditional matrix (RFC 9110 §13)", () => {
    const user = "content-cond";
    let file: SeededFile;
    let token: string;
    beforeAll(async () => {
      file = await seedFile(user);
      token = await tokenFor(user);
    });
    const hourBefore = (date: string) => new Date(Date.parse(date) - 3_600_000).toUTCString();
    const hourAfter = (date: string) => new Date(Date.parse(date) + 3_600_000).toUTCString();

    type Case = {
      why: string;
      headers: (f: SeededFile) => Record<string, string>;
      method?: string;
      status: number;
      body?: "whole" | "range";
    };
    const cases: Case[] = [
      // If-None-Match (weak comparison) → 304
      { why: "If-None-Match with the current tag", headers: (f) => ({ "If-None-Match": `"${f.etag}"` }), status: 304 },
      {
        why: "If-None-Match with the tag marked weak",
        headers: (f) => ({ "If-None-Match": `W/"${f.etag}"` }),
        status: 304,
      },
      {
        why: "If-None-Match list containing the tag",
        headers: (f) => ({ "If-None-Match": `"nope", "${f.etag}"` }),
        status: 304,
      },
      { why: "If-None-Match: *", headers: () => ({ "If-None-Match": "*" }), status: 304 },
      {
        why: "If-None-Match on HEAD",
        headers: (f) => ({ "If-None-Match": `"${f.etag}"` }),
        method: "HEAD",
        status: 304,
      },
      {
        why: "If-None-Match with another tag",
        headers: () => ({ "If-None-Match": '"other"' }),
        status: 200,
        body: "whole",
      },
      // If-Modified-Since → 304
      {
        why: "If-Modified-Since = Last-Modified",
        headers: (f) => ({ "If-Modified-Since": f.lastModified }),
        status: 304,
      },
      {
        why: "If-Modified-Since later than Last-Modified",
        headers: (f) => ({ "If-Modified-Since": hourAfter(f.lastModified) }),
        status: 304,
      },
      {
        why: "If-Modified-Since earlier",
        headers: (f) => ({ "If-Modified-Since": hourBefore(f.lastModified) }),
        status: 200,
        body: "whole",
      },
      {
        why: "If-Modified-Since that is not an HTTP-date is ignored",
        headers: () => ({ "If-Modified-Since": "yesterday" }),
        status: 200,
        body: "whole",
      },
      {
        why: "If-Modified-Since on HEAD",
        headers: (f) => ({ "If-Modified-Since": f.lastModified }),
        method: "HEAD",
        status: 304,
      },
      // If-Match (strong comparison) → 412
      {
        why: "If-Match with the current tag",
        headers: (f) => ({ "If-Match": `"${f.etag}"` }),
        status: 200,
        body: "whole",
      },
      { why: "If-Match: *", headers: () => ({ "If-Match": "*" }), status: 200, body: "whole" },
      { why: "If-Match with another tag", headers: () => ({ "If-Match": '"other"' }), status: 412 },
      {
        why: "If-Match with the tag marked weak (strong comparison)",
        headers: (f) => ({ "If-Match": `W/"${f.etag}"` }),
        status: 412,
      },
      { why: "If-Match that is not an entity-tag", headers: (f) => ({ "If-Match": f.etag }), status: 412 },
      // If-Unmodified-Since → 412
      {
        why: "If-Unmodified-Since = Last-Modified",
        headers: (f) => ({ "If-Unmodified-Since": f.lastModified }),
        status: 200,
        body: "whole",
      },
      {
        why: "If-Unmodified-Since earlier",
        headers: (f) => ({ "If-Unmodified-Since": hourBefore(f.lastModified) }),
        status: 412,
      },
      {
        why: "If-Unmodified-Since that is not an HTTP-date is ignored",
        headers: () => ({ "If-Unmodified-Since": "soon" }),
        status: 200,
        body: "whole",
      },
      // Precedence (§13.2.2)
      {
        why: "failing If-Match beats a matching If-None-Match",
        headers: (f) => ({ "If-Match": '"other"', "If-None-Match": `"${f.etag}"` }),
        status: 412,
      },
      {
        why: "If-Unmodified-Since is ignored when If-Match is present",
        headers: (f) => ({ "If-Match": `"${f.etag}"`, "If-Unmodified-Since": hourBefore(f.lastModified) }),
        status: 200,
        body: "whole",
      },
      {
        why: "If-Modified-Since is ignored when If-None-Match is present",
        headers: (f) => ({ "If-None-Match": '"other"', "If-Modified-Since": f.lastModified }),
        status: 200,
        body: "whole",
      },
      { why: "304 beats Range", headers: (f) => ({ "If-None-Match": `"${f.etag}"`, Range: "bytes=0-9" }), status: 304 },
      {
        why: "412 beats an unsatisfiable Range",
        headers: (f) => ({ "If-Unmodified-Since": hourBefore(f.lastModified), Range: "bytes=5000-" }),
        status: 412,
      },
      {
        why: "passing If-Match then Range → 206",
        headers: (f) => ({ "If-Match": `"${f.etag}"`, Range: "bytes=0-9" }),
        status: 206,
        body: "range",
      },
      // If-Range (§13.1.5)
      {
        why: "If-Range with the current tag",
        headers: (f) => ({ "If-Range": `"${f.etag}"`, Range: "bytes=0-9" }),
        status: 206,
        body: "range",
      },
      {
        why: "If-Range with another tag",
        headers: () => ({ "If-Range": '"other"', Range: "bytes=0-9" }),
        status: 200,
        body: "whole",
      },
      {
        why: "If-Range with a weak tag",
        headers: (f) => ({ "If-Range": `W/"${f.etag}"`, Range: "bytes=0-9" }),
        status: 200,
        body: "whole",
      },
      {
        why: "If-Range with Last-Modified",
        headers: (f) => ({ "If-Range": f.lastModified, Range: "bytes=0-9" }),
        status: 206,
        body: "range",
      },
      {
        why: "If-Range with an older date",
        headers: (f) => ({ "If-Range": hourBefore(f.lastModified), Range: "bytes=0-9" }),
        status: 200,
        body: "whole",
      },
      {
        why: "If-Range with a later date (not an exact match)",
        headers: (f) => ({ "If-Range": hourAfter(f.lastModified), Range: "bytes=0-9" }),
        status: 200,
        body: "whole",
      },
      {
        why: "failed If-Range ignores even an unsatisfiable Range",
        headers: () => ({ "If-Range": '"other"', Range: "bytes=5000-" }),
        status: 200,
        body: "whole",
      },
      {
        why: "If-Range without Range is ignored",
        headers: () => ({ "If-Range": '"other"' }),
        status: 200,
        body: "whole",
      },
    ];

    it.each(cases)("$why → $status", async ({ headers, method, status, body }) => {
      const res = await call(`/v1/files/${file.id}/content`, {
        token,
        method: method ?? "GET",
        headers: headers(file),
      });
      expect(res.status).toBe(status);
      if (status === 304) {
        expect(res.headers.get("ETag")).toBe(`"${file.etag}"`);
        expect(res.headers.get("Cache-Control")).toBe("private");
        expect((await bytesOf(res)).byteLength).toBe(0);
      } else if (status === 412) {
        const json = (await res.json()) as any;
        expect(json.error.code).toBe("precondition_failed");
        expect(res.headers.get("ETag")).toBe(`"${file.etag}"`);
      } else if (body === "whole") {
        expect(res.headers.get("Content-Range")).toBeNull();
        expect(await bytesOf(res)).toEqual(file.bytes);
      } else if (body === "range") {
        expect(res.headers.get("Content-Range")).toBe("bytes 0-9/1000");
        expect(await bytesOf(res)).toEqual(file.bytes.slice(0, 10));
      }
    });

    it("accepts the obsolete rfc850 and asctime date forms", async () => {
      const d = new Date(Date.parse(file.lastModified));
      const pad = (n: number) => String(n).padStart(2, "0");
      const longDay = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"][d.getUTCDay()];
      const [shortDay, , mon] = file.lastModified.split(" ");
      const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
      const rfc850 = `${longDay}, ${pad(d.getUTCDate())}-${mon}-${String(d.getUTCFullYear()).slice(2)} ${time} GMT`;
      const day = String(d.getUTCDate()).padStart(2, " ");
      const asctime = `${shortDay.replace(",", "")} ${mon} ${day} ${time} ${d.getUTCFullYear()}`;
      for (const date of [rfc850, asctime]) {
        const res = await call(`/v1/files/${file.id}/content`, { token, headers: { "If-Modified-Since": date } });
        expect(res.status, date).toBe(304);
      }
    });
  });

  describe("zero-byte file", () => {
    const user = "content-empty";

    it("serves an empty body and applies the zero-length range rules", async () => {
      const file = await seedFile(user, { body: new Uint8Array(0), filename: "empty.txt", mimeType: "text/plain" });
      const token = await tokenFor(user);
      const path = `/v1/files/${file.id}/content`;

      const whole = await call(path, { token });
      expect(whole.status).toBe(200);
      expect(whole.headers.get("Content-Length")).toBe("0");
      expect(whole.headers.get("ETag")).toBe(`"${file.etag}"`);
      expect((await bytesOf(whole)).byteLength).toBe(0);

      const head = await call(path, { token, method: "HEAD" });
      expect(head.status).toBe(200);
      expect(head.headers.get("Content-Length")).toBe("0");

      // §14.1.2: on a zero-length representation only a non-zero suffix-range is satisfiable...
      for (const range of ["bytes=0-", "bytes=0-0", "bytes=-0"]) {
        const res = await call(path, { token, headers: { Range: range } });
        expect(res.status, range).toBe(416);
        expect(res.headers.get("Content-Range")).toBe("bytes */0");
        expect(((await res.json()) as any).error.code).toBe("range_not_satisfiable");
      }
      // ...and it covers no bytes, which Content-Range cannot express: the whole (empty) file, 200.
      const suffix = await call(path, { token, headers: { Range: "bytes=-5" } });
      expect(suffix.status).toBe(200);
      expect(suffix.headers.get("Content-Length")).toBe("0");
      expect(suffix.headers.get("Content-Range")).toBeNull();
      expect((await bytesOf(suffix)).byteLength).toBe(0);

      const notModified = await call(path, { token, headers: { "If-None-Match": `"${file.etag}"` } });
      expect(notModified.status).toBe(304);
    });
  });

  describe("Content-Disposition", () => {
    const user = "content-disposition";

    it.each([
      { filename: "plain name.txt", expected: 'attachment; filename="plain name.txt"' },
      {
        filename: "naïve résumé.pdf",
        expected: `attachment; filename="na_ve r_sum_.pdf"; filename*=UTF-8''na%C3%AFve%20r%C3%A9sum%C3%A9.pdf`,
      },
      {
        filename: "日本語.txt",
        expected: `attachment; filename="___.txt"; filename*=UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E.txt`,
      },
      {
        filename: "100%25 done.txt",
        expected: `attachment; filename="100_25 done.txt"; filename*=UTF-8''100%2525%20done.txt`,
      },
      { filename: 'say "hi" \\ bye.txt', expected: 'attachment; filename="say hi  bye.txt"' },
      { filename: "it's (1).txt", expected: `attachment; filename="it's (1).txt"` },
      { filename: '"\r\n', expected: 'attachment; filename="download"' },
    ])("$filename", async ({ filename, expected }) => {
      const file = await seedFile(user, { filename });
      const res = await call(`/v1/files/${file.id}/content`, { method: "HEAD", token: await tokenFor(user) });
      expect(res.status).toBe(200);
      expect(res.headers.get("Content-Disposition")).toBe(expected);
    });

    it("cannot be used to inject headers", async () => {
      const file = await seedFile(user, { filename: "evil.txt\r\nSet-Cookie: session=stolen\r\n\r\n<script>" });
      const res = await call(`/v1/files/${file.id}/content`, { token: await tokenFor(user) });
      expect(res.status).toBe(200);
      expect(res.headers.get("Set-Cookie")).toBeNull();
      const disposition = res.headers.get("Content-Disposition")!;
      expect(disposition).not.toMatch(/[\r\n]/);
      expect(disposition).toBe('attachment; filename="evil.txtSet-Cookie: session=stolen<script>"');
    });

    it("serves an unusable stored content type as application/octet-stream", async () => {
      const file = await seedFile(user, { mimeType: "not a media type" });
      const res = await call(`/v1/files/${file.id}/content`, { method: "HEAD", token: await tokenFor(user) });
      expect(res.headers.get("Content-Type")).toBe("application/octet-stream");
    });
  });

  describe("who may read", () => {
    it("answers another user's file exactly like an unknown id, and audits the denial", async () => {
      const owner = "content-owner";
      const intruder = "content-intruder";
      const file = await seedFile(owner);
      const token = await tokenFor(intruder);
      const foreign = await callJson(`/v1/files/${file.id}/content`, { token });
      const unknown = await callJson(`/v1/files/${crypto.randomUUID()}/content`, { token });
      expect(foreign.status).toBe(404);
      expect(foreign.body).toEqual({ error: { code: "not_found", message: "File not found" } });
      expect(unknown.status).toBe(404);
      expect(unknown.body).toEqual(foreign.body);
      const head = await call(`/v1/files/${file.id}/content`, { token, method: "HEAD" });
      expect(head.status).toBe(404);

      const denied = await auditRows(intruder, "file_id = ? AND action = 'file.download'", file.id);
      expect(denied.length).toBeGreaterThanOrEqual(1);
      expect(denied[0]).toMatchObject({ success: 0, error_code: "not_found", file_id: file.id, bytes_transferred: 0 });
      const ownerRows = await env.DB.prepare("SELECT COUNT(*) AS n FROM file_access_logs WHERE user_id = ?")
        .bind(owner)
        .first<{ n: number }>();
      expect(ownerRows?.n).toBe(0);
    });

    it("answers 404 for a deleted file and for a file whose object is gone from R2", async () => {
      const user = "content-gone";
      const token = await tokenFor(user);
      const deleted = await seedFile(user, { status: "deleted" });
      const res1 = await callJson(`/v1/files/${deleted.id}/content`, { token });
      expect(res1.status).toBe(404);
      expect(res1.body.error.code).toBe("not_found");

      const orphan = await seedFile(user);
      await env.BUCKET.delete(orphan.key);
      const res2 = await callJson(`/v1/files/${orphan.id}/content`, { token });
      expect(res2.status).toBe(404);
      expect(res2.body.error.code).toBe("not_found");
    });

    it("needs a bearer token and a well-formed id", async () => {
      const user = "content-auth";
      const file = await seedFile(user);
      const anonymous = await callJson(`/v1/files/${file.id}/content`);
      expect(anonymous.status).toBe(401);
      expect(anonymous.body.error.code).toBe("unauthorized");
      const badId = await callJson(`/v1/files/${encodeURIComponent("no spaces!")}/content`, {
        token: await tokenFor(user),
      });
      expect(badId.status).toBe(400);
      expect(badId.body.error.code).toBe("invalid_request");
      expect(badId.body.error.details[0].path).toBe("id");
    });
  });

  it("audits each download with the bytes the response carries", async () => {
    const user = "content-audit";
    const file = await seedFile(user);
    const token = await tokenFor(user);
    const path = `/v1/files/${file.id}/content`;
    const ua = { "User-Agent": "audit-test/1.0", "CF-Connecting-IP": "203.0.113.7" };
    await (await call(path, { token, headers: ua })).arrayBuffer();
    await (await call(path, { token, headers: { ...ua, Range: "bytes=100-199" } })).arrayBuffer();
    await call(path, { token, method: "HEAD", headers: ua });
    await call(path, { token, headers: { ...ua, "If-None-Match": `"${file.etag}"` } });
    await call(path, { token, headers: { ...ua, Range: "bytes=5000-" } });

    let rows: any[] = [];
    for (let i = 0; i < 60 && rows.length < 5; i++) {
      rows = await auditRows(user, "file_id = ?", file.id);
      if (rows.length < 5) await new Promise((r) => setTimeout(r, 50));
    }
    const summary = rows
      .map((r) => ({
        success: r.success,
        bytes: r.bytes_transferred,
        error: r.error_code,
        meta: r.metadata ? JSON.parse(r.metadata) : null,
      }))
      .sort((a, b) => (a.meta?.status ?? 999) - (b.meta?.status ?? 999) || a.bytes - b.bytes);
    expect(summary).toEqual([
      { success: 1, bytes: 0, error: null, meta: { method: "HEAD", status: 200 } },
      { success: 1, bytes: 1000, error: null, meta: { method: "GET", status: 200 } },
      { success: 1, bytes: 100, error: null, meta: { method: "GET", status: 206, range: "bytes 100-199/1000" } },
      { success: 1, bytes: 0, error: null, meta: { method: "GET", status: 304 } },
      { success: 0, bytes: 0, error: "range_not_satisfiable", meta: null },
    ]);
    for (const r of rows) {
      expect(r.action).toBe("file.download");
      expect(r.user_agent).toBe("audit-test/1.0");
      expect(r.ip_address).toBe("203.0.113.7");
    }
  });
});
