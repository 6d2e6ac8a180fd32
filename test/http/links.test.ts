import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { buildLinkUrl, linkSigningKey } from "../../src/files/signed-links";
import { auditRows, call, callJson, randomBytes, seedFile, tokenFor } from "../support/http";

// Storage is shared by every test of this file, so each test uses its own user ids.

/** Creates a link through the API; returns its URL as a path+query for `call`, and the raw response. */
async function createLink(userId: string, fileId: string, expiresIn = 600) {
  const res = await callJson(`/v1/files/${fileId}/links`, {
    method: "POST",
    token: await tokenFor(userId),
    json: { expiresIn },
  });
  expect(res.status).toBe(201);
  const url = new URL(res.body.url);
  return { res, url, path: `${url.pathname}${url.search}` };
}

/** The same link with one query parameter changed. */
function withParam(url: URL, name: string, value: string): string {
  const copy = new URL(url);
  copy.searchParams.set(name, value);
  return `${copy.pathname}${copy.search}`;
}

const BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** Flips the lowest of the 6 bits the base64url character at `index` encodes. */
function flipBit(signature: string, index: number): string {
  const i = index < 0 ? signature.length + index : index;
  return signature.slice(0, i) + BASE64URL[BASE64URL.indexOf(signature[i]) ^ 1] + signature.slice(i + 1);
}

/** A 500-byte JPEG of the user's. */
const seedPhoto = (userId: string, filename = "photo.jpg") =>
  seedFile(userId, { body: randomBytes(500), filename, mimeType: "image/jpeg" });

