import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import {
  call,
  callJson,
  callWithVars,
  MiB,
  putPart,
  randomBytes,
  sha256Hex,
  tokenFor,
  uploadWhole,
} from "../support/http";

async function create(token: string, size: number, extra: Record<string, unknown> = {}) {
  const res = await callJson("/v1/uploads", { method: "POST", token, json: { filename: "x.bin", size, ...extra } });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body as { uploadId: string; partSize: number; partCount: number };
}

describe("creating an upload", () => {
  it("validates the body with zod details and writes nothing", async () => {
    const token = await tokenFor("create-errors");
    const cases: unknown[] = [
      {},
      { filename: "", size: 1 },
      { filename: "a", size: -1 },
      { filename: "a", size: 1.5 },
      { filename: "a", size: 1, sha256: "xyz" },
      { filename: "a", size: 1, contentType: "not a type" },
      { filename: "a", size: 1, metadata: { k: "v".repeat(3000) } },
      { filename: "a", size: 1, surprise: true },
    ];
    for (const json of cases) {
      const res = await callJson("/v1/uploads", { method: "POST", token, json });
      expect(res.status, JSON.stringify(json)).toBe(400);
      expect(res.body.error.code).toBe("invalid_request");
      expect(Array.isArray(res.body.error.details)).toBe(true);
    }
    const notJson = await callJson("/v1/uploads", {
      method: "POST",
      token,
      body: "{",
      headers: { "Content-Type": "application/json" },
    });
    expect(notJson.status).toBe(400);
    expect(notJson.body.error.code).toBe("invalid_request");
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ reservedBytes: 0, activeUploads: 0 });
  });

  it("refuses files over the maximum size with 413 file_too_large", async () => {
    const token = await tokenFor("too-large");
    const res = await callJson("/v1/uploads", {
      method: "POST",
      token,
      json: { filename: "a", size: 5 * 1024 ** 3 + 1 },
    });
    expect(res.status).toBe(413);
    expect(res.body.error).toMatchObject({ code: "file_too_large", details: { maxFileSizeBytes: 5 * 1024 ** 3 } });
  });

  it("refuses media types the configuration does not allow with 415", async () => {
    const api = callWithVars({ ALLOWED_CONTENT_TYPES: "image/*,application/pdf" });
    const token = await tokenFor("media-types");
    const refused = await api("/v1/uploads", {
      method: "POST",
      token,
      json: { filename: "a", size: 1, contentType: "video/mp4" },
    });
    expect(refused.status).toBe(415);
    expect(refused.body.error.code).toBe("unsupported_media_type");
    const noType = await api("/v1/uploads", { method: "POST", token, json: { filename: "a", size: 1 } });
    expect(noType.status).toBe(415);
    for (const contentType of ["image/png", "IMAGE/JPEG", "application/pdf; charset=binary"]) {
      const ok = await api("/v1/uploads", { method: "POST", token, json: { filename: "a", size: 1, contentType } });
      expect(ok.status, contentType).toBe(201);
    }
  });

  it("refuses a file that does not fit the quota with used/reserved/limit", async () => {
    const api = callWithVars({ DEFAULT_QUOTA_BYTES: String(10 * MiB) });
    const token = await tokenFor("quota-details");
    expect((await api("/v1/uploads", { method: "POST", token, json: { filename: "a", size: 6 * MiB } })).status).toBe(
      201,
    );
    const res = await api("/v1/uploads", { method: "POST", token, json: { filename: "b", size: 5 * MiB } });
    expect(res.status).toBe(413);
    expect(res.body.error).toMatchObject({
      code: "quota_exceeded",
      details: { usedBytes: 0, reservedBytes: 6 * MiB, limitBytes: 10 * MiB, requestedBytes: 5 * MiB },
    });
  });

  it("grows the part size so no file needs more than 10,000 parts", async () => {
    const api = callWithVars({ MAX_FILE_SIZE_BYTES: String(200 * 1024 ** 3), DEFAULT_QUOTA_BYTES: String(1024 ** 4) });
    const token = await tokenFor("part-plan");
    const res = await api("/v1/uploads", { method: "POST", token, json: { filename: "big", size: 100 * 1024 ** 3 } });
    expect(res.status).toBe(201);
    expect(res.body.partCount).toBeLessThanOrEqual(10_000);
    expect(res.body.partSize).toBe(11 * MiB);
    const empty = await api("/v1/uploads", { method: "POST", token, json: { filename: "empty", size: 0 } });
    expect(empty.body).toMatchObject({ partCount: 0, partSize: 8 * MiB });
  });

  it("lets exactly as many concurrent creates in as the quota fits", async () => {
    const size = 6 * MiB;
    const api = callWithVars({ DEFAULT_QUOTA_BYTES: String(10 * size) });
    const token = await tokenFor("stampede");
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        api("/v1/uploads", { method: "POST", token, json: { filename: `f${i}`, size } }),
      ),
    );
    const statuses = results.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 201)).toHaveLength(10);
    expect(statuses.filter((s) => s === 413)).toHaveLength(40);
    const usage = await callJson("/v1/usage", { token });
    expect(usage.body).toMatchObject({ usedBytes: 0, reservedBytes: 10 * size, activeUploads: 10 });
  });
});

