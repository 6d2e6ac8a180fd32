// The tus 1.0.0 protocol, request by request: every status code the spec and the issue name, and the
// headers each response must carry. Real local R2, D1 and Durable Objects through the Worker's fetch.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { accountFor, sessionFor } from "../../objects/stubs";
import { callJson, callWithVars, MiB, randomBytes, sleep, tokenFor } from "../support/http";
import { drain } from "../support/objects";
import { digestB64, fileIdOf, metadataHeader, storedBytes, TUS_HEADERS, tusClient, worker } from "../support/tus";

const HTTP_DATE = /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/;

describe("OPTIONS (discovery)", () => {
  it("answers 204 with version, extensions, max size and checksum algorithms, without Tus-Resumable", async () => {
    for (const path of ["/v1/tus", `/v1/tus/${crypto.randomUUID()}`]) {
      const res = await worker(path, { method: "OPTIONS" });
      expect(res.status).toBe(204);
      expect(res.headers.get("Tus-Version")).toBe("1.0.0");
      expect(res.headers.get("Tus-Extension")).toBe(
        "creation,creation-with-upload,creation-defer-length,expiration,checksum,termination",
      );
      expect(res.headers.get("Tus-Max-Size")).toBe(String(5 * 1024 ** 3));
      expect(res.headers.get("Tus-Checksum-Algorithm")).toBe("sha1,sha256,md5");
      expect(res.headers.has("Tus-Resumable")).toBe(false);
    }
  });

  it("gives an authenticated caller their effective maximum: the size limit capped by the quota left", async () => {
    const api = callWithVars({ DEFAULT_QUOTA_BYTES: String(3 * MiB) });
    const token = await tokenFor("tus-options");
    const tus = tusClient(token, api);
    expect((await tus.create({ length: MiB })).status).toBe(201);
    const res = await api("/v1/tus", { method: "OPTIONS", token });
    expect(res.status).toBe(204);
    expect(res.headers.get("Tus-Max-Size")).toBe(String(2 * MiB));
  });
});

describe("Tus-Resumable", () => {
  it("is required on every request but OPTIONS: other or none → 412 with Tus-Version", async () => {
    const token = await tokenFor("tus-412");
    const tus = tusClient(token);
    const created = await tus.create({ length: 10 });
    const id = created.uploadId!;
    const requests: [string, RequestInit][] = [
      ["/v1/tus", { method: "POST", headers: { "Upload-Length": "10" } }],
      ["/v1/tus", { method: "POST", headers: { "Upload-Length": "10", "Tus-Resumable": "0.2.2" } }],
      [`/v1/tus/${id}`, { method: "HEAD" }],
      [
        `/v1/tus/${id}`,
        {
          method: "PATCH",
          headers: {
            "Tus-Resumable": "2.0.0",
            "Content-Type": "application/offset+octet-stream",
            "Upload-Offset": "0",
            "Content-Length": "10",
          },
          body: randomBytes(10),
        },
      ],
      [`/v1/tus/${id}`, { method: "DELETE", headers: { "Tus-Resumable": "1.0" } }],
    ];
    for (const [path, init] of requests) {
      const res = await worker(path, { ...init, token });
      expect(res.status, `${init.method} ${path}`).toBe(412);
      expect(res.headers.get("Tus-Version")).toBe("1.0.0");
      expect(res.headers.get("Tus-Resumable")).toBe("1.0.0");
    }
    // Nothing was created, written or terminated.
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ reservedBytes: 10, activeUploads: 1 });
    expect((await tus.head(id)).headers.get("Upload-Offset")).toBe("0");
  });

  it("is on every response, errors included", async () => {
    const res = await worker(`/v1/tus/${crypto.randomUUID()}`, { method: "HEAD", headers: TUS_HEADERS });
    expect(res.status).toBe(401);
    expect(res.headers.get("Tus-Resumable")).toBe("1.0.0");
    const missing = await worker("/v1/tus/a/b", { headers: TUS_HEADERS, token: await tokenFor("tus-404-route") });
    expect(missing.status).toBe(404);
    expect(missing.headers.get("Tus-Resumable")).toBe("1.0.0");
  });
});

