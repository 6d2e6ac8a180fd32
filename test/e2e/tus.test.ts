// tus 1.0.0 end to end: tus-js-client (Node) against a real wrangler dev with local R2, D1 and Durable
// Objects. Every upload is downloaded back and compared byte for byte.
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { type HttpRequest, Upload, type UploadOptions } from "tus-js-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DevServer, eventually, startDevServer } from "./harness.ts";

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Done {
  upload: Upload;
  /** The Upload-File-Location of the last response. */
  fileLocation: string;
  /** Method, Upload-Offset and status of every request the client sent. */
  requests: { method: string; offset: string | undefined; status: number }[];
}

/** Runs one tus-js-client upload to its end. */
function tusUpload(
  server: DevServer,
  token: string,
  input: Buffer | Readable,
  options: Partial<UploadOptions> = {},
): Promise<Done> {
  const requests: Done["requests"] = [];
  return new Promise((resolve, reject) => {
    const upload = new Upload(input, {
      endpoint: `${server.url}/v1/tus`,
      headers: { Authorization: `Bearer ${token}` },
      retryDelays: [0, 500, 1000, 2000],
      ...options,
      onAfterResponse: (req: HttpRequest, res) => {
        requests.push({ method: req.getMethod(), offset: req.getHeader("Upload-Offset"), status: res.getStatus() });
      },
      onSuccess: ({ lastResponse }) => {
        const fileLocation = lastResponse.getHeader("Upload-File-Location");
        if (!fileLocation)
          reject(new Error(`no Upload-File-Location on the last response (${lastResponse.getStatus()})`));
        else resolve({ upload, fileLocation, requests });
      },
      onError: reject,
    });
    upload.start();
  });
}

/** Downloads a file with the bearer token (its D1 row may land a moment after the upload completes). */
async function download(server: DevServer, token: string, fileLocation: string): Promise<Buffer> {
  const res = await eventually(async () => {
    const r = await server.fetch(`${fileLocation}/content`, { token });
    if (r.status === 200) return r;
    await r.arrayBuffer();
    return null;
  });
  if (!res) throw new Error(`${fileLocation} never became downloadable`);
  return Buffer.from(await res.arrayBuffer());
}

