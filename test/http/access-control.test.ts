import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { call, callJson, eventualRows, putPart, randomBytes, tokenFor, uploadWhole } from "../support/http";

describe("another user's ids", () => {
  it("answer 404 on every uploads and files route, change nothing, and every attempt is audited", async () => {
    const owner = await tokenFor("ac-owner");
    const intruder = await tokenFor("ac-intruder");
    const { completed } = await uploadWhole(owner, randomBytes(2048));
    const fileId = completed.body.file.id;
    const open = await callJson("/v1/uploads", {
      method: "POST",
      token: owner,
      json: { filename: "open.bin", size: 100 },
    });
    const uploadId = open.body.uploadId;
    await putPart(uploadId, 1, randomBytes(100), owner);

    const attempts: [string, string, Promise<Response>][] = [
      ["upload.read", uploadId, call(`/v1/uploads/${uploadId}`, { token: intruder })],
      [
        "upload.part",
        uploadId,
        call(`/v1/uploads/${uploadId}/parts/1`, {
          method: "PUT",
          token: intruder,
          body: randomBytes(100),
          headers: { "Content-Length": "100" },
        }),
      ],
      ["upload.complete", uploadId, call(`/v1/uploads/${uploadId}/complete`, { method: "POST", token: intruder })],
      ["upload.abort", uploadId, call(`/v1/uploads/${uploadId}`, { method: "DELETE", token: intruder })],
      ["file.read", fileId, call(`/v1/files/${fileId}`, { token: intruder })],
      ["file.download", fileId, call(`/v1/files/${fileId}/content`, { token: intruder })],
      ["file.download", fileId, call(`/v1/files/${fileId}/content`, { method: "HEAD", token: intruder })],
      [
        "file.link",
        fileId,
        call(`/v1/files/${fileId}/links`, {
          method: "POST",
          token: intruder,
          body: JSON.stringify({ expiresIn: 60 }),
          headers: { "Content-Type": "application/json" },
        }),
      ],
      ["file.delete", fileId, call(`/v1/files/${fileId}`, { method: "DELETE", token: intruder })],
    ];
    for (const [action, , pending] of attempts) expect((await pending).status, action).toBe(404);

    // The owner's upload, file, object and ledger are exactly as before.
    const status = await callJson(`/v1/uploads/${uploadId}`, { token: owner });
    expect(status.body).toMatchObject({ status: "active", bytesReceived: 100 });
    expect((await callJson(`/v1/files/${fileId}`, { token: owner })).status).toBe(200);
    expect(await env.BUCKET.head(`u/ac-owner/${fileId}`)).not.toBeNull();
    expect((await callJson("/v1/usage", { token: owner })).body).toMatchObject({
      usedBytes: 2048,
      reservedBytes: 100,
      fileCount: 1,
      activeUploads: 1,
    });
    expect((await callJson("/v1/usage", { token: intruder })).body).toMatchObject({ usedBytes: 0, reservedBytes: 0 });

    // Each refusal left an audit row under the intruder, with its error code.
    const rows = await eventualRows(
      `SELECT action, success, error_code, COALESCE(upload_id, file_id) AS subject
       FROM file_access_logs WHERE user_id = 'ac-intruder'`,
      [],
      (found) => found.length >= attempts.length,
    );
    expect(rows).toHaveLength(attempts.length);
    for (const row of rows) expect(row).toMatchObject({ success: 0 });
    expect(rows.map((r) => `${r.action}:${r.subject}`).sort()).toEqual(attempts.map(([a, id]) => `${a}:${id}`).sort());
    expect(new Set(rows.map((r) => r.error_code))).toEqual(new Set(["upload_not_found", "not_found"]));
  });
});