describe("creation (POST)", () => {
  it("reserves the length, answers 201 with Location and Upload-Expires, and HEAD reports the upload", async () => {
    const token = await tokenFor("tus-create");
    const tus = tusClient(token);
    const metadata = { filename: "../holiday.mov", filetype: "video/quicktime", album: "summer ☀", empty: "" };
    const created = await tus.create({ length: 12345, metadata });
    expect(created.status).toBe(201);
    const id = created.uploadId!;
    expect(created.headers.get("Location")).toBe(`/v1/tus/${id}`);
    expect(created.headers.get("Upload-Expires")).toMatch(HTTP_DATE);
    expect(created.headers.get("Tus-Resumable")).toBe("1.0.0");
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ reservedBytes: 12345, activeUploads: 1 });

    const head = await tus.head(id);
    expect(head.status).toBe(200);
    expect(head.headers.get("Upload-Offset")).toBe("0");
    expect(head.headers.get("Upload-Length")).toBe("12345");
    expect(head.headers.has("Upload-Defer-Length")).toBe(false);
    expect(head.headers.get("Upload-Metadata")).toBe(metadataHeader(metadata));
    expect(head.headers.get("Upload-Expires")).toBe(created.headers.get("Upload-Expires"));
    expect(head.headers.get("Cache-Control")).toBe("no-store");
    expect(head.headers.get("Tus-Resumable")).toBe("1.0.0");

    // Same session as the native API: it shows the tus upload, with the honoured metadata.
    const native = await callJson(`/v1/uploads/${id}`, { token });
    expect(native.status).toBe(200);
    expect(native.body).toMatchObject({
      status: "active",
      filename: "holiday.mov",
      contentType: "video/quicktime",
      size: 12345,
      metadata: { album: "summer ☀", empty: "" },
      bytesReceived: 0,
    });
  });

  it("takes the collection URL with or without a trailing slash", async () => {
    const token = await tokenFor("tus-slash");
    const res = await worker("/v1/tus/", { method: "POST", token, headers: { ...TUS_HEADERS, "Upload-Length": "1" } });
    expect(res.status).toBe(201);
    expect(res.headers.get("Location")).toMatch(/^\/v1\/tus\/[0-9a-f-]{36}$/);
    expect((await worker("/v1/tus/", { method: "OPTIONS" })).headers.get("Tus-Version")).toBe("1.0.0");
  });

  it("refuses malformed creation headers with 400 and reserves nothing", async () => {
    const token = await tokenFor("tus-create-400");
    const bad: Record<string, string>[] = [
      {},
      { "Upload-Length": "10", "Upload-Defer-Length": "1" },
      { "Upload-Defer-Length": "2" },
      { "Upload-Length": "-1" },
      { "Upload-Length": "ten" },
      { "Upload-Length": "10", "Upload-Metadata": "filename a b" },
      { "Upload-Length": "10", "Upload-Metadata": "filename !!!" },
      { "Upload-Length": "10", "Upload-Metadata": "k YQ==,k Yg==" },
      { "Upload-Length": "10", "Upload-Metadata": "filetype bm90IGEgdHlwZQ==" },
      { "Upload-Length": "10", "Upload-Concat": "partial" },
    ];
    for (const headers of bad) {
      const res = await worker("/v1/tus", { method: "POST", token, headers: { ...TUS_HEADERS, ...headers } });
      expect(res.status, JSON.stringify(headers)).toBe(400);
      expect(res.body.error.code).toBeTypeOf("string");
    }
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ reservedBytes: 0, activeUploads: 0 });
  });

  it("413 past the size limit or the quota, 415 for a type not allowed", async () => {
    const api = callWithVars({
      MAX_FILE_SIZE_BYTES: String(10 * MiB),
      DEFAULT_QUOTA_BYTES: String(20 * MiB),
      ALLOWED_CONTENT_TYPES: "image/*",
    });
    const token = await tokenFor("tus-create-limits");
    const tus = tusClient(token, api);
    const tooBig = await tus.create({ length: 10 * MiB + 1, metadata: { filetype: "image/png" } });
    expect(tooBig.status).toBe(413);
    expect(tooBig.body.error.code).toBe("file_too_large");
    const wrongType = await tus.create({ length: 10, metadata: { filetype: "application/pdf" } });
    expect(wrongType.status).toBe(415);
    expect(wrongType.body.error.code).toBe("unsupported_media_type");
    expect((await tus.create({ length: 10 * MiB, metadata: { filetype: "image/png" } })).status).toBe(201);
    expect((await tus.create({ length: 10 * MiB, metadata: { filetype: "image/png" } })).status).toBe(201);
    const overQuota = await tus.create({ length: 1, metadata: { filetype: "image/png" } });
    expect(overQuota.status).toBe(413);
    expect(overQuota.body.error.code).toBe("quota_exceeded");
    expect(overQuota.headers.get("Tus-Resumable")).toBe("1.0.0");
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ reservedBytes: 20 * MiB, activeUploads: 2 });
  });

  it("an empty upload is a file at once: 201 with Upload-Offset 0 and the file's location", async () => {
    const token = await tokenFor("tus-empty");
    const tus = tusClient(token);
    const created = await tus.create({ length: 0, metadata: { filename: "empty.txt", filetype: "text/plain" } });
    expect(created.status).toBe(201);
    expect(created.headers.get("Upload-Offset")).toBe("0");
    const fileId = fileIdOf(created);
    expect(created.headers.get("Upload-File-Location")).toBe(`/v1/files/${fileId}`);
    expect((await storedBytes("tus-empty", fileId)).length).toBe(0);
    const head = await tus.head(created.uploadId!);
    expect(head.headers.get("Upload-Offset")).toBe("0");
    expect(head.headers.get("Upload-Length")).toBe("0");
    expect(head.headers.get("Upload-File-Location")).toBe(`/v1/files/${fileId}`);
    expect(head.headers.has("Upload-Expires")).toBe(false);
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({
      usedBytes: 0,
      reservedBytes: 0,
      fileCount: 1,
      activeUploads: 0,
    });
  });

  it("creation-with-upload: takes the body, answers with its Upload-Offset, the rest follows by PATCH", async () => {
    const token = await tokenFor("tus-cwu");
    const tus = tusClient(token);
    const bytes = randomBytes(10 * MiB + 7);
    const created = await tus.create({ length: bytes.length, body: bytes.subarray(0, 6 * MiB + 1) });
    expect(created.status).toBe(201);
    expect(created.headers.get("Upload-Offset")).toBe(String(6 * MiB + 1));
    expect(created.headers.get("Upload-Expires")).toMatch(HTTP_DATE);
    const rest = await tus.patch(created.uploadId!, 6 * MiB + 1, bytes.subarray(6 * MiB + 1));
    expect(rest.status).toBe(204);
    expect(Buffer.from(await storedBytes("tus-cwu", fileIdOf(rest))).equals(Buffer.from(bytes))).toBe(true);

    // The whole file in the POST.
    const whole = await tus.create({ length: 1000, body: bytes.subarray(0, 1000) });
    expect(whole.status).toBe(201);
    expect(whole.headers.get("Upload-Offset")).toBe("1000");
    expect(
      Buffer.from(await storedBytes("tus-cwu", fileIdOf(whole))).equals(Buffer.from(bytes.subarray(0, 1000))),
    ).toBe(true);

    // A body that is not application/offset+octet-stream → 415, nothing reserved for it.
    const wrong = await worker("/v1/tus", {
      method: "POST",
      token,
      headers: { ...TUS_HEADERS, "Upload-Length": "10", "Content-Type": "application/json", "Content-Length": "10" },
      body: randomBytes(10),
    });
    expect(wrong.status).toBe(415);
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ reservedBytes: 0, activeUploads: 0 });
  });
});