describe("tus-js-client through wrangler dev", () => {
  let server: DevServer;
  beforeAll(async () => {
    server = await startDevServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("uploads an empty file and a 1-byte file", async () => {
    const token = await server.token("e2e-tus-small");
    const empty = await tusUpload(server, token, Buffer.alloc(0), {
      metadata: { filename: "empty.txt", filetype: "text/plain" },
    });
    expect(empty.requests.map((r) => r.method)).toEqual(["POST"]);
    expect((await download(server, token, empty.fileLocation)).length).toBe(0);
    const meta = (await (await server.fetch(empty.fileLocation, { token })).json()) as any;
    expect(meta).toMatchObject({ filename: "empty.txt", contentType: "text/plain", size: 0 });

    const one = Buffer.from([0x2a]);
    const single = await tusUpload(server, token, one, { metadata: { filename: "one.bin" } });
    expect(single.requests.map((r) => r.method)).toEqual(["POST", "PATCH"]);
    expect((await download(server, token, single.fileLocation)).equals(one)).toBe(true);
    const usage = (await (await server.fetch("/v1/usage", { token })).json()) as any;
    expect(usage).toMatchObject({ usedBytes: 1, reservedBytes: 0, fileCount: 2, activeUploads: 0 });
  });

  it("creation-with-upload: the data comes with the POST", async () => {
    const token = await server.token("e2e-tus-cwu");
    const whole = randomBytes(3 * MiB + 1);
    const inPost = await tusUpload(server, token, whole, { uploadDataDuringCreation: true });
    expect(inPost.requests.map((r) => r.method)).toEqual(["POST"]);
    expect((await download(server, token, inPost.fileLocation)).equals(whole)).toBe(true);

    const bigger = randomBytes(13 * MiB + 5);
    const firstChunk = await tusUpload(server, token, bigger, { uploadDataDuringCreation: true, chunkSize: 6 * MiB });
    expect(firstChunk.requests.map((r) => r.method)).toEqual(["POST", "PATCH", "PATCH"]);
    expect((await download(server, token, firstChunk.fileLocation)).equals(bigger)).toBe(true);
  });

  it("uploads 100 MiB in 7 MiB chunks against 8 MiB parts, byte for byte", async () => {
    const token = await server.token("e2e-tus-big");
    const bytes = randomBytes(100 * MiB);
    const started = performance.now();
    const done = await tusUpload(server, token, bytes, {
      chunkSize: 7 * MiB,
      metadata: { filename: "big.bin", filetype: "application/octet-stream" },
    });
    const seconds = (performance.now() - started) / 1000;
    console.log(
      JSON.stringify({
        measured: "tus 100 MiB upload",
        seconds: Number(seconds.toFixed(2)),
        mibPerSecond: Number((100 / seconds).toFixed(1)),
      }),
    );
    expect(done.requests.filter((r) => r.method === "PATCH")).toHaveLength(15);
    expect(done.requests.every((r) => r.status < 300)).toBe(true);
    const stored = await download(server, token, done.fileLocation);
    expect(stored.length).toBe(bytes.length);
    expect(stored.equals(bytes)).toBe(true);
    const uploadId = done.upload.url!.split("/").pop();
    const row = await eventually(
      async () =>
        (
          await server.d1(`SELECT * FROM multipart_uploads WHERE upload_id = '${uploadId}' AND status = 'completed'`)
        )[0],
    );
    expect(row).toMatchObject({
      protocol: "tus",
      total_size: bytes.length,
      part_size: 8 * MiB,
      parts_uploaded: 13,
      bytes_received: bytes.length,
    });
  });

  it("resumes an upload aborted half-way, from its stored URL, with a new client", async () => {
    const token = await server.token("e2e-tus-resume");
    const bytes = randomBytes(40 * MiB);
    const options = {
      endpoint: `${server.url}/v1/tus`,
      headers: { Authorization: `Bearer ${token}` },
      chunkSize: 7 * MiB,
      retryDelays: [],
    };
    // The first client stops in the middle of a PATCH once 20 MiB have gone out.
    const first = new Upload(bytes, options);
    await new Promise<void>((resolve, reject) => {
      let stopping = false;
      first.options.onProgress = (sent) => {
        if (sent >= 20 * MiB && !stopping) {
          stopping = true;
          first.abort().then(resolve, reject);
        }
      };
      first.options.onSuccess = () => reject(new Error("the upload should not have finished"));
      first.options.onError = reject;
      first.start();
    });
    const url = first.url!;
    expect(url).toMatch(/\/v1\/tus\/[0-9a-f-]{36}$/);
    await sleep(500);
    const head = await fetch(url, {
      method: "HEAD",
      headers: { Authorization: `Bearer ${token}`, "Tus-Resumable": "1.0.0" },
    });
    const offset = Number(head.headers.get("Upload-Offset"));
    expect(offset).toBeGreaterThanOrEqual(14 * MiB);
    expect(offset).toBeLessThan(bytes.length);

    const resumed = await tusUpload(server, token, bytes, { uploadUrl: url, chunkSize: 7 * MiB });
    expect(resumed.requests[0]).toMatchObject({ method: "HEAD", status: 200 });
    const firstPatch = resumed.requests.find((r) => r.method === "PATCH")!;
    expect(Number(firstPatch.offset)).toBe(offset);
    // The aborted PATCH gave its lease back as soon as its body broke off (its work outlives the client):
    // the new client was never locked out (a lease left to expire would hold it off for 30 s).
    expect(resumed.requests.filter((r) => r.status === 423)).toEqual([]);
    expect((await download(server, token, resumed.fileLocation)).equals(bytes)).toBe(true);
  });

  it("uploads a stream of unknown length (Upload-Defer-Length)", async () => {
    const token = await server.token("e2e-tus-deferred");
    const bytes = randomBytes(12 * MiB + 3);
    const pieces = Array.from({ length: Math.ceil(bytes.length / (64 * 1024)) }, (_, i) =>
      bytes.subarray(i * 64 * 1024, (i + 1) * 64 * 1024),
    );
    const done = await tusUpload(server, token, Readable.from(pieces, { objectMode: false }), {
      uploadLengthDeferred: true,
      chunkSize: 5 * MiB,
      metadata: { filename: "stream.bin" },
    });
    const posted = done.requests[0];
    expect(posted).toMatchObject({ method: "POST", status: 201 });
    expect((await download(server, token, done.fileLocation)).equals(bytes)).toBe(true);
    const usage = (await (await server.fetch("/v1/usage", { token })).json()) as any;
    expect(usage).toMatchObject({ usedBytes: bytes.length, reservedBytes: 0, activeUploads: 0 });
  });

  it("leaves the same usage and D1 rows as the native API for the same file", async () => {
    const bytes = randomBytes(20 * MiB + 5);
    const native = await server.token("e2e-parity-native");
    const viaTus = await server.token("e2e-parity-tus");

    const created = (await (
      await server.fetch("/v1/uploads", {
        method: "POST",
        token: native,
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ filename: "same.bin", size: bytes.length, contentType: "application/octet-stream" }),
      })
    ).json()) as any;
    for (let n = 1; n <= created.partCount; n++) {
      const res = await server.fetch(`/v1/uploads/${created.uploadId}/parts/${n}`, {
        method: "PUT",
        token: native,
        body: bytes.subarray((n - 1) * created.partSize, n * created.partSize),
      });
      expect(res.status).toBe(200);
    }
    const completed = (await (
      await server.fetch(`/v1/uploads/${created.uploadId}/complete`, { method: "POST", token: native })
    ).json()) as any;
    const tus = await tusUpload(server, viaTus, bytes, {
      chunkSize: 7 * MiB,
      metadata: { filename: "same.bin", filetype: "application/octet-stream" },
    });
    const tusUploadId = tus.upload.url!.split("/").pop()!;
    const tusFileId = tus.fileLocation.split("/").pop()!;

    const usage = async (token: string) => (await (await server.fetch("/v1/usage", { token })).json()) as any;
    expect(await usage(viaTus)).toEqual(await usage(native));

    const rows = async (userId: string, uploadId: string, fileId: string) => {
      const upload = await eventually(
        async () =>
          (
            await server.d1(`SELECT * FROM multipart_uploads WHERE upload_id = '${uploadId}' AND status = 'completed'`)
          )[0],
      );
      const file = await eventually(async () => (await server.d1(`SELECT * FROM files WHERE id = '${fileId}'`))[0]);
      const quota = await eventually(
        async () =>
          (
            await server.d1(`SELECT * FROM user_quotas WHERE user_id = '${userId}' AND used_bytes = ${bytes.length}`)
          )[0],
      );
      const audit = await eventually(async () => {
        const found = await server.d1(
          `SELECT action, success, bytes_transferred FROM file_access_logs WHERE upload_id = '${uploadId}'
           ORDER BY action, bytes_transferred`,
        );
        return found.some((r) => r.action === "upload.complete") ? found : null;
      });
      const pick = (row: Record<string, unknown> | undefined, keys: string[]) =>
        Object.fromEntries(keys.map((k) => [k, row?.[k]]));
      return {
        upload: pick(upload, [
          "user_id",
          "filename",
          "mime_type",
          "total_size",
          "part_size",
          "parts_uploaded",
          "bytes_received",
          "status",
        ]),
        protocol: upload?.protocol,
        file: pick(file, [
          "user_id",
          "upload_id",
          "filename",
          "mime_type",
          "file_size",
          "checksum",
          "metadata",
          "status",
          "deleted_at",
        ]),
        quota: pick(quota, ["user_id", "limit_bytes", "used_bytes", "reserved_bytes", "file_count", "active_uploads"]),
        audit,
      };
    };
    const a = await rows("e2e-parity-native", created.uploadId, completed.file.id);
    const b = await rows("e2e-parity-tus", tusUploadId, tusFileId);
    expect(a.protocol).toBe("native");
    expect(b.protocol).toBe("tus");
    const anonymous = (r: typeof a) => ({
      ...r,
      protocol: undefined,
      upload: { ...r.upload, user_id: undefined },
      file: { ...r.file, user_id: undefined, upload_id: undefined },
      quota: { ...r.quota, user_id: undefined },
    });
    expect(anonymous(b)).toEqual(anonymous(a));
    expect(a.upload).toMatchObject({
      total_size: bytes.length,
      parts_uploaded: 3,
      bytes_received: bytes.length,
      status: "completed",
    });
    expect(a.file).toMatchObject({ file_size: bytes.length, status: "active" });
    expect(a.quota).toMatchObject({ used_bytes: bytes.length, reserved_bytes: 0, file_count: 1, active_uploads: 0 });
    expect(a.audit?.map((r) => r.action)).toEqual([
      "upload.complete",
      "upload.create",
      "upload.part",
      "upload.part",
      "upload.part",
    ]);
    expect((await download(server, viaTus, tus.fileLocation)).equals(bytes)).toBe(true);
  });
});
