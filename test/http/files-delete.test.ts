import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { call, callJson, eventualRows, randomBytes, tokenFor, uploadWhole } from "../support/http";

describe("DELETE /v1/files/:id", () => {
  it("gives the bytes back exactly, removes the object and the listing, and a second delete is 404", async () => {
    const token = await tokenFor("deleter");
    const keep = await uploadWhole(token, randomBytes(3000));
    const gone = await uploadWhole(token, randomBytes(5000));
    const fileId = gone.completed.body.file.id;
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ usedBytes: 8000, fileCount: 2 });
    expect(await env.BUCKET.head(`u/deleter/${fileId}`)).not.toBeNull();

    const res = await call(`/v1/files/${fileId}`, { method: "DELETE", token });
    expect(res.status).toBe(204);
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({
      usedBytes: 3000,
      fileCount: 1,
      reservedBytes: 0,
    });
    expect(await env.BUCKET.head(`u/deleter/${fileId}`)).toBeNull();
    const row = await env.DB.prepare("SELECT status, deleted_at FROM files WHERE id = ?").bind(fileId).first<any>();
    expect(row.status).toBe("deleted");
    expect(row.deleted_at).toBeGreaterThan(0);

    const list = await callJson("/v1/files", { token });
    expect(list.body.files.map((f: any) => f.id)).toEqual([keep.completed.body.file.id]);
    expect((await callJson(`/v1/files/${fileId}`, { token })).status).toBe(404);
    expect((await callJson(`/v1/files/${fileId}/content`, { token })).status).toBe(404);
    const again = await callJson(`/v1/files/${fileId}`, { method: "DELETE", token });
    expect(again.status).toBe(404);
    expect(again.body.error.code).toBe("not_found");
    expect((await callJson("/v1/usage", { token })).body.usedBytes).toBe(3000);

    const audit = await env.DB.prepare(
      `SELECT success, bytes_transferred FROM file_access_logs
       WHERE file_id = ? AND action = 'file.delete' AND success = 1`,
    )
      .bind(fileId)
      .all();
    expect(audit.results).toEqual([{ success: 1, bytes_transferred: 5000 }]);
  });

  it("answers 404 for another user's file, changes nothing, and audits the attempt", async () => {
    const owner = await tokenFor("victim");
    const intruder = await tokenFor("burglar");
    const { completed } = await uploadWhole(owner, randomBytes(700));
    const fileId = completed.body.file.id;
    const res = await callJson(`/v1/files/${fileId}`, { method: "DELETE", token: intruder });
    expect(res.status).toBe(404);
    expect(await env.BUCKET.head(`u/victim/${fileId}`)).not.toBeNull();
    expect((await callJson("/v1/usage", { token: owner })).body).toMatchObject({ usedBytes: 700, fileCount: 1 });
    expect((await callJson(`/v1/files/${fileId}`, { token: owner })).status).toBe(200);
    const denied = await eventualRows(
      `SELECT user_id, error_code FROM file_access_logs
       WHERE file_id = ? AND action = 'file.delete' AND success = 0`,
      [fileId],
    );
    expect(denied).toEqual([{ user_id: "burglar", error_code: "not_found" }]);
  });
});
