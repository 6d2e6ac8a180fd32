// How tus bytes become R2 parts: unaligned chunks, deferred lengths and their quota, one writer at a time
// (the lease), bodies cut short, checksums over many parts, and a writer that dies after its last byte.
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { sessionFor } from "../../objects/stubs";
import {
  callJson,
  callWithVars,
  gatedBody,
  MiB,
  type Reply,
  randomBytes,
  same,
  sha256Hex,
  sleep,
  tokenFor,
} from "../support/http";
import { d1Upload, drain, testMeta, tusWriteRequest } from "../support/objects";
import { digestB64, fileIdOf, storedBytes, tusClient } from "../support/tus";

describe("unaligned chunks", () => {
  it("cut across 8 MiB parts in every way still make a byte-identical object, and leave no tail behind", async () => {
    const token = await tokenFor("tus-unaligned");
    const tus = tusClient(token);
    const bytes = randomBytes(3 * 8 * MiB + 12345);
    const id = (await tus.create({ length: bytes.length, metadata: { filename: "u.bin" } })).uploadId!;
    // Tiny chunks, a chunk ending exactly on a boundary, a chunk spanning two boundaries, one byte, the rest.
    const cuts = [
      0,
      1,
      100,
      5 * MiB,
      8 * MiB,
      8 * MiB + 1,
      16 * MiB + 2,
      24 * MiB - 1,
      24 * MiB,
      24 * MiB + 7,
      bytes.length,
    ];
    let last = undefined as unknown as Reply;
    for (let i = 0; i + 1 < cuts.length; i++) {
      last = await tus.patch(id, cuts[i], bytes.subarray(cuts[i], cuts[i + 1]));
      expect(last.status, `chunk ${i}: ${JSON.stringify(last.body)}`).toBe(204);
      expect(last.headers.get("Upload-Offset")).toBe(String(cuts[i + 1]));
      if (i + 2 < cuts.length) {
        const status = await callJson(`/v1/uploads/${id}`, { token });
        // Whole parts are recorded as parts; the rest waits in the tail.
        expect(status.body.parts.length).toBe(Math.floor(cuts[i + 1] / (8 * MiB)));
        expect(status.body.bytesReceived).toBe(cuts[i + 1]);
      }
    }
    const fileId = fileIdOf(last!);
    const stored = await storedBytes("tus-unaligned", fileId);
    expect(same(stored, bytes)).toBe(true);
    const file = await callJson(`/v1/uploads/${id}`, { token });
    expect(file.body).toMatchObject({ status: "completed", partCount: 4, bytesReceived: bytes.length });
    expect(file.body.parts.map((p: any) => p.size)).toEqual([8 * MiB, 8 * MiB, 8 * MiB, 12345]);
    await drain(sessionFor(env, id));
    expect((await env.BUCKET.list({ prefix: `tmp/${id}/` })).objects).toEqual([]);
    const row = await d1Upload(id);
    expect(row).toMatchObject({
      protocol: "tus",
      status: "completed",
      total_size: bytes.length,
      parts_uploaded: 4,
      bytes_received: bytes.length,
    });
  });
});

describe("small chunks", () => {
  it("append tail segments without copying them, fold them past the limit, and still make the same bytes", async () => {
    const token = await tokenFor("tus-small-chunks");
    const tus = tusClient(token);
    const chunk = 150 * 1024;
    const bytes = randomBytes(60 * chunk + 11);
    const id = (await tus.create({ length: bytes.length })).uploadId!;
    const segments = () =>
      runInDurableObject(
        sessionFor(env, id),
        (_o, state) => state.storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM tail_segments").one().n,
      );
    let most = 0;
    let last = undefined as unknown as Reply;
    for (let offset = 0; offset < bytes.length; offset += chunk) {
      last = await tus.patch(id, offset, bytes.subarray(offset, offset + chunk));
      expect(last.status, JSON.stringify(last.body)).toBe(204);
      most = Math.max(most, await segments());
    }
    // 54 chunks fill the first 8 MiB part: the tail grew to the limit and was folded.
    expect(most).toBe(32);
    expect(same(await storedBytes("tus-small-chunks", fileIdOf(last!)), bytes)).toBe(true);
    await drain(sessionFor(env, id));
    expect((await env.BUCKET.list({ prefix: `tmp/${id}/` })).objects).toEqual([]);
  });
});