describe("PATCH", () => {
  it("204 with the new offset and Upload-Expires; 415, 400, 409 and 413 change nothing", async () => {
    const token = await tokenFor("tus-patch");
    const tus = tusClient(token);
    const bytes = randomBytes(1000);
    const id = (await tus.create({ length: 1000 })).uploadId!;

    const ok = await tus.patch(id, 0, bytes.subarray(0, 400));
    expect(ok.status).toBe(204);
    expect(ok.headers.get("Upload-Offset")).toBe("400");
    expect(ok.headers.get("Upload-Expires")).toMatch(HTTP_DATE);
    expect(ok.headers.get("Tus-Resumable")).toBe("1.0.0");

    const wrongType = await tus.patch(id, 400, bytes.subarray(400, 500), {
      "Content-Type": "application/octet-stream",
    });
    expect(wrongType.status).toBe(415);
    const noOffset = await tus.patch(id, 400, bytes.subarray(400, 500), { "Upload-Offset": "" });
    expect(noOffset.status).toBe(400);
    const badOffset = await tus.patch(id, 400, bytes.subarray(400, 500), { "Upload-Offset": "four hundred" });
    expect(badOffset.status).toBe(400);
    const behind = await tus.patch(id, 300, bytes.subarray(300, 500));
    expect(behind.status).toBe(409);
    expect(behind.body.error).toMatchObject({ code: "offset_mismatch", details: { offset: 400 } });
    const ahead = await tus.patch(id, 500, bytes.subarray(500, 600));
    expect(ahead.status).toBe(409);
    const past = await tus.patch(id, 400, randomBytes(601));
    expect(past.status).toBe(413);
    expect(past.body.error.code).toBe("exceeds_upload_length");
    const changedLength = await tus.patch(id, 400, bytes.subarray(400, 500), { "Upload-Length": "999" });
    expect(changedLength.status).toBe(400);
    expect((await tus.head(id)).headers.get("Upload-Offset")).toBe("400");

    const last = await tus.patch(id, 400, bytes.subarray(400));
    expect(last.status).toBe(204);
    expect(last.headers.get("Upload-Offset")).toBe("1000");
    expect(last.headers.has("Upload-Expires")).toBe(false);
    const fileId = fileIdOf(last);
    expect(Buffer.from(await storedBytes("tus-patch", fileId)).equals(Buffer.from(bytes))).toBe(true);

    // A completed upload: HEAD says so; a repeated final PATCH (empty) answers the same; more bytes do not fit.
    const head = await tus.head(id);
    expect(head.headers.get("Upload-Offset")).toBe("1000");
    expect(head.headers.get("Upload-File-Location")).toBe(`/v1/files/${fileId}`);
    const again = await tus.patch(id, 1000, new Uint8Array(0));
    expect(again.status).toBe(204);
    expect(again.headers.get("Upload-File-Location")).toBe(`/v1/files/${fileId}`);
    expect((await tus.patch(id, 1000, randomBytes(1))).status).toBe(413);
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({
      usedBytes: 1000,
      reservedBytes: 0,
      fileCount: 1,
    });
  });

  it("verifies Upload-Checksum (sha1, sha256, md5): mismatch 460, chunk dropped; unknown algorithm 400", async () => {
    const token = await tokenFor("tus-checksum");
    const tus = tusClient(token);
    const bytes = randomBytes(3000);
    const id = (await tus.create({ length: 3000 })).uploadId!;
    const chunk = (a: number, b: number) => bytes.subarray(a, b);

    const unknown = await tus.patch(id, 0, chunk(0, 1000), { "Upload-Checksum": `crc32 ${btoa("abcd")}` });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.code).toBe("unsupported_checksum_algorithm");
    const malformed = await tus.patch(id, 0, chunk(0, 1000), { "Upload-Checksum": "sha1" });
    expect(malformed.status).toBe(400);
    const wrongLength = await tus.patch(id, 0, chunk(0, 1000), { "Upload-Checksum": `sha1 ${btoa("short")}` });
    expect(wrongLength.status).toBe(400);

    const mismatch = await tus.patch(id, 0, chunk(0, 1000), {
      "Upload-Checksum": `sha1 ${await digestB64("SHA-1", chunk(1, 1001))}`,
    });
    expect(mismatch.status).toBe(460);
    expect(mismatch.body.error.code).toBe("checksum_mismatch");
    expect(mismatch.headers.get("Tus-Resumable")).toBe("1.0.0");
    expect((await tus.head(id)).headers.get("Upload-Offset")).toBe("0");

    const sha1 = await tus.patch(id, 0, chunk(0, 1000), {
      "Upload-Checksum": `sha1 ${await digestB64("SHA-1", chunk(0, 1000))}`,
    });
    expect(sha1.status).toBe(204);
    expect(sha1.headers.get("Upload-Offset")).toBe("1000");
    const sha256Mismatch = await tus.patch(id, 1000, chunk(1000, 2000), {
      "Upload-Checksum": `sha256 ${await digestB64("SHA-256", chunk(0, 1000))}`,
    });
    expect(sha256Mismatch.status).toBe(460);
    expect((await tus.head(id)).headers.get("Upload-Offset")).toBe("1000");
    const sha256 = await tus.patch(id, 1000, chunk(1000, 2000), {
      "Upload-Checksum": `sha256 ${await digestB64("SHA-256", chunk(1000, 2000))}`,
    });
    expect(sha256.status).toBe(204);
    const md5 = await tus.patch(id, 2000, chunk(2000, 3000), {
      "Upload-Checksum": `md5 ${await digestB64("MD5", chunk(2000, 3000))}`,
    });
    expect(md5.status).toBe(204);
    expect(Buffer.from(await storedBytes("tus-checksum", fileIdOf(md5))).equals(Buffer.from(bytes))).toBe(true);

    // The refused chunks left no tail object behind once the outbox has run.
    await drain(sessionFor(env, id));
    expect((await env.BUCKET.list({ prefix: `tmp/${id}/` })).objects).toEqual([]);
  });

  it("a body needs a Content-Length (411); other methods are 405", async () => {
    const token = await tokenFor("tus-411");
    const tus = tusClient(token);
    const id = (await tus.create({ length: 10 })).uploadId!;
    const chunked = await worker(`/v1/tus/${id}`, {
      method: "PATCH",
      token,
      headers: { ...TUS_HEADERS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0" },
      body: new ReadableStream({
        start(controller) {
          controller.enqueue(randomBytes(10));
          controller.close();
        },
      }),
      duplex: "half",
    } as RequestInit);
    expect(chunked.status).toBe(411);
    const put = await worker(`/v1/tus/${id}`, { method: "PUT", token, headers: TUS_HEADERS });
    expect(put.status).toBe(405);
    expect(put.headers.get("Allow")).toBe("OPTIONS, HEAD, PATCH, DELETE");
    expect((await worker("/v1/tus", { method: "GET", token, headers: TUS_HEADERS })).status).toBe(405);
    expect((await tus.head(id)).headers.get("Upload-Offset")).toBe("0");
  });

  it("a creation whose body fails its checksum answers 460 with the Location to resume from", async () => {
    const token = await tokenFor("tus-cwu-460");
    const tus = tusClient(token);
    const bytes = randomBytes(100);
    const refused = await tus.create({
      length: 100,
      body: bytes,
      headers: { "Upload-Checksum": `sha1 ${await digestB64("SHA-1", bytes.subarray(1))}` },
    });
    expect(refused.status).toBe(460);
    expect(refused.uploadId).not.toBeNull();
    expect((await tus.head(refused.uploadId!)).headers.get("Upload-Offset")).toBe("0");
    const resumed = await tus.patch(refused.uploadId!, 0, bytes, {
      "Upload-Checksum": `sha1 ${await digestB64("SHA-1", bytes)}`,
    });
    expect(resumed.status).toBe(204);
    expect(Buffer.from(await storedBytes("tus-cwu-460", fileIdOf(resumed))).equals(Buffer.from(bytes))).toBe(true);
  });

  it("accepts X-HTTP-Method-Override", async () => {
    const token = await tokenFor("tus-override");
    const tus = tusClient(token);
    const id = (await tus.create({ length: 10 })).uploadId!;
    const patched = await worker(`/v1/tus/${id}`, {
      method: "POST",
      token,
      headers: {
        ...TUS_HEADERS,
        "X-HTTP-Method-Override": "PATCH",
        "Content-Type": "application/offset+octet-stream",
        "Upload-Offset": "0",
        "Content-Length": "4",
      },
      body: randomBytes(4),
    });
    expect(patched.status).toBe(204);
    expect(patched.headers.get("Upload-Offset")).toBe("4");
    const deleted = await worker(`/v1/tus/${id}`, {
      method: "POST",
      token,
      headers: { ...TUS_HEADERS, "X-HTTP-Method-Override": "DELETE" },
    });
    expect(deleted.status).toBe(204);
    expect((await tus.head(id)).status).toBe(410);
  });
});

