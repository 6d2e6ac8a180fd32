// The read side against what the real upload flow leaves behind (D1 row checkpointed by the session's
// outbox, object assembled in R2), rather than hand-seeded rows: the two halves must agree on the
// `files` row format (r2_key, unquoted etag, checksum, metadata JSON, times in ms).
import { describe, expect, it } from "vitest";
import { call, callJson, randomBytes, sha256Hex, tokenFor, uploadWhole } from "../support/http";

/** The D1 row is written by an outbox after the completion answers: poll the metadata route briefly. */
async function waitForFile(fileId: string, token: string) {
  for (let attempt = 0; attempt < 100; attempt++) {
    const res = await callJson(`/v1/files/${fileId}`, { token });
    if (res.status === 200) return res.body;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`file ${fileId} never appeared in D1`);
}

describe("reading a file made by an upload", () => {
  it("lists, describes, downloads by range and links it", async () => {
    const user = "after-upload";
    const token = await tokenFor(user);
    const bytes = randomBytes(9 * 1024 * 1024 + 123); // two parts at the default 8 MiB part size
    const sha256 = await sha256Hex(bytes);
    const { created, completed } = await uploadWhole(token, bytes, {
      filename: "vidéo.mp4",
      contentType: "video/mp4",
      sha256,
      metadata: { camera: "phone" },
    });
    expect(completed.status).toBe(200);
    expect(created.partCount).toBeGreaterThanOrEqual(2);
    const fileId: string = completed.body.file.id;

    const file = await waitForFile(fileId, token);
    expect(file).toMatchObject({
      id: fileId,
      filename: "vidéo.mp4",
      size: bytes.length,
      contentType: "video/mp4",
      sha256,
      etag: completed.body.file.etag,
      createdAt: completed.body.file.createdAt,
      metadata: { camera: "phone" },
    });

    const listed = await callJson("/v1/files?prefix=vid", { token });
    expect(listed.body.files.map((f: any) => f.id)).toEqual([fileId]);

    const whole = await call(`/v1/files/${fileId}/content`, { token });
    expect(whole.status).toBe(200);
    expect(whole.headers.get("ETag")).toBe(`"${file.etag}"`);
    expect(whole.headers.get("Content-Type")).toBe("video/mp4");
    expect(whole.headers.get("Content-Disposition")).toBe(
      `attachment; filename="vid_o.mp4"; filename*=UTF-8''vid%C3%A9o.mp4`,
    );
    expect(await sha256Hex(new Uint8Array(await whole.arrayBuffer()))).toBe(sha256);

    // A range straddling the boundary between two uploaded parts.
    const start = created.partSize - 10;
    const part = await call(`/v1/files/${fileId}/content`, {
      token,
      headers: { Range: `bytes=${start}-${start + 19}` },
    });
    expect(part.status).toBe(206);
    expect(new Uint8Array(await part.arrayBuffer())).toEqual(bytes.slice(start, start + 20));

    const link = await callJson(`/v1/files/${fileId}/links`, { method: "POST", token, json: { expiresIn: 60 } });
    expect(link.status).toBe(201);
    const url = new URL(link.body.url);
    const viaLink = await call(`${url.pathname}${url.search}`, { method: "HEAD" });
    expect(viaLink.status).toBe(200);
    expect(viaLink.headers.get("Content-Length")).toBe(String(bytes.length));
  });
});