describe("deferred length", () => {
  it("reserves as bytes come, reports Upload-Defer-Length until the length is declared, then completes", async () => {
    const token = await tokenFor("tus-deferred");
    const tus = tusClient(token);
    const bytes = randomBytes(9 * MiB + 3);
    const created = await tus.create({ defer: true, metadata: { filename: "stream.log", filetype: "text/plain" } });
    expect(created.status).toBe(201);
    const id = created.uploadId!;
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ reservedBytes: 0, activeUploads: 1 });
    let head = await tus.head(id);
    expect(head.headers.get("Upload-Defer-Length")).toBe("1");
    expect(head.headers.has("Upload-Length")).toBe(false);
    await drain(sessionFor(env, id));
    expect((await d1Upload(id)).total_size).toBeNull();

    expect((await tus.patch(id, 0, bytes.subarray(0, 3 * MiB))).status).toBe(204);
    expect((await callJson("/v1/usage", { token })).body.reservedBytes).toBe(3 * MiB);
    expect((await tus.patch(id, 3 * MiB, bytes.subarray(3 * MiB, 8 * MiB + 1))).status).toBe(204);
    expect((await callJson("/v1/usage", { token })).body.reservedBytes).toBe(8 * MiB + 1);
    head = await tus.head(id);
    expect(head.headers.get("Upload-Offset")).toBe(String(8 * MiB + 1));
    expect(head.headers.get("Upload-Defer-Length")).toBe("1");

    // A declared length that the bytes already passed is refused; then the real one comes with the last chunk.
    expect((await tus.patch(id, 8 * MiB + 1, new Uint8Array(0), { "Upload-Length": String(8 * MiB) })).status).toBe(
      400,
    );
    const last = await tus.patch(id, 8 * MiB + 1, bytes.subarray(8 * MiB + 1), {
      "Upload-Length": String(bytes.length),
    });
    expect(last.status).toBe(204);
    expect(last.headers.get("Upload-Offset")).toBe(String(bytes.length));
    const fileId = fileIdOf(last);
    expect(same(await storedBytes("tus-deferred", fileId), bytes)).toBe(true);
    head = await tus.head(id);
    expect(head.headers.get("Upload-Length")).toBe(String(bytes.length));
    expect(head.headers.has("Upload-Defer-Length")).toBe(false);
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({
      usedBytes: bytes.length,
      reservedBytes: 0,
      activeUploads: 0,
    });
    const file = await callJson(`/v1/files/${fileId}`, { token });
    expect(file.body).toMatchObject({ filename: "stream.log", contentType: "text/plain", size: bytes.length });
  });

  it("the length may come in an empty PATCH after the last byte, and may be zero", async () => {
    const token = await tokenFor("tus-deferred-late");
    const tus = tusClient(token);
    const bytes = randomBytes(1000);
    const id = (await tus.create({ defer: true })).uploadId!;
    expect((await tus.patch(id, 0, bytes)).status).toBe(204);
    const end = await tus.patch(id, 1000, new Uint8Array(0), { "Upload-Length": "1000" });
    expect(end.status).toBe(204);
    expect(same(await storedBytes("tus-deferred-late", fileIdOf(end)), bytes)).toBe(true);

    const empty = (await tus.create({ defer: true })).uploadId!;
    const zero = await tus.patch(empty, 0, new Uint8Array(0), { "Upload-Length": "0" });
    expect(zero.status).toBe(204);
    expect((await storedBytes("tus-deferred-late", fileIdOf(zero))).length).toBe(0);
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({
      usedBytes: 1000,
      reservedBytes: 0,
      fileCount: 2,
    });
  });

  it("never accepts a byte past the quota: the reservation must grow before a PATCH's bytes are read", async () => {
    const api = callWithVars({ DEFAULT_QUOTA_BYTES: String(7 * MiB) });
    const token = await tokenFor("tus-deferred-quota");
    const tus = tusClient(token, api);
    const bytes = randomBytes(7 * MiB);
    const id = (await tus.create({ defer: true })).uploadId!;
    expect((await tus.patch(id, 0, bytes.subarray(0, 4 * MiB))).status).toBe(204);
    const refused = await tus.patch(id, 4 * MiB, randomBytes(4 * MiB));
    expect(refused.status).toBe(413);
    expect(refused.body.error.code).toBe("quota_exceeded");
    expect((await tus.head(id)).headers.get("Upload-Offset")).toBe(String(4 * MiB));
    const usage = (await api("/v1/usage", { token })).body;
    expect(usage.usedBytes + usage.reservedBytes).toBeLessThanOrEqual(7 * MiB);
    // A declared length over the quota is refused the same way.
    expect((await tus.patch(id, 4 * MiB, new Uint8Array(0), { "Upload-Length": String(7 * MiB + 1) })).status).toBe(
      413,
    );
    const fits = await tus.patch(id, 4 * MiB, bytes.subarray(4 * MiB), { "Upload-Length": String(7 * MiB) });
    expect(fits.status).toBe(204);
    expect(same(await storedBytes("tus-deferred-quota", fileIdOf(fits)), bytes)).toBe(true);
    expect((await api("/v1/usage", { token })).body).toMatchObject({ usedBytes: 7 * MiB, reservedBytes: 0 });
  });

  it("a deferred upload is limited to the largest file", async () => {
    const api = callWithVars({ MAX_FILE_SIZE_BYTES: String(MiB) });
    const tus = tusClient(await tokenFor("tus-deferred-max"), api);
    const id = (await tus.create({ defer: true })).uploadId!;
    expect((await tus.patch(id, 0, randomBytes(MiB + 1))).status).toBe(413);
    expect((await tus.patch(id, 0, new Uint8Array(0), { "Upload-Length": String(MiB + 1) })).status).toBe(413);
    expect((await tus.patch(id, 0, randomBytes(MiB), { "Upload-Length": String(MiB) })).status).toBe(204);
  });
});