describe("unknown, foreign, expired and terminated uploads", () => {
  it("another user's upload, an unknown id and a malformed id answer 404 to HEAD, PATCH and DELETE", async () => {
    const owner = tusClient(await tokenFor("tus-owner"));
    const intruder = tusClient(await tokenFor("tus-intruder"));
    const id = (await owner.create({ length: 10 })).uploadId!;
    for (const target of [id, crypto.randomUUID(), "not-a-uuid"]) {
      for (const res of [
        await intruder.head(target),
        await intruder.patch(target, 0, randomBytes(10)),
        await intruder.delete(target),
      ]) {
        expect(res.status).toBe(404);
        expect(res.headers.get("Tus-Resumable")).toBe("1.0.0");
        expect(res.headers.has("Upload-Offset")).toBe(false);
      }
    }
    expect((await owner.head(id)).headers.get("Upload-Offset")).toBe("0");
  });

  it("an expired upload answers 410 to HEAD and PATCH", async () => {
    // 3 s: long enough that the first PATCH lands before expiry even on a busy machine.
    const api = callWithVars({ UPLOAD_TTL_SECONDS: "3" });
    const token = await tokenFor("tus-expired");
    const tus = tusClient(token, api);
    const id = (await tus.create({ length: 100 })).uploadId!;
    expect((await tus.patch(id, 0, randomBytes(50))).status).toBe(204);
    await sleep(3100);
    const head = await tus.head(id);
    expect(head.status).toBe(410);
    expect(head.headers.has("Upload-Offset")).toBe(false);
    expect(head.headers.get("Tus-Resumable")).toBe("1.0.0");
    const patch = await tus.patch(id, 50, randomBytes(50));
    expect(patch.status).toBe(410);
    expect(patch.body.error.code).toBe("upload_expired");
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ reservedBytes: 0, activeUploads: 0 });
    await drain(sessionFor(env, id));
    expect((await env.BUCKET.list({ prefix: `tmp/${id}/` })).objects).toEqual([]);
  });

  it("DELETE terminates: 204, reservation released, tail objects removed, then 410", async () => {
    const token = await tokenFor("tus-terminate");
    const tus = tusClient(token);
    const id = (await tus.create({ length: 100 })).uploadId!;
    expect((await tus.patch(id, 0, randomBytes(30))).status).toBe(204);
    expect((await env.BUCKET.list({ prefix: `tmp/${id}/` })).objects).toHaveLength(1);
    const deleted = await tus.delete(id);
    expect(deleted.status).toBe(204);
    expect(deleted.headers.get("Tus-Resumable")).toBe("1.0.0");
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ reservedBytes: 0, activeUploads: 0 });
    expect((await env.BUCKET.list({ prefix: `tmp/${id}/` })).objects).toEqual([]);
    for (const res of [await tus.head(id), await tus.patch(id, 30, randomBytes(10)), await tus.delete(id)]) {
      expect(res.status).toBe(410);
      expect(res.body?.error?.code ?? "upload_terminated").toBe("upload_terminated");
    }
    expect((await callJson(`/v1/uploads/${id}`, { token })).body.status).toBe("aborted");
  });

  it("DELETE of a completed upload deletes its file", async () => {
    const token = await tokenFor("tus-terminate-file");
    const tus = tusClient(token);
    const created = await tus.create({ length: 5, body: randomBytes(5) });
    const fileId = fileIdOf(created);
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ usedBytes: 5, fileCount: 1 });
    expect((await tus.delete(created.uploadId!)).status).toBe(204);
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ usedBytes: 0, fileCount: 0 });
    expect((await tus.head(created.uploadId!)).status).toBe(410);
    await drain(accountFor(env, "tus-terminate-file"));
    expect(await env.BUCKET.head(`u/tus-terminate-file/${fileId}`)).toBeNull();
  });
});

describe("the native API and tus on one session", () => {
  it("native part writes and completion refuse a tus upload; tus refuses a native one", async () => {
    const token = await tokenFor("tus-native");
    const tus = tusClient(token);
    const id = (await tus.create({ length: 10 })).uploadId!;
    const put = await callJson(`/v1/uploads/${id}/parts/1`, {
      method: "PUT",
      token,
      body: randomBytes(10),
      headers: { "Content-Length": "10" },
    });
    expect(put.status).toBe(409);
    expect(put.body.error.code).toBe("protocol_mismatch");
    expect((await callJson(`/v1/uploads/${id}/complete`, { method: "POST", token })).status).toBe(409);
    const native = await callJson("/v1/uploads", { method: "POST", token, json: { filename: "n", size: 10 } });
    expect((await tus.head(native.body.uploadId)).status).toBe(404);
    // The native DELETE aborts a tus upload like any other.
    expect((await callJson(`/v1/uploads/${id}`, { method: "DELETE", token })).status).toBe(204);
    expect((await tus.head(id)).status).toBe(410);
  });
});
