import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { callJson, MiB, putPart, randomBytes, sha256Hex, tokenFor } from "../support/http";

describe("a multipart upload from create to file", () => {
  it("takes parts in any order, resumes from status, verifies sha256 and settles the ledger", async () => {
    const token = await tokenFor("flow-user");
    const bytes = randomBytes(12 * MiB + 123);
    const sha256 = await sha256Hex(bytes);

    const created = await callJson("/v1/uploads", {
      method: "POST",
      token,
      json: {
        filename: "../../etc/holiday.mov",
        size: bytes.length,
        contentType: "video/quicktime",
        sha256,
        metadata: { album: "summer" },
      },
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      filename: "holiday.mov",
      size: bytes.length,
      partSize: 8 * MiB,
      partCount: 2,
      status: "active",
    });
    const { uploadId } = created.body;
    expect(created.headers.get("Location")).toBe(`/v1/uploads/${uploadId}`);

    const usageDuring = await callJson("/v1/usage", { token });
    expect(usageDuring.body).toMatchObject({
      usedBytes: 0,
      reservedBytes: bytes.length,
      fileCount: 0,
      activeUploads: 1,
    });

    // Last part first: order does not matter.
    const last = await putPart(uploadId, 2, bytes.subarray(8 * MiB), token);
    expect(last.status).toBe(200);
    expect(last.body).toMatchObject({ partNumber: 2, size: 4 * MiB + 123 });
    expect(typeof last.body.etag).toBe("string");

    const status = await callJson(`/v1/uploads/${uploadId}`, { token });
    expect(status.body).toMatchObject({ status: "active", missingParts: [1], bytesReceived: 4 * MiB + 123 });
    expect(status.body.parts).toEqual([last.body]);

    expect((await putPart(uploadId, 1, bytes.subarray(0, 8 * MiB), token)).status).toBe(200);
    const done = await callJson(`/v1/uploads/${uploadId}/complete`, { method: "POST", token });
    expect(done.status).toBe(200);
    expect(done.body.file).toMatchObject({
      filename: "holiday.mov",
      size: bytes.length,
      contentType: "video/quicktime",
      sha256,
    });

    // The object in R2 is exactly the bytes sent.
    const object = await env.BUCKET.get(`u/flow-user/${done.body.file.id}`);
    expect(object).not.toBeNull();
    const stored = new Uint8Array(await object!.arrayBuffer());
    expect(stored.length).toBe(bytes.length);
    expect(await sha256Hex(stored)).toBe(sha256);
    expect(object!.httpMetadata?.contentType).toBe("video/quicktime");

    // Complete is idempotent.
    const again = await callJson(`/v1/uploads/${uploadId}/complete`, { method: "POST", token });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(done.body);

    const usageAfter = await callJson("/v1/usage", { token });
    expect(usageAfter.body).toMatchObject({
      usedBytes: bytes.length,
      reservedBytes: 0,
      fileCount: 1,
      activeUploads: 0,
    });
  });
});
