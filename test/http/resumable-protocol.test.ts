// Resumable Uploads for HTTP (draft-ietf-httpbis-resumable-upload-12, interop version 8), request by request:
// every MUST of the draft's server sections, named in each test (docs/resumable.md maps them), through the
// Worker's real fetch handler with local R2, D1 and Durable Objects.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { sessionFor } from "../../objects/stubs";
import {
  callJson,
  callWithVars,
  gatedBody,
  MiB,
  type Reply,
  randomBytes,
  sha256Hex,
  sleep,
  tokenFor,
} from "../support/http";
import { d1Upload, drain } from "../support/objects";
import { draftClient, limitsOf, PROBLEM } from "../support/resumable";
import { fileIdOf, storedBytes, worker } from "../support/tus";

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.from(a).equals(Buffer.from(b));
const usage = async (token: string) => (await callJson("/v1/usage", { token })).body;
const b64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));
const MAX_APPEND = 95 * MiB;

/** Expects a problem-details answer (RFC 9457) with the service's own error object inside. */
function expectProblem(reply: Reply, status: number, code: string, type = "about:blank") {
  expect(reply.status, JSON.stringify(reply.body)).toBe(status);
  expect(reply.headers.get("Content-Type")).toBe("application/problem+json");
  expect(reply.body).toMatchObject({ type, status, error: { code } });
  expect(typeof reply.body.title).toBe("string");
  expect(typeof reply.body.detail).toBe("string");
}

/** A refused HEAD: problem details too, but a HEAD response has no body to read. */
function expectHeadProblem(reply: Reply, status: number) {
  expect(reply.status).toBe(status);
  expect(reply.headers.get("Content-Type")).toBe("application/problem+json");
}

describe("interop versions (Appendix B)", { timeout: 30_000 }, () => {
  it("refuses a request without Upload-Draft-Interop-Version, or with one not spoken, first", async () => {
    const token = await tokenFor("rufh-versions");
    for (const version of [undefined, "7", "5", "3", "?1", "8.0", "9"]) {
      const headers: Record<string, string> = { "Upload-Complete": "?0", "Upload-Length": "10" };
      if (version !== undefined) headers["Upload-Draft-Interop-Version"] = version;
      const res = await worker("/v1/resumable", { method: "POST", token, headers });
      expectProblem(res, 400, "unsupported_interop_version");
      expect(res.body.error.details.supported).toEqual([8, 6]);
    }
    expect(await usage(token)).toMatchObject({ reservedBytes: 0, activeUploads: 0 });
    for (const version of [8, 6]) {
      expect((await draftClient(token, version).create({ length: 10 })).status).toBe(201);
    }
  });

  it("checks the version before authentication, and answers 401 as a problem too", async () => {
    const res = await worker("/v1/resumable", {
      method: "POST",
      headers: { "Upload-Draft-Interop-Version": "8", "Upload-Complete": "?0" },
    });
    expectProblem(res, 401, "unauthorized");
    expect(res.headers.get("WWW-Authenticate")).toContain("Bearer");
  });
});

describe("OPTIONS (§4.1.4)", { timeout: 30_000 }, () => {
  it("MUST include Accept-Patch with application/partial-upload; gives Upload-Limit; needs no token", async () => {
    for (const path of ["/v1/resumable", `/v1/resumable/${crypto.randomUUID()}`]) {
      const res = await worker(path, { method: "OPTIONS" });
      expect(res.status).toBe(204);
      expect(res.headers.get("Accept-Patch")).toContain("application/partial-upload");
      expect(limitsOf(res)).toEqual({ "max-size": 5 * 1024 ** 3, "max-append-size": MAX_APPEND });
    }
  });

  it("gives a caller their largest possible upload: the size limit capped by the quota left", async () => {
    const api = callWithVars({ DEFAULT_QUOTA_BYTES: String(3 * MiB) });
    const token = await tokenFor("rufh-options");
    expect((await draftClient(token, 8, api).create({ length: MiB })).status).toBe(201);
    const res = await api("/v1/resumable", { method: "OPTIONS", token });
    expect(limitsOf(res)["max-size"]).toBe(2 * MiB);
  });
});