describe("one writer at a time", () => {
  it("two PATCHes racing on one upload: one writes, the other gets 423 and corrupts nothing", async () => {
    const token = await tokenFor("tus-race");
    const tus = tusClient(token);
    const bytes = randomBytes(10 * MiB);
    const id = (await tus.create({ length: bytes.length })).uploadId!;
    const first = gatedBody(bytes.subarray(0, 6 * MiB), bytes.subarray(6 * MiB, 9 * MiB));
    const writing = tus.patch(id, 0, first.stream, {}, 9 * MiB);
    // Wait until the first holds the lease (its bytes are flowing). The probe names a wrong offset, so it
    // can never write: while the lease is free it gets 409 (the offset is checked after the lease), and
    // once the first writer holds it, 423.
    let probed = 0;
    for (; probed < 500; probed++) {
      const locked = await tus.patch(id, 1, randomBytes(1));
      if (locked.status === 423) {
        expect(locked.body.error.code).toBe("upload_locked");
        expect(Number(locked.headers.get("Retry-After"))).toBeGreaterThanOrEqual(1);
        break;
      }
      expect(locked.status).toBe(409);
      await sleep(10);
    }
    expect(probed).toBeLessThan(500);
    // Whatever it sends, the second writer is refused while the first holds the lease.
    const racer = await tus.patch(id, 0, bytes.subarray(0, 10 * MiB));
    expect(racer.status).toBe(423);
    first.send();
    const done = await writing;
    expect(done.status).toBe(204);
    expect(done.headers.get("Upload-Offset")).toBe(String(9 * MiB));
    // The loser retries from HEAD, as tus clients do.
    const offset = Number((await tus.head(id)).headers.get("Upload-Offset"));
    expect(offset).toBe(9 * MiB);
    const last = await tus.patch(id, offset, bytes.subarray(offset));
    expect(last.status).toBe(204);
    expect(same(await storedBytes("tus-race", fileIdOf(last)), bytes)).toBe(true);
  });

  it("two PATCHes sent at the same moment: exactly one succeeds", async () => {
    const token = await tokenFor("tus-race-2");
    const tus = tusClient(token);
    const bytes = randomBytes(2 * MiB);
    const id = (await tus.create({ length: bytes.length })).uploadId!;
    const results = await Promise.all([
      tus.patch(id, 0, bytes.subarray(0, MiB)),
      tus.patch(id, 0, bytes.subarray(0, MiB)),
    ]);
    expect(results.map((r) => r.status).sort()).toEqual([204, results.find((r) => r.status !== 204)!.status].sort());
    expect([409, 423]).toContain(results.find((r) => r.status !== 204)!.status);
    expect((await tus.head(id)).headers.get("Upload-Offset")).toBe(String(MiB));
    const last = await tus.patch(id, MiB, bytes.subarray(MiB));
    expect(same(await storedBytes("tus-race-2", fileIdOf(last)), bytes)).toBe(true);
  });

  it("a lease whose holder died expires, and the next writer gets the upload", async () => {
    const token = await tokenFor("tus-dead-writer");
    const tus = tusClient(token);
    const bytes = randomBytes(100);
    const id = (await tus.create({ length: 100 })).uploadId!;
    // A writer takes a one-second lease, then vanishes without a word.
    const grant = await sessionFor(env, id).tusBeginWrite("tus-dead-writer", tusWriteRequest(100, 1000));
    expect(grant).toMatchObject({ ok: true, value: { kind: "write" } });
    expect((await tus.patch(id, 0, bytes)).status).toBe(423);
    await sleep(1100);
    const patched = await tus.patch(id, 0, bytes);
    expect(patched.status).toBe(204);
    expect(same(await storedBytes("tus-dead-writer", fileIdOf(patched)), bytes)).toBe(true);
    // The dead writer's token no longer records anything.
    const late = await sessionFor(env, id).tusRenewLease("tus-dead-writer", (grant as any).value.token, 1000);
    expect(late).toMatchObject({ ok: false, error: { code: "lease_lost" } });
  });

  it("a writer that died after its last byte: HEAD says 423 while its lease lives, then completes it", async () => {
    const userId = "tus-dead-finisher";
    const tus = tusClient(await tokenFor(userId));
    const bytes = randomBytes(100);
    const id = (await tus.create({ length: 100 })).uploadId!;
    const s = sessionFor(env, id);
    const grant: any = await s.tusBeginWrite(userId, tusWriteRequest(100, 1000));
    const uploaded = await env.BUCKET.resumeMultipartUpload(grant.value.r2Key, grant.value.r2UploadId).uploadPart(
      1,
      bytes,
    );
    const finished = await s.tusFinishWrite(
      userId,
      grant.value.token,
      {
        parts: [{ partNumber: 1, size: 100, etag: uploaded.etag, consumedTail: [] }],
        newTail: null,
        uploadLength: null,
      },
      1000,
      testMeta,
    );
    expect(finished).toMatchObject({ ok: true, value: { offset: 100, completing: true } });
    // ... and dies here, before completing.
    const early = await tus.head(id);
    expect(early.status).toBe(423);
    await sleep(1100);
    const head = await tus.head(id);
    expect(head.status).toBe(200);
    expect(head.headers.get("Upload-Offset")).toBe("100");
    expect(same(await storedBytes(userId, fileIdOf(head)), bytes)).toBe(true);
  });
});