describe("uploading parts", () => {
  it("checks part number, exact size and Content-Length", async () => {
    const token = await tokenFor("part-errors");
    const { uploadId } = await create(token, 10 * MiB);
    const tooFar = await putPart(uploadId, 3, randomBytes(10), token);
    expect(tooFar.status).toBe(400);
    expect(tooFar.body.error).toMatchObject({ code: "part_out_of_range", details: { partCount: 2 } });
    expect((await putPart(uploadId, 0, randomBytes(10), token)).body.error.code).toBe("part_out_of_range");
    const wrongSize = await putPart(uploadId, 1, randomBytes(1000), token);
    expect(wrongSize.status).toBe(400);
    expect(wrongSize.body.error).toMatchObject({
      code: "part_size_mismatch",
      details: { expectedSize: 8 * MiB, actualSize: 1000 },
    });
    const lastWrong = await putPart(uploadId, 2, randomBytes(8 * MiB), token);
    expect(lastWrong.body.error).toMatchObject({ code: "part_size_mismatch", details: { expectedSize: 2 * MiB } });
    const notNumber = await callJson(`/v1/uploads/${uploadId}/parts/abc`, { method: "PUT", token, body: "x" });
    expect(notNumber.status).toBe(400);
    expect(notNumber.body.error.code).toBe("invalid_request");
    // A streamed body has no Content-Length.
    const stream = new ReadableStream({
      start(controller) {
        controller.enqueue(randomBytes(10));
        controller.close();
      },
    });
    const chunked = await call(`/v1/uploads/${uploadId}/parts/2`, {
      method: "PUT",
      token,
      body: stream,
      duplex: "half",
    } as RequestInit);
    expect(chunked.status).toBe(411);
    expect(((await chunked.json()) as any).error.code).toBe("length_required");
    expect((await callJson(`/v1/uploads/${uploadId}`, { token })).body).toMatchObject({ parts: [], bytesReceived: 0 });
  });

  it("verifies Content-Digest and does not record a mismatching part", async () => {
    const token = await tokenFor("digest");
    const { uploadId } = await create(token, 1000);
    const bytes = randomBytes(1000);
    const wrong = randomBytes(32);
    const b64 = (b: Uint8Array) => btoa(String.fromCharCode(...b));
    const bad = await putPart(uploadId, 1, bytes, token, { "Content-Digest": `sha-256=:${b64(wrong)}:` });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("digest_mismatch");
    expect((await callJson(`/v1/uploads/${uploadId}`, { token })).body.missingParts).toEqual([1]);

    const malformed = await putPart(uploadId, 1, bytes, token, { "Content-Digest": "sha-256=nope" });
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.code).toBe("invalid_request");

    const right = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    const good = await putPart(uploadId, 1, bytes, token, {
      "Content-Digest":
        `sha-512=:${b64(new Uint8Array(await crypto.subtle.digest("SHA-512", bytes)))}:, ` + `sha-256=:${b64(right)}:`,
    });
    expect(good.status).toBe(200);
    expect((await callJson(`/v1/uploads/${uploadId}`, { token })).body.missingParts).toEqual([]);
  });

  it("replaces a part sent again", async () => {
    const token = await tokenFor("replace");
    const first = randomBytes(100);
    const second = randomBytes(100);
    const { uploadId } = await create(token, 100, { sha256: await sha256Hex(second) });
    await putPart(uploadId, 1, first, token);
    const again = await putPart(uploadId, 1, second, token);
    expect(again.status).toBe(200);
    const status = await callJson(`/v1/uploads/${uploadId}`, { token });
    expect(status.body.parts).toEqual([again.body]);
    const done = await callJson(`/v1/uploads/${uploadId}/complete`, { method: "POST", token });
    expect(done.status).toBe(200);
  });
});