describe("upload creation (§4.2)", { timeout: 30_000 }, () => {
  it("careful creation: an empty ?0 request gets 201, Location and Upload-Limit, and reserves the length", async () => {
    const token = await tokenFor("rufh-create");
    const created = await draftClient(token).create({ length: 20 * MiB });
    expect(created.status).toBe(201);
    // "the server MUST include the Location response header field pointing to the upload resource and MUST
    // include the Upload-Limit header field with the corresponding limits if existing"
    expect(created.headers.get("Location")).toBe(`/v1/resumable/${created.uploadId}`);
    const limits = limitsOf(created);
    expect(limits).toMatchObject({ "max-size": 20 * MiB, "max-append-size": MAX_APPEND });
    expect(limits["max-age"]).toBeGreaterThan(86_000);
    expect(limits["max-age"]).toBeLessThanOrEqual(86_400);
    expect(created.headers.get("Upload-Complete")).toBe("?0");
    expect(created.headers.get("Upload-Offset")).toBe("0");
    expect(created.body).toBeNull();
    expect(await usage(token)).toMatchObject({ reservedBytes: 20 * MiB, activeUploads: 1 });
    // Same session, same id space: the native and tus views see it.
    const view = await callJson(`/v1/uploads/${created.uploadId}`, { token });
    expect(view.body).toMatchObject({ status: "active", size: 20 * MiB, bytesReceived: 0 });
  });

  it("PUT creates too", async () => {
    const token = await tokenFor("rufh-put");
    const bytes = randomBytes(1000);
    const created = await draftClient(token).create({ method: "PUT", complete: true, body: bytes });
    expect(created.status).toBe(201);
    expect(same(await storedBytes("rufh-put", fileIdOf(created)), bytes)).toBe(true);
  });

  it("optimistic creation: the whole representation with ?1 is a file at once, named from its fields", async () => {
    const userId = "rufh-optimistic";
    const token = await tokenFor(userId);
    const bytes = randomBytes(MiB + 7);
    const created = await draftClient(token).create({
      complete: true,
      length: bytes.length,
      body: bytes,
      headers: {
        "Content-Type": "image/png",
        "Content-Disposition": `inline; filename="fallback.png"; filename*=UTF-8''caf%C3%A9.png`,
      },
    });
    expect(created.status).toBe(201);
    expect(created.headers.get("Upload-Complete")).toBe("?1");
    expect(created.headers.get("Upload-Offset")).toBe(String(bytes.length));
    expect(created.headers.get("Location")).toBe(`/v1/resumable/${created.uploadId}`);
    const fileId = fileIdOf(created);
    expect(created.body.file).toMatchObject({ id: fileId, filename: "café.png", contentType: "image/png" });
    expect(same(await storedBytes(userId, fileId), bytes)).toBe(true);
    expect(await usage(token)).toMatchObject({ usedBytes: bytes.length, reservedBytes: 0, activeUploads: 0 });
  });

  it("an interrupted optimistic creation keeps its whole parts, is not complete, names the upload", async () => {
    const token = await tokenFor("rufh-create-cut");
    const client = draftClient(token);
    const bytes = randomBytes(10 * MiB);
    const body = gatedBody(bytes.subarray(0, 9 * MiB), bytes.subarray(9 * MiB));
    const creating = worker("/v1/resumable", {
      method: "POST",
      token,
      headers: { "Upload-Draft-Interop-Version": "8", "Upload-Complete": "?1", "Content-Length": String(bytes.length) },
      body: body.stream,
      duplex: "half",
    } as RequestInit);
    await sleep(300);
    body.drop();
    const broken = await creating;
    expectProblem(broken, 400, "incomplete_body");
    // Without 104 a real client would not see this answer; the URI is there for one that does.
    const id = broken.headers.get("Location")!.split("/").pop()!;
    let head = await client.head(id);
    for (let i = 0; i < 50 && head.status === 423; i++) {
      await sleep(50);
      head = await client.head(id);
    }
    expect(head.headers.get("Upload-Complete")).toBe("?0");
    expect(head.headers.get("Upload-Offset")).toBe(String(8 * MiB));
    expect(head.headers.get("Upload-Length")).toBe(String(10 * MiB));
    const last = await client.append(id, 8 * MiB, bytes.subarray(8 * MiB), true);
    expect(same(await storedBytes("rufh-create-cut", fileIdOf(last)), bytes)).toBe(true);
  });

  it("validates the representation's metadata: a malformed Content-Type is refused", async () => {
    const token = await tokenFor("rufh-bad-type");
    const res = await draftClient(token).create({ length: 10, headers: { "Content-Type": "not a type" } });
    expectProblem(res, 400, "invalid_request");
    const meta = await draftClient(token).create({ length: 10, headers: { "Upload-Metadata": "filename !!!" } });
    expectProblem(meta, 400, "invalid_metadata");
    expect(await usage(token)).toMatchObject({ reservedBytes: 0, activeUploads: 0 });
  });

  it("an empty ?1 creation is an empty file", async () => {
    const token = await tokenFor("rufh-empty");
    const created = await draftClient(token).create({ complete: true });
    expect(created.status).toBe(201);
    expect(created.headers.get("Upload-Complete")).toBe("?1");
    expect((await storedBytes("rufh-empty", fileIdOf(created))).length).toBe(0);
  });

  it("partial content with ?0: the offset acknowledges it; the upload stays open", async () => {
    const token = await tokenFor("rufh-partial");
    const bytes = randomBytes(3 * MiB);
    const created = await draftClient(token).create({ length: 10 * MiB, body: bytes });
    expect(created.status).toBe(201);
    expect(created.headers.get("Upload-Offset")).toBe(String(3 * MiB));
    expect(created.headers.get("Upload-Complete")).toBe("?0");
    const head = await draftClient(token).head(created.uploadId!);
    expect(head.headers.get("Upload-Offset")).toBe(String(3 * MiB));
  });

  it("refuses a request without a valid Upload-Complete: other values MUST cause the field to be ignored", async () => {
    const token = await tokenFor("rufh-no-complete");
    for (const complete of [undefined, "true", "1", "?2", '"?1"', "?1, ?0"]) {
      const headers: Record<string, string> = { "Upload-Draft-Interop-Version": "8", "Upload-Length": "10" };
      if (complete !== undefined) headers["Upload-Complete"] = complete;
      const res = await worker("/v1/resumable", { method: "POST", token, headers });
      expectProblem(res, 400, "invalid_request");
    }
    // A Structured Field Boolean may carry parameters: still ?1.
    const parameterised = await draftClient(token).create({ length: 0, headers: { "Upload-Complete": "?1;x=1" } });
    expect(parameterised.headers.get("Upload-Complete")).toBe("?1");
    expect(await usage(token)).toMatchObject({ fileCount: 1, activeUploads: 0 });
  });

  it("ignores a malformed Upload-Length (the length is then unknown)", async () => {
    const token = await tokenFor("rufh-bad-length");
    const created = await draftClient(token).create({ headers: { "Upload-Length": "12.5" } });
    expect(created.status).toBe(201);
    const head = await draftClient(token).head(created.uploadId!);
    expect(head.headers.has("Upload-Length")).toBe(false);
  });

  it("inconsistent length indicators (§4.1.3): 400 inconsistent-upload-length, nothing reserved", async () => {
    const token = await tokenFor("rufh-inconsistent-create");
    const client = draftClient(token);
    const a = await client.create({ complete: true, length: 11, body: randomBytes(10) });
    expectProblem(a, 400, "inconsistent_upload_length", PROBLEM.inconsistentLength);
    const b = await client.create({ length: 5, body: randomBytes(10) });
    expectProblem(b, 400, "inconsistent_upload_length", PROBLEM.inconsistentLength);
    expect(await usage(token)).toMatchObject({ reservedBytes: 0, activeUploads: 0 });
  });

  it("limits exceeded: 413 with Upload-Limit for the file size limit, the quota and max-append-size", async () => {
    const api = callWithVars({ DEFAULT_QUOTA_BYTES: String(4 * MiB), MAX_FILE_SIZE_BYTES: String(6 * MiB) });
    const token = await tokenFor("rufh-limits");
    const client = draftClient(token, 8, api);
    const tooBig = await client.create({ length: 6 * MiB + 1 });
    expectProblem(tooBig, 413, "file_too_large");
    expect(limitsOf(tooBig)).toMatchObject({ "max-size": 4 * MiB, "max-append-size": MAX_APPEND });
    const overQuota = await client.create({ length: 5 * MiB });
    expectProblem(overQuota, 413, "quota_exceeded");
    expect(limitsOf(overQuota)["max-size"]).toBe(4 * MiB);
    // max-append-size: refused on Content-Length alone, before a byte is read.
    const never = new ReadableStream<Uint8Array>({ pull: () => new Promise(() => {}) });
    const huge = await worker("/v1/resumable", {
      method: "POST",
      token,
      headers: {
        "Upload-Draft-Interop-Version": "8",
        "Upload-Complete": "?1",
        "Content-Length": String(MAX_APPEND + 1),
      },
      body: never,
      duplex: "half",
    } as RequestInit);
    expectProblem(huge, 413, "payload_too_large");
    expect(limitsOf(huge)).toMatchObject({ "max-append-size": MAX_APPEND });
    expect(await usage(token)).toMatchObject({ reservedBytes: 0, activeUploads: 0 });
  });
});