describe("bodies cut short", () => {
  it("keep every whole part that arrived; HEAD reports it and the client resumes from there", async () => {
    const token = await tokenFor("tus-cut");
    const tus = tusClient(token);
    const bytes = randomBytes(20 * MiB);
    const id = (await tus.create({ length: bytes.length })).uploadId!;
    // 11 MiB arrive of a 20 MiB body, then the connection drops: part 1 (8 MiB) is whole, 3 MiB are lost.
    const body = gatedBody(bytes.subarray(0, 11 * MiB), new Uint8Array(0));
    const writing = tus.patch(id, 0, body.stream, {}, bytes.length);
    await sleep(300);
    body.drop();
    const cut = await writing;
    expect(cut.status).toBe(400);
    expect(cut.body.error.code).toBe("incomplete_body");
    const head = await tus.head(id);
    expect(head.headers.get("Upload-Offset")).toBe(String(8 * MiB));
    const rest = await tus.patch(id, 8 * MiB, bytes.subarray(8 * MiB));
    expect(rest.status).toBe(204);
    expect(same(await storedBytes("tus-cut", fileIdOf(rest)), bytes)).toBe(true);
  });

  it("with a checksum, keep nothing of the chunk", async () => {
    const token = await tokenFor("tus-cut-checksum");
    const tus = tusClient(token);
    const bytes = randomBytes(20 * MiB);
    const id = (await tus.create({ length: bytes.length })).uploadId!;
    const sha1 = await digestB64("SHA-1", bytes);
    const body = gatedBody(bytes.subarray(0, 11 * MiB), new Uint8Array(0));
    const writing = tus.patch(id, 0, body.stream, { "Upload-Checksum": `sha1 ${sha1}` }, bytes.length);
    await sleep(300);
    body.drop();
    expect((await writing).status).toBe(400);
    expect((await tus.head(id)).headers.get("Upload-Offset")).toBe("0");
  });
});