describe("POST /v1/files/:id/links", () => {
  it("creates an absolute, signed GET link and audits it", async () => {
    const user = "link-create";
    const file = await seedPhoto(user);
    const before = Math.floor(Date.now() / 1000);
    const { res, url } = await createLink(user, file.id, 3600);
    expect(Object.keys(res.body).sort()).toEqual(["expiresAt", "url"]);
    expect(url.origin).toBe("https://uploads.test");
    expect(url.pathname).toBe(`/v1/links/${file.id}`);
    expect(url.searchParams.get("owner")).toBe(user);
    const expires = Number(url.searchParams.get("expires"));
    expect(expires).toBeGreaterThanOrEqual(before + 3600);
    expect(expires).toBeLessThanOrEqual(before + 3601);
    expect(res.body.expiresAt).toBe(new Date(expires * 1000).toISOString());
    expect(url.searchParams.get("signature")).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const rows = await auditRows(user, "action = 'file.link' AND file_id = ?", file.id);
    expect(rows).toHaveLength(1);
    expect(rows[0].success).toBe(1);
    expect(JSON.parse(rows[0].metadata)).toEqual({ expiresAt: res.body.expiresAt });
  });

  it.each([
    { body: { expiresIn: 0 }, why: "zero" },
    { body: { expiresIn: 604_801 }, why: "over 7 days" },
    { body: { expiresIn: 1.5 }, why: "fractional" },
    { body: { expiresIn: "60" }, why: "a string" },
    { body: { expiresIn: -5 }, why: "negative" },
    { body: {}, why: "missing" },
    { body: { expiresIn: 60, method: "PUT" }, why: "an unknown field" },
    { body: [60], why: "not an object" },
  ])("refuses expiresIn $why with 400 invalid_request", async ({ body }) => {
    const user = "link-bad-ttl";
    const file = await seedPhoto(user);
    const res = await callJson(`/v1/files/${file.id}/links`, {
      method: "POST",
      token: await tokenFor(user),
      json: body,
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("invalid_request");
    expect(Array.isArray(res.body.error.details)).toBe(true);
  });

  it("refuses a body that is not JSON, and accepts the 7-day maximum", async () => {
    const user = "link-body";
    const file = await seedPhoto(user);
    const token = await tokenFor(user);
    // A form body is refused for its media type before a byte is read; JSON that does not parse is a 400.
    const form = await callJson(`/v1/files/${file.id}/links`, { method: "POST", token, body: "expiresIn=60" });
    expect(form.status).toBe(415);
    expect(form.body.error.code).toBe("unsupported_media_type");
    const garbage = await callJson(`/v1/files/${file.id}/links`, {
      method: "POST",
      token,
      headers: { "Content-Type": "application/json" },
      body: "expiresIn=60",
    });
    expect(garbage.status).toBe(400);
    expect(garbage.body.error.code).toBe("invalid_request");
    const max = await callJson(`/v1/files/${file.id}/links`, { method: "POST", token, json: { expiresIn: 604_800 } });
    expect(max.status).toBe(201);
  });

  it("answers another user's file like an unknown one, and audits the denial", async () => {
    const file = await seedPhoto("link-owner");
    const token = await tokenFor("link-intruder");
    const foreign = await callJson(`/v1/files/${file.id}/links`, { method: "POST", token, json: { expiresIn: 60 } });
    const unknown = await callJson(`/v1/files/${crypto.randomUUID()}/links`, {
      method: "POST",
      token,
      json: { expiresIn: 60 },
    });
    expect(foreign.status).toBe(404);
    expect(foreign.body).toEqual({ error: { code: "not_found", message: "File not found" } });
    expect(unknown.body).toEqual(foreign.body);
    const rows = await auditRows("link-intruder", "action = 'file.link' AND file_id = ?", file.id);
    expect(rows[0]).toMatchObject({ success: 0, error_code: "not_found" });
  });

  it("needs a bearer token", async () => {
    const file = await seedPhoto("link-anon");
    const res = await callJson(`/v1/files/${file.id}/links`, { method: "POST", json: { expiresIn: 60 } });
    expect(res.status).toBe(401);
  });
});

describe("GET|HEAD /v1/links/:id", () => {
  it("downloads without a token, with the same headers as the authenticated route", async () => {
    const user = "link-get";
    const file = await seedPhoto(user, "holiday photo.jpg");
    const { path } = await createLink(user, file.id);
    const viaLink = await call(path);
    const direct = await call(`/v1/files/${file.id}/content`, { token: await tokenFor(user) });
    expect(viaLink.status).toBe(200);
    expect(new Uint8Array(await viaLink.arrayBuffer())).toEqual(file.bytes);
    await direct.arrayBuffer();
    for (const name of [
      "ETag",
      "Last-Modified",
      "Content-Length",
      "Content-Type",
      "Accept-Ranges",
      "Content-Disposition",
      "Cache-Control",
    ]) {
      expect(viaLink.headers.get(name), name).toBe(direct.headers.get(name));
    }
    expect(viaLink.headers.get("ETag")).toBe(`"${file.etag}"`);
    expect(viaLink.headers.get("Content-Disposition")).toBe('attachment; filename="holiday photo.jpg"');
  });

  it("shares Range, conditional and HEAD behaviour with the authenticated route", async () => {
    const user = "link-range";
    const file = await seedPhoto(user);
    const { path } = await createLink(user, file.id);

    const part = await call(path, { headers: { Range: "bytes=-10" } });
    expect(part.status).toBe(206);
    expect(part.headers.get("Content-Range")).toBe("bytes 490-499/500");
    expect(new Uint8Array(await part.arrayBuffer())).toEqual(file.bytes.slice(490));

    const unsatisfiable = await call(path, { headers: { Range: "bytes=500-" } });
    expect(unsatisfiable.status).toBe(416);
    expect(unsatisfiable.headers.get("Content-Range")).toBe("bytes */500");

    const malformed = await call(path, { headers: { Range: "bytes=9-1" } });
    expect(malformed.status).toBe(200);
    expect((await malformed.arrayBuffer()).byteLength).toBe(500);

    const notModified = await call(path, { headers: { "If-None-Match": `"${file.etag}"` } });
    expect(notModified.status).toBe(304);
    expect(notModified.headers.get("ETag")).toBe(`"${file.etag}"`);

    const failed = await callJson(path, { headers: { "If-Match": '"something-else"' } });
    expect(failed.status).toBe(412);
    expect(failed.body.error.code).toBe("precondition_failed");

    const ifRange = await call(path, { headers: { "If-Range": '"stale"', Range: "bytes=0-0" } });
    expect(ifRange.status).toBe(200);
    expect((await ifRange.arrayBuffer()).byteLength).toBe(500);

    const head = await call(path, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("Content-Length")).toBe("500");
    expect((await head.arrayBuffer()).byteLength).toBe(0);
  });

  it("refuses a tampered signature, a changed id, owner or expiry with 403 link_invalid", async () => {
    const user = "link-tamper";
    const file = await seedPhoto(user);
    const other = await seedPhoto(user);
    const { url } = await createLink(user, file.id);
    const signature = url.searchParams.get("signature")!;
    const expires = url.searchParams.get("expires")!;
    const variants: Record<string, string> = {
      "flipped signature byte": withParam(url, "signature", flipBit(signature, 0)),
      // The last character of 43 base64url characters carries 2 unused bits: a non-canonical spelling of
      // the same bytes must not verify either.
      "non-canonical signature": withParam(url, "signature", flipBit(signature, -1)),
      "signature of another link": withParam(
        url,
        "signature",
        (await createLink(user, other.id)).url.searchParams.get("signature")!,
      ),
      "truncated signature": withParam(url, "signature", signature.slice(0, -1)),
      "changed file id": `/v1/links/${other.id}${url.search}`,
      "changed owner": withParam(url, "owner", "someone-else"),
      "later expiry": withParam(url, "expires", String(Number(expires) + 3600)),
      "no signature": (() => {
        const u = new URL(url);
        u.searchParams.delete("signature");
        return `${u.pathname}${u.search}`;
      })(),
      "no query at all": url.pathname,
      "garbage expiry": withParam(url, "expires", "soon"),
    };
    for (const [why, path] of Object.entries(variants)) {
      const res = await callJson(path);
      expect(res.status, why).toBe(403);
      expect(res.body, why).toEqual({ error: { code: "link_invalid", message: "This link is not valid" } });
    }
    // The untouched link still works.
    expect((await call(`${url.pathname}${url.search}`)).status).toBe(200);
  });

  it("refuses a link signed with another secret", async () => {
    const user = "link-secret";
    const file = await seedPhoto(user);
    const forged = new URL(
      await buildLinkUrl(
        "https://uploads.test",
        { kid: linkSigningKey(env).kid, secret: "not-the-real-secret" },
        {
          fileId: file.id,
          userId: user,
          expiresAt: Math.floor(Date.now() / 1000) + 600,
          scope: "GET",
        },
      ),
    );
    const res = await callJson(`${forged.pathname}${forged.search}`);
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe("link_invalid");
  });

  it("refuses an expired link with 403 link_expired and audits it for the owner", async () => {
    const user = "link-expired";
    const file = await seedPhoto(user);
    const past = Math.floor(Date.now() / 1000) - 10;
    const signed = new URL(
      await buildLinkUrl("https://uploads.test", linkSigningKey(env), {
        fileId: file.id,
        userId: user,
        expiresAt: past,
        scope: "GET",
      }),
    );
    const res = await callJson(`${signed.pathname}${signed.search}`);
    expect(res.status).toBe(403);
    expect(res.body.error).toEqual({
      code: "link_expired",
      message: "This link has expired",
      details: { expiredAt: new Date(past * 1000).toISOString() },
    });
    const head = await call(`${signed.pathname}${signed.search}`, { method: "HEAD" });
    expect(head.status).toBe(403);

    const rows = await auditRows(user, "action = 'file.link_download' AND success = 0");
    expect(rows[0]).toMatchObject({ file_id: file.id, error_code: "link_expired" });
  });

  it("stops working once expiresIn has passed", async () => {
    const user = "link-short";
    const file = await seedPhoto(user);
    const { path } = await createLink(user, file.id, 1);
    // Valid right away (unless this second already ended, which the expiry check below covers anyway).
    const expires = Number(new URL(path, "https://x").searchParams.get("expires"));
    await new Promise((r) => setTimeout(r, Math.max(0, expires * 1000 - Date.now()) + 50));
    const res = await callJson(path);
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe("link_expired");
  });

  it("answers 404 once the file is deleted or its object is gone", async () => {
    const user = "link-deleted";
    const file = await seedPhoto(user);
    const orphan = await seedPhoto(user);
    const { path } = await createLink(user, file.id);
    const { path: orphanPath } = await createLink(user, orphan.id);
    expect((await call(path, { method: "HEAD" })).status).toBe(200);

    await env.DB.prepare("UPDATE files SET status = 'deleted', deleted_at = ? WHERE id = ?")
      .bind(Date.now(), file.id)
      .run();
    const res = await callJson(path);
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe("not_found");
    expect((await call(path, { method: "HEAD" })).status).toBe(404);

    await env.BUCKET.delete(orphan.key);
    const gone = await callJson(orphanPath);
    expect(gone.status).toBe(404);
    expect(gone.body.error.code).toBe("not_found");
  });

  it.each(["DELETE", "PUT", "POST", "PATCH", "OPTIONS"])("answers %s with 405 and changes nothing", async (method) => {
    const user = `link-method-${method.toLowerCase()}`;
    const file = await seedPhoto(user);
    const { path } = await createLink(user, file.id);
    const res = await callJson(path, { method, ...(method === "PUT" || method === "POST" ? { body: "x" } : {}) });
    expect(res.status).toBe(405);
    expect(res.headers.get("Allow")).toBe("GET, HEAD");
    expect(res.body).toEqual({ error: { code: "method_not_allowed", message: "A link only supports GET and HEAD" } });

    const row = await env.DB.prepare("SELECT status FROM files WHERE id = ?").bind(file.id).first<{ status: string }>();
    expect(row?.status).toBe("active");
    expect(await env.BUCKET.head(file.key)).not.toBeNull();
    expect((await call(path)).status).toBe(200);
  });

  it("records link downloads in the owner's audit log with the bytes sent", async () => {
    const user = "link-audit";
    const file = await seedPhoto(user);
    const { path } = await createLink(user, file.id);
    await (await call(path, { headers: { Range: "bytes=0-99", "CF-Connecting-IP": "198.51.100.9" } })).arrayBuffer();
    let rows: any[] = [];
    for (let i = 0; i < 60 && rows.length === 0; i++) {
      rows = await auditRows(user, "action = 'file.link_download' AND success = 1");
    }
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      file_id: file.id,
      bytes_transferred: 100,
      ip_address: "198.51.100.9",
      error_code: null,
    });
    expect(JSON.parse(rows[0].metadata)).toMatchObject({ method: "GET", status: 206, range: "bytes 0-99/500" });
  });
});