describe("offset retrieval (§4.3)", { timeout: 30_000 }, () => {
  it("HEAD MUST give Upload-Offset, Upload-Complete, Upload-Length and Upload-Limit; SHOULD say no-store", async () => {
    const userId = "rufh-head";
    const token = await tokenFor(userId);
    const client = draftClient(token);
    const bytes = randomBytes(MiB + 3);
    const id = (await client.create({ length: bytes.length })).uploadId!;
    const fresh = await client.head(id);
    expect(fresh.status).toBe(204);
    expect(fresh.headers.get("Upload-Offset")).toBe("0");
    expect(fresh.headers.get("Upload-Complete")).toBe("?0");
    expect(fresh.headers.get("Upload-Length")).toBe(String(bytes.length));
    expect(limitsOf(fresh)).toMatchObject({ "max-size": bytes.length, "max-append-size": MAX_APPEND });
    expect(limitsOf(fresh)["max-age"]).toBeGreaterThan(0);
    expect(fresh.headers.get("Cache-Control")).toBe("no-store");
    expect((await client.append(id, 0, bytes.subarray(0, MiB), false)).status).toBe(204);
    expect((await client.head(id)).headers.get("Upload-Offset")).toBe(String(MiB));
    const last = await client.append(id, MiB, bytes.subarray(MiB), true);
    const done = await client.head(id);
    expect(done.status).toBe(204);
    expect(done.headers.get("Upload-Complete")).toBe("?1");
    expect(done.headers.get("Upload-Offset")).toBe(String(bytes.length));
    expect(done.headers.get("Upload-File-Location")).toBe(last.headers.get("Upload-File-Location"));
    expect(limitsOf(done)).toEqual({ "max-size": bytes.length, "max-append-size": MAX_APPEND });
  });

  it("an unknown length: no Upload-Length until the client supplies one", async () => {
    const token = await tokenFor("rufh-head-deferred");
    const client = draftClient(token);
    const id = (await client.create()).uploadId!;
    const head = await client.head(id);
    expect(head.headers.has("Upload-Length")).toBe(false);
    expect(limitsOf(head)["max-size"]).toBe(5 * 1024 ** 3);
    expect((await client.append(id, 0, randomBytes(10), false, { "Upload-Length": "30" })).status).toBe(204);
    expect((await client.head(id)).headers.get("Upload-Length")).toBe("30");
  });

  it("unknown, malformed or another user's upload: 404 as a problem", async () => {
    const owner = draftClient(await tokenFor("rufh-owner"));
    const id = (await owner.create({ length: 10 })).uploadId!;
    const stranger = draftClient(await tokenFor("rufh-stranger"));
    for (const target of [id, crypto.randomUUID(), "not-an-id"]) {
      expectHeadProblem(await stranger.head(target), 404);
    }
  });

  it("§4.6: while another request still appends, HEAD answers 423, not an offset about to change", async () => {
    const token = await tokenFor("rufh-head-race");
    const client = draftClient(token);
    const bytes = randomBytes(12 * MiB);
    const id = (await client.create({ length: bytes.length })).uploadId!;
    const first = gatedBody(bytes.subarray(0, 9 * MiB), bytes.subarray(9 * MiB, 10 * MiB));
    const writing = client.append(id, 0, first.stream, false, {}, 10 * MiB);
    // Wait (without touching the lease) until the first part of the append is recorded: it is mid-body.
    for (let i = 0; i < 200; i++) {
      if ((await callJson(`/v1/uploads/${id}`, { token })).body.bytesReceived === 8 * MiB) break;
      await sleep(10);
    }
    expect((await callJson(`/v1/uploads/${id}`, { token })).body.bytesReceived).toBe(8 * MiB);
    const locked = await client.head(id);
    expectHeadProblem(locked, 423);
    expect(Number(locked.headers.get("Retry-After"))).toBeGreaterThanOrEqual(1);
    expect(locked.headers.has("Upload-Offset")).toBe(false);
    first.send();
    expect((await writing).headers.get("Upload-Offset")).toBe(String(10 * MiB));
    // "the offset sent by the server MUST be accepted in a subsequent request to append"
    const head = await client.head(id);
    expect(head.status).toBe(204);
    const offset = Number(head.headers.get("Upload-Offset"));
    expect(offset).toBe(10 * MiB);
    const last = await client.append(id, offset, bytes.subarray(offset), true);
    expect(last.status).toBe(200);
    expect(same(await storedBytes("rufh-head-race", fileIdOf(last)), bytes)).toBe(true);
  });
});