describe("checksums over many parts", () => {
  it("a mismatch records none of the parts it uploaded; the corrected chunk overwrites them", async () => {
    const token = await tokenFor("tus-checksum-parts");
    const tus = tusClient(token);
    const bytes = randomBytes(2 * 8 * MiB + 3 * MiB);
    const id = (await tus.create({ length: bytes.length })).uploadId!;
    const first = bytes.subarray(0, 17 * MiB);
    const digest = (b: Uint8Array) => digestB64("SHA-256", b);
    const tampered = first.slice();
    tampered[9 * MiB] ^= 0xff;
    const refused = await tus.patch(id, 0, tampered, { "Upload-Checksum": `sha256 ${await digest(first)}` });
    expect(refused.status).toBe(460);
    expect((await tus.head(id)).headers.get("Upload-Offset")).toBe("0");
    expect((await callJson(`/v1/uploads/${id}`, { token })).body).toMatchObject({ parts: [], bytesReceived: 0 });
    const accepted = await tus.patch(id, 0, first, { "Upload-Checksum": `sha256 ${await digest(first)}` });
    expect(accepted.status).toBe(204);
    expect(accepted.headers.get("Upload-Offset")).toBe(String(17 * MiB));
    const last = await tus.patch(id, 17 * MiB, bytes.subarray(17 * MiB), {
      "Upload-Checksum": `sha256 ${await digest(bytes.subarray(17 * MiB))}`,
    });
    expect(last.status).toBe(204);
    const stored = await storedBytes("tus-checksum-parts", fileIdOf(last));
    expect(await sha256Hex(stored)).toBe(await sha256Hex(bytes));
    await drain(sessionFor(env, id));
    expect((await env.BUCKET.list({ prefix: `tmp/${id}/` })).objects).toEqual([]);
  });
});
