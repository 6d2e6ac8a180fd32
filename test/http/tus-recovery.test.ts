// A tus completion that fails at R2 (issue 17 item 2) leaves the upload usable, never stuck completing: a
// transient storage error hands it back, and the next HEAD completes it; R2 rejecting the parts as
// recorded sends the offset back to 0, and the client's resume from HEAD completes it byte-identical.
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { sessionFor } from "../../objects/stubs";
import { createApp } from "../../src/http/app";
import { callJson, MiB, type Reply, randomBytes, same, type TestInit, tokenFor } from "../support/http";
import { fileIdOf, storedBytes, tusClient } from "../support/tus";

/** The app over an R2 whose multipart completion fails (a transient storage error); all else is real. */
async function withFailingCompletion(path: string, init: TestInit = {}): Promise<Reply> {
  const failing = new Proxy(env.BUCKET, {
    get(bucket, prop) {
      if (prop === "resumeMultipartUpload") {
        return (key: string, id: string) =>
          new Proxy(bucket.resumeMultipartUpload(key, id), {
            get(upload, p) {
              if (p === "complete") return () => Promise.reject(new Error("internal error (10001)"));
              const value = Reflect.get(upload, p);
              return typeof value === "function" ? value.bind(upload) : value;
            },
          });
      }
      const value = Reflect.get(bucket, prop);
      return typeof value === "function" ? value.bind(bucket) : value;
    },
  });
  const headers = new Headers(init.headers);
  if (init.token) headers.set("Authorization", `Bearer ${init.token}`);
  const res = await createApp().request(
    `https://uploads.test${path}`,
    { ...init, headers },
    { ...env, BUCKET: failing },
  );
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
}

describe("a tus completion that fails at R2", () => {
  it("a storage error hands the upload back; the next HEAD completes it", async () => {
    const token = await tokenFor("tus-complete-502");
    const tus = tusClient(token);
    const bytes = randomBytes(8 * MiB + 100);
    const id = (await tus.create({ length: bytes.length })).uploadId!;
    expect((await tus.patch(id, 0, bytes.subarray(0, 8 * MiB))).status).toBe(204);

    const last = await tusClient(token, withFailingCompletion).patch(id, 8 * MiB, bytes.subarray(8 * MiB));
    expect(last.status).toBe(502);
    expect(last.body.error.code).toBe("storage_error");
    // Not stuck: active again, every byte still there, no writer holding it.
    expect((await callJson(`/v1/uploads/${id}`, { token })).body).toMatchObject({
      status: "active",
      bytesReceived: bytes.length,
    });
    const head = await tus.head(id);
    expect(head.status).toBe(200);
    expect(head.headers.get("Upload-Offset")).toBe(String(bytes.length));
    expect(same(await storedBytes("tus-complete-502", fileIdOf(head)), bytes)).toBe(true);
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ usedBytes: bytes.length, reservedBytes: 0 });
  });

  it("R2 rejecting the parts sends the offset back to 0; resuming from HEAD completes it byte-identical", async () => {
    const token = await tokenFor("tus-complete-rejected");
    const tus = tusClient(token);
    const bytes = randomBytes(8 * MiB + 100);
    const id = (await tus.create({ length: bytes.length })).uploadId!;
    expect((await tus.patch(id, 0, bytes.subarray(0, 8 * MiB))).status).toBe(204);
    // A storage fault writes over part 1 behind the session's back.
    const { r2_key, r2_upload_id } = await runInDurableObject(sessionFor(env, id), (_o, state) =>
      state.storage.sql
        .exec<{ r2_key: string; r2_upload_id: string }>("SELECT r2_key, r2_upload_id FROM session")
        .one(),
    );
    await env.BUCKET.resumeMultipartUpload(r2_key, r2_upload_id).uploadPart(1, randomBytes(8 * MiB));

    const last = await tus.patch(id, 8 * MiB, bytes.subarray(8 * MiB));
    expect(last.status).toBe(409);
    const head = await tus.head(id);
    expect(head.status).toBe(200);
    expect(head.headers.get("Upload-Offset")).toBe("0");
    // What a tus client does after a 409: HEAD, then resume from the offset it reports.
    expect((await tus.patch(id, 0, bytes.subarray(0, 8 * MiB))).status).toBe(204);
    const done = await tus.patch(id, 8 * MiB, bytes.subarray(8 * MiB));
    expect(done.status).toBe(204);
    expect(same(await storedBytes("tus-complete-rejected", fileIdOf(done)), bytes)).toBe(true);
  });
});