describe("upload append (§4.4)", { timeout: 30_000 }, () => {
  it("appends ?0 chunks across parts, completes with ?1: 200, Upload-Complete ?1, the file", async () => {
    const userId = "rufh-append";
    const token = await tokenFor(userId);
    const client = draftClient(token);
    const bytes = randomBytes(8 * MiB + 4321);
    const created = await client.create({
      length: bytes.length,
      headers: { "Content-Type": "application/pdf", "Content-Disposition": 'inline; filename="report.pdf"' },
    });
    const id = created.uploadId!;
    const cuts = [0, 1, 5 * MiB, 8 * MiB + 1, bytes.length];
    let last!: Reply;
    for (let i = 0; i + 1 < cuts.length; i++) {
      const final = i + 2 === cuts.length;
      last = await client.append(id, cuts[i], bytes.subarray(cuts[i], cuts[i + 1]), final);
      if (!final) {
        // "the server acknowledges the appended data by sending a 2xx (Successful) response with the
        // Upload-Complete header field set to false"
        expect(last.status).toBe(204);
        expect(last.headers.get("Upload-Complete")).toBe("?0");
        expect(last.headers.get("Upload-Offset")).toBe(String(cuts[i + 1]));
      }
    }
    // "the response MUST include the Upload-Complete header field with a true value"
    expect(last.status).toBe(200);
    expect(last.headers.get("Upload-Complete")).toBe("?1");
    const fileId = fileIdOf(last);
    expect(last.body.file).toMatchObject({
      id: fileId,
      filename: "report.pdf",
      contentType: "application/pdf",
      size: bytes.length,
    });
    expect(same(await storedBytes(userId, fileId), bytes)).toBe(true);
    expect(await usage(token)).toMatchObject({ usedBytes: bytes.length, reservedBytes: 0, activeUploads: 0 });
    const meta = await callJson(`/v1/files/${fileId}`, { token });
    expect(meta.body).toMatchObject({ filename: "report.pdf", size: bytes.length });
  });

  it("an empty ?1 append completes an upload whose bytes all came with ?0 (unknown length)", async () => {
    const token = await tokenFor("rufh-empty-complete");
    const client = draftClient(token);
    const bytes = randomBytes(MiB + 1);
    const id = (await client.create()).uploadId!;
    expect((await client.append(id, 0, bytes, false)).status).toBe(204);
    const head = await client.head(id);
    expect(head.headers.get("Upload-Complete")).toBe("?0");
    const done = await client.append(id, bytes.length, new Uint8Array(0), true);
    expect(done.status).toBe(200);
    expect(done.headers.get("Upload-Complete")).toBe("?1");
    expect(same(await storedBytes("rufh-empty-complete", fileIdOf(done)), bytes)).toBe(true);
  });

  it("refuses another patch format with 415 and Accept-Patch", async () => {
    const token = await tokenFor("rufh-415");
    const client = draftClient(token);
    const id = (await client.create({ length: 10 })).uploadId!;
    for (const type of ["application/offset+octet-stream", "application/octet-stream", ""]) {
      const res = await client.append(id, 0, randomBytes(10), true, { "Content-Type": type });
      expectProblem(res, 415, "unsupported_media_type");
      expect(res.headers.get("Accept-Patch")).toBe("application/partial-upload");
    }
    expect((await client.head(id)).headers.get("Upload-Offset")).toBe("0");
  });

  it("an append MUST carry Upload-Complete and Upload-Offset (malformed ones are ignored, so missing)", async () => {
    const token = await tokenFor("rufh-append-fields");
    const client = draftClient(token);
    const id = (await client.create({ length: 10 })).uploadId!;
    const variants: Record<string, string>[] = [
      { "Upload-Complete": "yes" },
      { "Upload-Offset": "-1" },
      { "Upload-Offset": "0.0" },
      { "Upload-Offset": "" },
    ];
    for (const headers of variants) {
      expectProblem(await client.append(id, 0, randomBytes(10), true, headers), 400, "invalid_request");
    }
  });

  it("offset mismatch: 409 with the correct Upload-Offset and the mismatching-upload-offset problem", async () => {
    const token = await tokenFor("rufh-409");
    const client = draftClient(token);
    const bytes = randomBytes(300);
    const id = (await client.create({ length: 300 })).uploadId!;
    expect((await client.append(id, 0, bytes.subarray(0, 100), false)).status).toBe(204);
    for (const wrong of [0, 50, 200]) {
      const res = await client.append(id, wrong, bytes.subarray(wrong, wrong + 100), false);
      expectProblem(res, 409, "offset_mismatch", PROBLEM.mismatchingOffset);
      expect(res.headers.get("Upload-Offset")).toBe("100");
      expect(res.body).toMatchObject({ "expected-offset": 100, "provided-offset": wrong });
      // A ?0 append's every answer says ?0 (draft -05; harmless in -12).
      expect(res.headers.get("Upload-Complete")).toBe("?0");
    }
    const last = await client.append(id, 100, bytes.subarray(100), true);
    expect(same(await storedBytes("rufh-409", fileIdOf(last)), bytes)).toBe(true);
  });

  it("appending to a completed upload is rejected: content → inconsistent length, none → completed", async () => {
    const userId = "rufh-completed";
    const token = await tokenFor(userId);
    const client = draftClient(token);
    const bytes = randomBytes(100);
    const created = await client.create({ complete: true, body: bytes });
    const id = created.uploadId!;
    const fileId = fileIdOf(created);
    for (const offset of [100, 0, 7]) {
      const more = await client.append(id, offset, randomBytes(10), true);
      expectProblem(more, 400, "inconsistent_upload_length", PROBLEM.inconsistentLength);
    }
    for (const [offset, complete] of [
      [100, true],
      [100, false],
      [3, true],
    ] as const) {
      const empty = await client.append(id, offset, new Uint8Array(0), complete);
      expectProblem(empty, 400, "upload_completed", PROBLEM.completedUpload);
      expect(empty.headers.get("Upload-File-Location")).toBe(`/v1/files/${fileId}`);
    }
    // "the server MUST NOT modify the upload resource"
    expect(same(await storedBytes(userId, fileId), bytes)).toBe(true);
    expect((await client.head(id)).headers.get("Upload-Offset")).toBe("100");
    expect(await usage(token)).toMatchObject({ usedBytes: 100, fileCount: 1 });
  });

  it("length changes (§4.1.3): a second indicator that disagrees is refused; the upload lives on", async () => {
    const token = await tokenFor("rufh-length-change");
    const client = draftClient(token);
    const bytes = randomBytes(1000);
    const id = (await client.create({ length: 1000 })).uploadId!;
    expect((await client.append(id, 0, bytes.subarray(0, 400), false)).status).toBe(204);
    // ?1 says the representation ends at 900; the upload says 1000.
    const short = await client.append(id, 400, bytes.subarray(400, 900), true);
    expectProblem(short, 400, "inconsistent_upload_length", PROBLEM.inconsistentLength);
    // Upload-Length that differs from the recorded one.
    const other = await client.append(id, 400, bytes.subarray(400, 500), false, { "Upload-Length": "1200" });
    expectProblem(other, 400, "inconsistent_upload_length", PROBLEM.inconsistentLength);
    // Two indicators in one request that disagree.
    const both = await client.append(id, 400, bytes.subarray(400), true, { "Upload-Length": "999" });
    expectProblem(both, 400, "inconsistent_upload_length", PROBLEM.inconsistentLength);
    expect((await client.head(id)).headers.get("Upload-Offset")).toBe("400");
    const last = await client.append(id, 400, bytes.subarray(400), true, { "Upload-Length": "1000" });
    expect(last.status).toBe(200);
    expect(same(await storedBytes("rufh-length-change", fileIdOf(last)), bytes)).toBe(true);
  });

  it("content past the known length MUST be refused and the upload marked invalid", async () => {
    const token = await tokenFor("rufh-past-length");
    const client = draftClient(token);
    const id = (await client.create({ length: 100 })).uploadId!;
    expect((await client.append(id, 0, randomBytes(60), false)).status).toBe(204);
    const past = await client.append(id, 60, randomBytes(50), false);
    expectProblem(past, 400, "inconsistent_upload_length", PROBLEM.inconsistentLength);
    // "marking the upload resource invalid and rejecting any further interaction with it"
    expectHeadProblem(await client.head(id), 410);
    expectProblem(await client.append(id, 60, randomBytes(40), true), 410, "upload_terminated");
    expect(await usage(token)).toMatchObject({ reservedBytes: 0, activeUploads: 0 });
  });

  it("max-size of an unknown length: past the user's file size limit → 413 with Upload-Limit", async () => {
    const api = callWithVars({ MAX_FILE_SIZE_BYTES: String(6 * MiB) });
    const token = await tokenFor("rufh-append-413");
    const client = draftClient(token, 8, api);
    const id = (await client.create()).uploadId!;
    const res = await client.append(id, 0, randomBytes(6 * MiB + 1), true);
    expectProblem(res, 413, "file_too_large");
    expect(limitsOf(res)).toMatchObject({ "max-size": 6 * MiB, "max-append-size": MAX_APPEND });
    const huge = await client.append(
      id,
      0,
      new ReadableStream({ pull: () => new Promise(() => {}) }),
      false,
      {},
      MAX_APPEND + 1,
    );
    expectProblem(huge, 413, "payload_too_large");
    expect(limitsOf(huge)["max-append-size"]).toBe(MAX_APPEND);
    expect((await client.head(id)).headers.get("Upload-Offset")).toBe("0");
  });

  it("an interrupted append keeps its whole parts and does not complete the upload, even with ?1", async () => {
    const token = await tokenFor("rufh-interrupted");
    const client = draftClient(token);
    const bytes = randomBytes(12 * MiB);
    const id = (await client.create({ length: bytes.length })).uploadId!;
    const body = gatedBody(bytes.subarray(0, 9 * MiB), bytes.subarray(9 * MiB));
    const writing = client.append(id, 0, body.stream, true, {}, bytes.length);
    await sleep(300);
    body.drop();
    const broken = await writing;
    expect(broken.status).toBeGreaterThanOrEqual(400);
    let head = await client.head(id);
    for (let i = 0; i < 50 && head.status === 423; i++) {
      await sleep(50);
      head = await client.head(id);
    }
    expect(head.headers.get("Upload-Complete")).toBe("?0");
    const offset = Number(head.headers.get("Upload-Offset"));
    expect(offset).toBe(8 * MiB);
    const last = await client.append(id, offset, bytes.subarray(offset), true);
    expect(last.status).toBe(200);
    expect(same(await storedBytes("rufh-interrupted", fileIdOf(last)), bytes)).toBe(true);
  });

  it("Content-Digest (§10.2): a mismatching append is not appended; a matching one is", async () => {
    const token = await tokenFor("rufh-content-digest");
    const client = draftClient(token);
    const bytes = randomBytes(MiB);
    const id = (await client.create({ length: bytes.length })).uploadId!;
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    const wrong = await client.append(id, 0, bytes, true, { "Content-Digest": `sha-256=:${b64(new Uint8Array(32))}:` });
    expectProblem(wrong, 400, "digest_mismatch");
    expect((await client.head(id)).headers.get("Upload-Offset")).toBe("0");
    const right = await client.append(id, 0, bytes, true, { "Content-Digest": `sha-256=:${b64(digest)}:` });
    expect(right.status).toBe(200);
    expect(same(await storedBytes("rufh-content-digest", fileIdOf(right)), bytes)).toBe(true);
  });

  it("Repr-Digest (§10.1): the file's SHA-256 is verified on completion; a mismatch fails the upload", async () => {
    const token = await tokenFor("rufh-repr-digest");
    const client = draftClient(token);
    const bytes = randomBytes(1000);
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    const good = await client.create({
      complete: true,
      body: bytes,
      headers: { "Repr-Digest": `sha-512=:${b64(new Uint8Array(64))}:, sha-256=:${b64(digest)}:` },
    });
    expect(good.status).toBe(201);
    expect(good.body.file.sha256).toBe(await sha256Hex(bytes));
    const id = (
      await client.create({ length: 1000, headers: { "Repr-Digest": `sha-256=:${b64(new Uint8Array(32))}:` } })
    ).uploadId!;
    const bad = await client.append(id, 0, bytes, true);
    expectProblem(bad, 422, "checksum_mismatch");
    // The representation arrived whole; its processing failed: resuming would not help.
    expect(bad.headers.get("Upload-Complete")).toBe("?1");
    expectHeadProblem(await client.head(id), 410);
    expect((await callJson(`/v1/uploads/${id}`, { token })).body.status).toBe("failed");
    expect(await usage(token)).toMatchObject({ usedBytes: 1000, reservedBytes: 0, activeUploads: 0 });
  });
});

