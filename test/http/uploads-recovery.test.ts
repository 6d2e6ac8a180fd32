// Issue 17 items 1 and 2, through the app: a part write that fails after its ticket leaves the part
// missing (never "recorded with the ETag of bytes R2 no longer has"), and a completion that fails in R2
// hands the upload back (active), so the client can re-send, complete again, or abort.
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { sessionFor } from "../../objects/stubs";
import { call, callJson, MiB, putPart, randomBytes, same, sha256Hex, tokenFor } from "../support/http";
import { d1Upload, drain } from "../support/objects";

const b64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));
const digestOf = async (bytes: Uint8Array) =>
  `sha-256=:${b64(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)))}:`;

/** A two-part upload (8 MiB + 1000 bytes) of `bytes`, parts not sent. */
async function twoParts(token: string, bytes: Uint8Array, sha256?: string) {
  const created = await callJson("/v1/uploads", {
    method: "POST",
    token,
    json: { filename: "r.bin", size: bytes.length, ...(sha256 ? { sha256 } : {}) },
  });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  const { uploadId, partSize, partCount } = created.body;
  expect(partCount).toBe(2);
  const part = (n: number) => bytes.subarray((n - 1) * partSize, n * partSize);
  return { uploadId, part };
}

/** The completed file's bytes, read back from R2. */
async function storedBytes(userId: string, fileId: string): Promise<Uint8Array> {
  const object = await env.BUCKET.get(`u/${userId}/${fileId}`);
  if (!object) throw new Error("no object");
  return new Uint8Array(await object.arrayBuffer());
}

/** A body that sends `head`, then fails as a dropped connection does. */
function cutShort(head: Uint8Array): ReadableStream<Uint8Array> {
  let sent = false;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent) controller.error(new Error("connection dropped"));
      else {
        sent = true;
        controller.enqueue(head);
      }
    },
  });
}

describe("a re-send that fails after its ticket (issue 17 item 1)", () => {
  it("a wrong body under the original digest leaves the part missing; re-sent right: byte-identical", async () => {
    const token = await tokenFor("resend-digest");
    const bytes = randomBytes(8 * MiB + 1000);
    const { uploadId, part } = await twoParts(token, bytes, await sha256Hex(bytes));
    expect((await putPart(uploadId, 1, part(1), token)).status).toBe(200);
    expect((await putPart(uploadId, 2, part(2), token)).status).toBe(200);

    // The re-send streams into R2's part 1 before its digest is known, then is refused.
    const bad = await putPart(uploadId, 1, randomBytes(part(1).length), token, {
      "Content-Digest": await digestOf(part(1)),
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("digest_mismatch");
    const view = await callJson(`/v1/uploads/${uploadId}`, { token });
    expect(view.body).toMatchObject({ status: "active", missingParts: [1], bytesReceived: 1000 });
    expect(view.body.parts.map((p: any) => p.partNumber)).toEqual([2]);

    // Completion refuses in the session, naming the part, and the upload stays usable.
    const early = await callJson(`/v1/uploads/${uploadId}/complete`, { method: "POST", token });
    expect(early.status).toBe(409);
    expect(early.body.error).toMatchObject({ code: "parts_missing", details: { missingParts: [1] } });

    expect((await putPart(uploadId, 1, part(1), token, { "Content-Digest": await digestOf(part(1)) })).status).toBe(
      200,
    );
    const done = await callJson(`/v1/uploads/${uploadId}/complete`, { method: "POST", token });
    expect(done.status, JSON.stringify(done.body)).toBe(200);
    expect(same(await storedBytes("resend-digest", done.body.file.id), bytes)).toBe(true);
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({
      usedBytes: bytes.length,
      reservedBytes: 0,
      fileCount: 1,
    });
    // D1 converges: the checkpoint that forgot part 1 is superseded by the later ones.
    await drain(sessionFor(env, uploadId));
    expect(await d1Upload(uploadId)).toMatchObject({ status: "completed", parts_uploaded: 2 });
  });

  it("a re-send cut short leaves the part missing, and the upload completes once it is sent again", async () => {
    const token = await tokenFor("resend-cut");
    const bytes = randomBytes(8 * MiB + 1000);
    const { uploadId, part } = await twoParts(token, bytes);
    expect((await putPart(uploadId, 1, part(1), token)).status).toBe(200);
    expect((await putPart(uploadId, 2, part(2), token)).status).toBe(200);
    const cut = await callJson(`/v1/uploads/${uploadId}/parts/1`, {
      method: "PUT",
      token,
      headers: { "Content-Length": String(part(1).length) },
      body: cutShort(part(1).subarray(0, MiB)),
      // @ts-expect-error: `duplex` is required by fetch for a streamed request body.
      duplex: "half",
    });
    expect(cut.status).toBe(400);
    expect(cut.body.error.code).toBe("incomplete_body");
    expect((await callJson(`/v1/uploads/${uploadId}`, { token })).body.missingParts).toEqual([1]);
    expect((await putPart(uploadId, 1, part(1), token)).status).toBe(200);
    const done = await callJson(`/v1/uploads/${uploadId}/complete`, { method: "POST", token });
    expect(done.status).toBe(200);
    expect(same(await storedBytes("resend-cut", done.body.file.id), bytes)).toBe(true);
  });

  it("overlapping writes of one part: the outdated one is refused, the part missing until sent once", async () => {
    const token = await tokenFor("resend-overlap");
    const bytes = randomBytes(8 * MiB + 1000);
    const { uploadId, part } = await twoParts(token, bytes);
    // Write A takes its ticket and stalls mid-body; write B of the same part runs start to finish.
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const slow = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(part(1).slice(0, 1024));
        await gate;
        controller.enqueue(part(1).slice(1024));
        controller.close();
      },
    });
    const a = callJson(`/v1/uploads/${uploadId}/parts/1`, {
      method: "PUT",
      token,
      headers: { "Content-Length": String(part(1).length) },
      body: slow,
      // @ts-expect-error: `duplex` is required by fetch for a streamed request body.
      duplex: "half",
    });
    await new Promise((r) => setTimeout(r, 200));
    const b = await putPart(uploadId, 1, part(1), token);
    expect(b.status).toBe(200);
    release();
    // A reached R2 after B: R2 keeps A's bytes, and the session cannot tell whose they are.
    const late = await a;
    expect(late.status).toBe(409);
    expect(late.body.error).toMatchObject({ code: "part_write_conflict", details: { partNumber: 1 } });
    expect((await callJson(`/v1/uploads/${uploadId}`, { token })).body.missingParts).toEqual([1, 2]);
    expect((await putPart(uploadId, 1, part(1), token)).status).toBe(200);
    expect((await putPart(uploadId, 2, part(2), token)).status).toBe(200);
    const done = await callJson(`/v1/uploads/${uploadId}/complete`, { method: "POST", token });
    expect(done.status).toBe(200);
    expect(same(await storedBytes("resend-overlap", done.body.file.id), bytes)).toBe(true);
  });
});

