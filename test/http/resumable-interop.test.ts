// Interop version 6 (draft -05), as tus-js-client 4 speaks it with `protocol: "ietf-draft-05"` (its
// requests reproduced header for header from node_modules/tus-js-client/lib.esm/upload.js), and the
// session an upload made through the draft shares with the other front doors.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { sessionFor } from "../../objects/stubs";
import { callJson, MiB, randomBytes, tokenFor } from "../support/http";
import { d1Upload, drain } from "../support/objects";
import { draftClient, limitsOf } from "../support/resumable";
import { fileIdOf, metadataHeader, storedBytes, TUS_HEADERS, worker } from "../support/tus";

const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.from(a).equals(Buffer.from(b));
const V6 = { "Upload-Draft-Interop-Version": "6" };

describe("interop version 6: tus-js-client's ietf-draft-05 requests", { timeout: 30_000 }, () => {
  it("creation (Upload-Length, Upload-Metadata, ?0), 7-byte chunks as ?0 then ?1, HEAD", async () => {
    const userId = "rufh6-flow";
    const token = await tokenFor(userId);
    const bytes = randomBytes(20);
    // _createUpload: POST, Upload-Length, Upload-Metadata, Upload-Complete: ?0, no body.
    const created = await worker("/v1/resumable", {
      method: "POST",
      token,
      headers: {
        ...V6,
        "Upload-Length": "20",
        "Upload-Metadata": metadataHeader({ filename: "notes.txt", filetype: "text/plain", origin: "test" }),
        "Upload-Complete": "?0",
      },
    });
    expect(created.status).toBe(201);
    const location = created.headers.get("Location")!;
    expect(location).toMatch(/^\/v1\/resumable\/[0-9a-f-]{36}$/);
    // -05 §4.2.2: "The response SHOULD include the Upload-Limit header field"; -05 §4.1.4 keys are -12's.
    expect(limitsOf(created)).toMatchObject({ "max-size": 20 });
    // _performUpload: PATCH, Upload-Offset, Content-Type: application/partial-upload, Upload-Complete.
    let offset = 0;
    while (offset < bytes.length) {
      const end = Math.min(offset + 7, bytes.length);
      const res = await worker(location, {
        method: "PATCH",
        token,
        headers: {
          ...V6,
          "Upload-Offset": String(offset),
          "Content-Type": "application/partial-upload",
          "Upload-Complete": end === bytes.length ? "?1" : "?0",
          "Content-Length": String(end - offset),
        },
        body: bytes.subarray(offset, end),
      });
      expect(res.status).toBeLessThan(300);
      // _handleUploadResponse reads Upload-Offset from every append response.
      offset = Number(res.headers.get("Upload-Offset"));
      expect(offset).toBe(end);
      if (end === bytes.length) {
        expect(res.headers.get("Upload-Complete")).toBe("?1");
        expect(same(await storedBytes(userId, fileIdOf(res)), bytes)).toBe(true);
      } else expect(res.headers.get("Upload-Complete")).toBe("?0");
    }
    // _resumeUpload: HEAD; offset === Upload-Length means done; onSuccess reads Upload-File-Location.
    const head = await worker(location, { method: "HEAD", token, headers: V6 });
    expect(head.status).toBe(204);
    expect(head.headers.get("Upload-Offset")).toBe("20");
    expect(head.headers.get("Upload-Length")).toBe("20");
    expect(head.headers.get("Upload-File-Location")).toMatch(/^\/v1\/files\//);
    const file = await callJson(head.headers.get("Upload-File-Location")!, { token });
    expect(file.body).toMatchObject({ filename: "notes.txt", contentType: "text/plain", metadata: { origin: "test" } });
  });

  it("an empty file: Upload-Length 0 with ?0 and no body is a file at once (tus-js-client stops there)", async () => {
    const token = await tokenFor("rufh6-empty");
    const created = await draftClient(token, 6).create({ length: 0, headers: { "Upload-Metadata": "filename" } });
    expect(created.status).toBe(201);
    expect(created.headers.get("Location")).not.toBeNull();
    expect(created.headers.get("Upload-Complete")).toBe("?1");
    expect((await storedBytes("rufh6-empty", fileIdOf(created))).length).toBe(0);
  });

  it("creation with data (uploadDataDuringCreation): application/partial-upload names no file type", async () => {
    const token = await tokenFor("rufh6-cwu");
    const bytes = randomBytes(MiB + 1);
    const created = await draftClient(token, 6).create({
      length: bytes.length,
      complete: true,
      body: bytes,
      headers: { "Content-Type": "application/partial-upload" },
    });
    expect(created.status).toBe(201);
    expect(created.body.file).toMatchObject({ contentType: "application/octet-stream", size: bytes.length });
    expect(same(await storedBytes("rufh6-cwu", fileIdOf(created)), bytes)).toBe(true);
  });

  it("-05 §4.4.2: every answer to a ?0 append, successful or not, carries Upload-Complete: ?0", async () => {
    const token = await tokenFor("rufh6-complete-false");
    const client = draftClient(token, 6);
    const id = (await client.create({ length: 10 })).uploadId!;
    const answers = [
      await client.append(id, 0, randomBytes(4), false),
      await client.append(id, 0, randomBytes(4), false),
      await client.append(id, 4, randomBytes(4), false, { "Content-Type": "text/plain" }),
      await client.append(id, 4, randomBytes(40), false),
      await client.append(crypto.randomUUID(), 0, randomBytes(4), false),
    ];
    expect(answers.map((a) => a.status)).toEqual([204, 409, 415, 400, 404]);
    for (const a of answers) expect(a.headers.get("Upload-Complete")).toBe("?0");
  });
});

describe("one session behind three front doors", { timeout: 30_000 }, () => {
  it("a draft upload is a tus session inside: tus HEAD, the native view and D1 agree with it", async () => {
    const userId = "rufh-shared";
    const token = await tokenFor(userId);
    const client = draftClient(token);
    const bytes = randomBytes(9 * MiB);
    const id = (await client.create({ length: bytes.length, body: bytes.subarray(0, 8 * MiB + 5) })).uploadId!;
    const tusHead = await worker(`/v1/tus/${id}`, { method: "HEAD", token, headers: TUS_HEADERS });
    expect(tusHead.headers.get("Upload-Offset")).toBe(String(8 * MiB + 5));
    const view = await callJson(`/v1/uploads/${id}`, { token });
    expect(view.body).toMatchObject({ status: "active", bytesReceived: 8 * MiB + 5, partSize: 8 * MiB });
    // The native part route refuses it, as it does any tus upload.
    const part = await callJson(`/v1/uploads/${id}/parts/2`, { method: "PUT", token, body: randomBytes(10) });
    expect(part.status).toBe(409);
    const last = await client.append(id, 8 * MiB + 5, bytes.subarray(8 * MiB + 5), true);
    expect(last.status).toBe(200);
    await drain(sessionFor(env, id));
    expect(await d1Upload(id)).toMatchObject({
      protocol: "tus",
      status: "completed",
      total_size: bytes.length,
      parts_uploaded: 2,
      bytes_received: bytes.length,
    });
  });
});

describe("browsers (CORS)", () => {
  it("preflights allow the draft's request fields; responses expose its response fields", async () => {
    const preflight = await worker("/v1/resumable/x", {
      method: "OPTIONS",
      headers: {
        Origin: "https://app.example",
        "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers":
          "upload-draft-interop-version,upload-complete,upload-offset,upload-length,content-disposition,repr-digest",
      },
    });
    expect(preflight.status).toBe(204);
    const allowed = preflight.headers.get("Access-Control-Allow-Headers")!.toLowerCase().split(/,\s*/);
    for (const h of ["upload-draft-interop-version", "upload-complete", "upload-offset", "content-disposition"]) {
      expect(allowed).toContain(h);
    }
    const token = await tokenFor("rufh-cors");
    const created = await draftClient(token).create({ length: 5, headers: { Origin: "https://app.example" } });
    const exposed = created.headers.get("Access-Control-Expose-Headers")!.split(/,\s*/);
    for (const h of ["Location", "Upload-Offset", "Upload-Complete", "Upload-Limit", "Upload-Length"]) {
      expect(exposed).toContain(h);
    }
  });
});