describe("state (§4.1.1)", { timeout: 30_000 }, () => {
  it("bytes lost from storage: the upload is deactivated and refuses everything after", async () => {
    const token = await tokenFor("rufh-lost");
    const client = draftClient(token);
    const id = (await client.create({ length: 10 * MiB })).uploadId!;
    expect((await client.append(id, 0, randomBytes(MiB), false)).status).toBe(204);
    const tail = await env.BUCKET.list({ prefix: `tmp/${id}/` });
    expect(tail.objects.length).toBe(1);
    await env.BUCKET.delete(tail.objects.map((o) => o.key));
    const lost = await client.append(id, MiB, randomBytes(8 * MiB), false);
    expectProblem(lost, 500, "tail_missing");
    expectHeadProblem(await client.head(id), 410);
    expectProblem(await client.append(id, MiB, randomBytes(10), false), 410, "upload_terminated");
    expect(await usage(token)).toMatchObject({ reservedBytes: 0, activeUploads: 0 });
  });
});

describe("upload cancellation (§4.5)", { timeout: 30_000 }, () => {
  it("DELETE deactivates an unfinished upload: 204, quota released, storage cleaned, 410 afterwards", async () => {
    const token = await tokenFor("rufh-cancel");
    const client = draftClient(token);
    const id = (await client.create({ length: 20 * MiB })).uploadId!;
    expect((await client.append(id, 0, randomBytes(9 * MiB), false)).status).toBe(204);
    const cancelled = await client.cancel(id);
    expect(cancelled.status).toBe(204);
    expect(await usage(token)).toMatchObject({ reservedBytes: 0, activeUploads: 0 });
    expectHeadProblem(await client.head(id), 410);
    expectProblem(await client.append(id, 8 * MiB, randomBytes(10), false), 410, "upload_terminated");
    expectProblem(await client.cancel(id), 410, "upload_terminated");
    expect((await env.BUCKET.list({ prefix: `tmp/${id}/` })).objects).toEqual([]);
    await drain(sessionFor(env, id));
    const row = await d1Upload(id);
    expect(row?.status).toBe("aborted");
  });

  it("DELETE of a completed upload deactivates the upload resource and keeps the file", async () => {
    const userId = "rufh-cancel-done";
    const token = await tokenFor(userId);
    const client = draftClient(token);
    const bytes = randomBytes(100);
    const created = await client.create({ complete: true, body: bytes });
    expect((await client.cancel(created.uploadId!)).status).toBe(204);
    expectHeadProblem(await client.head(created.uploadId!), 410);
    expect(same(await storedBytes(userId, fileIdOf(created)), bytes)).toBe(true);
    expect(await usage(token)).toMatchObject({ usedBytes: 100, fileCount: 1 });
  });

  it("DELETE while another request writes: the writer records nothing more", async () => {
    const token = await tokenFor("rufh-cancel-race");
    const client = draftClient(token);
    const bytes = randomBytes(12 * MiB);
    const id = (await client.create({ length: bytes.length })).uploadId!;
    const body = gatedBody(bytes.subarray(0, 9 * MiB), bytes.subarray(9 * MiB, 10 * MiB));
    const writing = client.append(id, 0, body.stream, false, {}, 10 * MiB);
    await sleep(300);
    expect((await client.cancel(id)).status).toBe(204);
    body.send();
    expect((await writing).status).toBeGreaterThanOrEqual(400);
    expect(await usage(token)).toMatchObject({ reservedBytes: 0, activeUploads: 0 });
    const row = await sessionFor(env, id).view("rufh-cancel-race");
    expect(row).toMatchObject({ ok: true, value: { status: "aborted" } });
  });
});

describe("one session, three front doors", { timeout: 30_000 }, () => {
  it("an upload made here is rate limited, audited and indexed like any other", async () => {
    const userId = "rufh-audit";
    const token = await tokenFor(userId);
    const client = draftClient(token);
    const bytes = randomBytes(10);
    const created = await client.create({ length: 10 });
    const done = await client.append(created.uploadId!, 0, bytes, true);
    expect(done.status).toBe(200);
    await drain(sessionFor(env, created.uploadId!));
    const row = await d1Upload(created.uploadId!);
    expect(row).toMatchObject({ protocol: "tus", total_size: 10 });
    const limited = callWithVars({ RATE_LIMIT_BURST: "1", RATE_LIMIT_REQUESTS_PER_SECOND: "1" });
    const slow = draftClient(await tokenFor("rufh-rate"), 8, limited);
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await slow.create({ length: 1 })).status);
    expect(statuses).toContain(429);
  });
});