describe("a completion that fails in R2 (issue 17 item 2)", () => {
  /** Writes over part `n` in R2 behind the session's back: a storage fault the session cannot see. */
  async function corruptInR2(uploadId: string, n: number, size: number) {
    const { r2_key, r2_upload_id } = await runInDurableObject(sessionFor(env, uploadId), (_o, state) =>
      state.storage.sql
        .exec<{ r2_key: string; r2_upload_id: string }>("SELECT r2_key, r2_upload_id FROM session")
        .one(),
    );
    await env.BUCKET.resumeMultipartUpload(r2_key, r2_upload_id).uploadPart(n, randomBytes(size));
  }

  it("R2 rejects the parts: handed back with every part missing (409), sent again, byte-identical", async () => {
    const token = await tokenFor("complete-rejected");
    const bytes = randomBytes(8 * MiB + 1000);
    const { uploadId, part } = await twoParts(token, bytes);
    expect((await putPart(uploadId, 1, part(1), token)).status).toBe(200);
    expect((await putPart(uploadId, 2, part(2), token)).status).toBe(200);
    await corruptInR2(uploadId, 1, part(1).length);

    // R2 says a part is not what it holds, not which: the session forgets them all rather than
    // completing again and again against parts R2 does not have.
    const failed = await callJson(`/v1/uploads/${uploadId}/complete`, { method: "POST", token });
    expect(failed.status).toBe(409);
    expect(failed.body.error).toMatchObject({ code: "parts_missing", details: { missingParts: [1, 2] } });
    expect((await callJson(`/v1/uploads/${uploadId}`, { token })).body).toMatchObject({
      status: "active",
      missingParts: [1, 2],
    });
    expect((await putPart(uploadId, 1, part(1), token)).status).toBe(200);
    expect((await putPart(uploadId, 2, part(2), token)).status).toBe(200);
    const done = await callJson(`/v1/uploads/${uploadId}/complete`, { method: "POST", token });
    expect(done.status).toBe(200);
    expect(same(await storedBytes("complete-rejected", done.body.file.id), bytes)).toBe(true);
  });

  it("after a failed completion an abort releases the reservation at once", async () => {
    const token = await tokenFor("complete-502-abort");
    const bytes = randomBytes(8 * MiB + 1000);
    const { uploadId, part } = await twoParts(token, bytes);
    expect((await putPart(uploadId, 1, part(1), token)).status).toBe(200);
    expect((await putPart(uploadId, 2, part(2), token)).status).toBe(200);
    await corruptInR2(uploadId, 2, part(2).length);
    expect((await callJson(`/v1/uploads/${uploadId}/complete`, { method: "POST", token })).status).toBe(409);
    expect((await call(`/v1/uploads/${uploadId}`, { method: "DELETE", token })).status).toBe(204);
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ reservedBytes: 0, activeUploads: 0 });
  });
});