describe("completing", () => {
  it("answers 409 parts_missing listing them", async () => {
    const token = await tokenFor("missing");
    const { uploadId } = await create(token, 17 * MiB);
    await putPart(uploadId, 2, randomBytes(8 * MiB), token);
    const res = await callJson(`/v1/uploads/${uploadId}/complete`, { method: "POST", token });
    expect(res.status).toBe(409);
    expect(res.body.error).toMatchObject({ code: "parts_missing", details: { missingParts: [1, 3] } });
    expect((await callJson(`/v1/uploads/${uploadId}`, { token })).body.status).toBe("active");
  });

  it("stores an empty file", async () => {
    const token = await tokenFor("empty");
    const { completed } = await uploadWhole(token, new Uint8Array(0), { sha256: await sha256Hex(new Uint8Array(0)) });
    expect(completed.status).toBe(200);
    expect(completed.body.file.size).toBe(0);
    const object = await env.BUCKET.get(`u/empty/${completed.body.file.id}`);
    expect(object?.size).toBe(0);
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({
      usedBytes: 0,
      fileCount: 1,
      reservedBytes: 0,
    });
  });

  it("rejects a checksum mismatch: object deleted, quota released, upload failed", async () => {
    const token = await tokenFor("bad-sum");
    const bytes = randomBytes(6 * MiB);
    const { uploadId, completed, created } = await uploadWhole(token, bytes, { sha256: "0".repeat(64) });
    expect(created.partCount).toBe(1);
    expect(completed.status).toBe(422);
    expect(completed.body.error).toMatchObject({
      code: "checksum_mismatch",
      details: { expected: "0".repeat(64), actual: await sha256Hex(bytes) },
    });
    const status = await callJson(`/v1/uploads/${uploadId}`, { token });
    expect(status.body.status).toBe("failed");
    const listed = await env.BUCKET.list({ prefix: "u/bad-sum/" });
    expect(listed.objects).toHaveLength(0);
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({
      usedBytes: 0,
      reservedBytes: 0,
      fileCount: 0,
      activeUploads: 0,
    });
    const retry = await callJson(`/v1/uploads/${uploadId}/complete`, { method: "POST", token });
    expect(retry.status).toBe(409);
    expect(retry.body.error.code).toBe("upload_not_active");
  });
});

describe("aborting", () => {
  it("releases the reservation, refuses later parts, and is idempotent", async () => {
    const token = await tokenFor("abort");
    const { uploadId } = await create(token, 9 * MiB);
    await putPart(uploadId, 2, randomBytes(1 * MiB), token);
    const del = await call(`/v1/uploads/${uploadId}`, { method: "DELETE", token });
    expect(del.status).toBe(204);
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ reservedBytes: 0, activeUploads: 0 });
    const part = await putPart(uploadId, 1, randomBytes(8 * MiB), token);
    expect(part.status).toBe(409);
    expect(part.body.error.code).toBe("upload_not_active");
    expect((await call(`/v1/uploads/${uploadId}`, { method: "DELETE", token })).status).toBe(204);
    const complete = await callJson(`/v1/uploads/${uploadId}/complete`, { method: "POST", token });
    expect(complete.status).toBe(409);
    expect((await callJson(`/v1/uploads/${uploadId}`, { token })).body.status).toBe("aborted");
  });

  it("cannot abort a completed upload", async () => {
    const token = await tokenFor("abort-done");
    const { uploadId } = await uploadWhole(token, randomBytes(10));
    const res = await callJson(`/v1/uploads/${uploadId}`, { method: "DELETE", token });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe("upload_not_active");
  });
});

describe("another user's upload", () => {
  it("answers 404 on every route and changes nothing", async () => {
    const owner = await tokenFor("owner");
    const other = await tokenFor("intruder");
    const { uploadId } = await create(owner, 10);
    const attempts = [
      callJson(`/v1/uploads/${uploadId}`, { token: other }),
      putPart(uploadId, 1, randomBytes(10), other),
      callJson(`/v1/uploads/${uploadId}/complete`, { method: "POST", token: other }),
      callJson(`/v1/uploads/${uploadId}`, { method: "DELETE", token: other }),
    ];
    for (const res of await Promise.all(attempts)) {
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe("upload_not_found");
    }
    const unknown = await callJson(`/v1/uploads/${crypto.randomUUID()}`, { token: other });
    expect(unknown.status).toBe(404);
    expect((await callJson("/v1/uploads/not-a-uuid", { token: other })).status).toBe(404);
    const status = await callJson(`/v1/uploads/${uploadId}`, { token: owner });
    expect(status.body).toMatchObject({ status: "active", parts: [] });
    expect((await callJson("/v1/usage", { token: other })).body).toMatchObject({ reservedBytes: 0 });
    expect((await callJson("/v1/uploads", { token: other })).body.uploads).toEqual([]);
  });
});

describe("listing active uploads", () => {
  it("pages through the caller's active uploads, newest first", async () => {
    const token = await tokenFor("lister");
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await create(token, 10 + i)).uploadId);
    await call(`/v1/uploads/${ids[1]}`, { method: "DELETE", token });
    const first = await callJson("/v1/uploads?limit=2", { token });
    expect(first.status).toBe(200);
    expect(first.body.uploads).toHaveLength(2);
    const second = await callJson(`/v1/uploads?limit=2&cursor=${first.body.nextCursor}`, { token });
    const all = [...first.body.uploads, ...second.body.uploads].map((u: any) => u.uploadId);
    expect(second.body.nextCursor).toBeNull();
    expect(new Set(all)).toEqual(new Set([ids[0], ids[2], ids[3], ids[4]]));
    expect((await callJson("/v1/uploads?cursor=garbage", { token })).status).toBe(400);
    expect((await callJson("/v1/uploads?limit=0", { token })).status).toBe(400);
  });
});
