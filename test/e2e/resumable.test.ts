// Resumable Uploads for HTTP end to end: tus-js-client 4 with `protocol: "ietf-draft-05"` (interop version 6)
// against a real wrangler dev with local R2, D1 and Durable Objects. Every upload is downloaded back and
// compared byte for byte; the same file through the native API, tus and the draft leaves the same usage
// and the same D1 rows.
import { randomBytes } from "node:crypto";
import { type HttpRequest, Upload, type UploadOptions } from "tus-js-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DevServer, eventually, startDevServer } from "./harness.ts";

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The D1 columns that must be the same whichever front door a file came through. */
const UPLOAD_COLUMNS = [
  "filename",
  "mime_type",
  "total_size",
  "part_size",
  "parts_uploaded",
  "bytes_received",
  "status",
];
const FILE_COLUMNS = ["filename", "mime_type", "file_size", "checksum", "metadata", "status", "deleted_at"];
const QUOTA_COLUMNS = ["limit_bytes", "used_bytes", "reserved_bytes", "file_count", "active_uploads"];
const AUDIT_COLUMNS = ["upload_id", "action", "success", "bytes_transferred"];

/** tus-js-client 4 speaks the draft when told `protocol`, an option its type declarations do not list. */
type WithProtocol = UploadOptions & { protocol?: "tus-v1" | "ietf-draft-03" | "ietf-draft-05" };

interface Done {
  upload: Upload;
  /** The Upload-File-Location of the last response. */
  fileLocation: string;
  /** Method, interop version, Upload-Offset, Upload-Complete and status of every request the client sent. */
  requests: {
    method: string;
    version: string | undefined;
    offset: string | undefined;
    complete: string | undefined;
    status: number;
  }[];
}

/** Runs one tus-js-client upload to its end, through `endpoint` with `protocol`. */
function clientUpload(
  server: DevServer,
  token: string,
  input: Buffer,
  options: Partial<UploadOptions> = {},
  endpoint = "/v1/resumable",
): Promise<Done> {
  const requests: Done["requests"] = [];
  return new Promise((resolve, reject) => {
    const opts: WithProtocol = {
      endpoint: `${server.url}${endpoint}`,
      protocol: endpoint === "/v1/resumable" ? "ietf-draft-05" : "tus-v1",
      headers: { Authorization: `Bearer ${token}` },
      retryDelays: [0, 500, 1000, 2000],
      ...options,
      onAfterResponse: (req: HttpRequest, res) => {
        requests.push({
          method: req.getMethod(),
          version: req.getHeader("Upload-Draft-Interop-Version"),
          offset: req.getHeader("Upload-Offset"),
          complete: req.getHeader("Upload-Complete"),
          status: res.getStatus(),
        });
      },
      onSuccess: ({ lastResponse }) => {
        const fileLocation = lastResponse.getHeader("Upload-File-Location");
        if (!fileLocation)
          reject(new Error(`no Upload-File-Location on the last response (${lastResponse.getStatus()})`));
        else resolve({ upload, fileLocation, requests });
      },
      onError: reject,
    };
    const upload = new Upload(input, opts);
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

describe("tus-js-client (ietf-draft-05) through wrangler dev", () => {
  let server: DevServer;
  beforeAll(async () => {
    server = await startDevServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("uploads an empty file and a 1-byte file", async () => {
    const token = await server.token("e2e-rufh-small");
    const empty = await clientUpload(server, token, Buffer.alloc(0), {
      metadata: { filename: "empty.txt", filetype: "text/plain" },
    });
    expect(empty.requests).toEqual([{ method: "POST", version: "6", offset: undefined, complete: "?0", status: 201 }]);
    expect((await download(server, token, empty.fileLocation)).length).toBe(0);
    const meta = (await (await server.fetch(empty.fileLocation, { token })).json()) as any;
    expect(meta).toMatchObject({ filename: "empty.txt", contentType: "text/plain", size: 0 });

    const one = Buffer.from([0x2a]);
    const single = await clientUpload(server, token, one, { metadata: { filename: "one.bin" } });
    expect(single.requests).toEqual([
      { method: "POST", version: "6", offset: undefined, complete: "?0", status: 201 },
      { method: "PATCH", version: "6", offset: "0", complete: "?1", status: 200 },
    ]);
    expect((await download(server, token, single.fileLocation)).equals(one)).toBe(true);
    const usage = (await (await server.fetch("/v1/usage", { token })).json()) as any;
    expect(usage).toMatchObject({ usedBytes: 1, reservedBytes: 0, fileCount: 2, activeUploads: 0 });
  });

  it("uploads 40 MiB in 7 MiB chunks against 8 MiB parts, byte for byte", async () => {
    const token = await server.token("e2e-rufh-big");
    const bytes = randomBytes(40 * MiB);
    const started = performance.now();
    const done = await clientUpload(server, token, bytes, {
      chunkSize: 7 * MiB,
      metadata: { filename: "big.bin", filetype: "application/octet-stream" },
    });
    const seconds = (performance.now() - started) / 1000;
    console.log(JSON.stringify({ measured: "draft 40 MiB upload", seconds: Number(seconds.toFixed(2)) }));
    const patches = done.requests.filter((r) => r.method === "PATCH");
    expect(patches.map((r) => r.complete)).toEqual(["?0", "?0", "?0", "?0", "?0", "?1"]);
    expect(done.requests.every((r) => r.status < 300 && r.version === "6")).toBe(true);
    const stored = await download(server, token, done.fileLocation);
    expect(stored.length).toBe(bytes.length);
    expect(stored.equals(bytes)).toBe(true);
    // The session, through the native view (an HTTP call; D1 through wrangler costs seconds): five 8 MiB parts.
    const uploadId = done.upload.url!.split("/").pop();
    const view = (await (await server.fetch(`/v1/uploads/${uploadId}`, { token })).json()) as any;
    expect(view).toMatchObject({
      status: "completed",
      size: bytes.length,
      partSize: 8 * MiB,
      bytesReceived: bytes.length,
    });
    expect(view.parts.map((p: { size: number }) => p.size)).toEqual(Array(5).fill(8 * MiB));
  });

  it("resumes an upload aborted half-way, from its URL, with a new client", async () => {
    const token = await server.token("e2e-rufh-resume");
    const bytes = randomBytes(40 * MiB);
    const options: WithProtocol = {
      endpoint: `${server.url}/v1/resumable`,
      protocol: "ietf-draft-05",
      headers: { Authorization: `Bearer ${token}` },
      chunkSize: 7 * MiB,
      retryDelays: [],
    };
    // The first client stops in the middle of an append once 20 MiB have gone out.
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
    expect(url).toMatch(/\/v1\/resumable\/[0-9a-f-]{36}$/);
    await sleep(500);
    const head = await fetch(url, {
      method: "HEAD",
      headers: { Authorization: `Bearer ${token}`, "Upload-Draft-Interop-Version": "8" },
    });
    expect(head.status).toBe(204);
    expect(head.headers.get("Upload-Complete")).toBe("?0");
    const offset = Number(head.headers.get("Upload-Offset"));
    expect(offset).toBeGreaterThanOrEqual(14 * MiB);
    expect(offset).toBeLessThan(bytes.length);

    const resumed = await clientUpload(server, token, bytes, { uploadUrl: url, chunkSize: 7 * MiB });
    expect(resumed.requests[0]).toMatchObject({ method: "HEAD", status: 204 });
    const firstPatch = resumed.requests.find((r) => r.method === "PATCH")!;
    expect(Number(firstPatch.offset)).toBe(offset);
    // The aborted append gave its lease back as soon as its body broke off: the new client was never
    // locked out.
    expect(resumed.requests.filter((r) => r.status === 423)).toEqual([]);
    expect((await download(server, token, resumed.fileLocation)).equals(bytes)).toBe(true);
    const usage = (await (await server.fetch("/v1/usage", { token })).json()) as any;
    expect(usage).toMatchObject({ usedBytes: bytes.length, reservedBytes: 0, activeUploads: 0 });
  });

  it("leaves the same usage and D1 rows as the native API and tus for the same file", async () => {
    const bytes = randomBytes(20 * MiB + 5);
    const native = await server.token("e2e-rufh-parity-native");
    const viaTus = await server.token("e2e-rufh-parity-tus");
    const viaDraft = await server.token("e2e-rufh-parity-draft");

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
    const metadata = { filename: "same.bin", filetype: "application/octet-stream" };
    const tus = await clientUpload(server, viaTus, bytes, { chunkSize: 7 * MiB, metadata }, "/v1/tus");
    const draft = await clientUpload(server, viaDraft, bytes, { chunkSize: 7 * MiB, metadata });

    const usage = async (token: string) => (await (await server.fetch("/v1/usage", { token })).json()) as any;
    expect(await usage(viaDraft)).toEqual(await usage(native));
    expect(await usage(viaTus)).toEqual(await usage(native));

    const idOf = (location: string) => location.split("/").pop()!;
    const subjects = [
      { userId: "e2e-rufh-parity-native", uploadId: created.uploadId as string, fileId: completed.file.id as string },
      { userId: "e2e-rufh-parity-tus", uploadId: idOf(tus.upload.url!), fileId: idOf(tus.fileLocation) },
      { userId: "e2e-rufh-parity-draft", uploadId: idOf(draft.upload.url!), fileId: idOf(draft.fileLocation) },
    ];
    // The rows of the three uploads in one query (each `d1()` is a wrangler process: seconds, not ms).
    const list = (key: "userId" | "uploadId" | "fileId") => subjects.map((x) => `'${x[key]}'`).join(", ");
    const json = (table: string, columns: string[], where: string) =>
      `(SELECT json_group_array(json_object(${columns.map((c) => `'${c}', ${c}`).join(", ")}))
        FROM (SELECT * FROM ${table} WHERE ${where}))`;
    type Row = Record<string, unknown>;
    const ids = { uploads: list("uploadId"), files: list("fileId"), users: list("userId") };
    const uploadsSql = json(
      "multipart_uploads",
      ["upload_id", "protocol", ...UPLOAD_COLUMNS],
      `upload_id IN (${ids.uploads}) AND status = 'completed'`,
    );
    const filesSql = json("files", ["id", ...FILE_COLUMNS], `id IN (${ids.files})`);
    const quotasSql = json(
      "user_quotas",
      ["user_id", ...QUOTA_COLUMNS],
      `user_id IN (${ids.users}) AND used_bytes = ${bytes.length}`,
    );
    const auditsSql = json(
      "file_access_logs",
      AUDIT_COLUMNS,
      `upload_id IN (${ids.uploads}) ORDER BY upload_id, action, bytes_transferred`,
    );
    const sql = `SELECT ${uploadsSql} AS uploads, ${filesSql} AS files, ${quotasSql} AS quotas, ${auditsSql} AS audits`;
    const found = await eventually(async () => {
      const [row] = await server.d1(sql);
      const parsed = Object.fromEntries(
        ["uploads", "files", "quotas", "audits"].map((k) => [k, JSON.parse(String(row?.[k] ?? "[]")) as Row[]]),
      );
      const complete =
        parsed.uploads.length === 3 &&
        parsed.files.length === 3 &&
        parsed.quotas.length === 3 &&
        parsed.audits.filter((r) => r.action === "upload.complete").length === 3;
      return complete ? parsed : null;
    });
    if (!found) throw new Error("the three uploads' D1 rows never all landed");
    const { uploads, files, quotas, audits } = found;
    const pick = (row: Record<string, unknown> | undefined, keys: string[]) =>
      Object.fromEntries(keys.map((k) => [k, row?.[k]]));
    const rows = ({ userId, uploadId, fileId }: (typeof subjects)[number]) => {
      const upload = uploads.find((r) => r.upload_id === uploadId);
      return {
        upload: pick(upload, UPLOAD_COLUMNS),
        protocol: upload?.protocol,
        file: pick(
          files.find((r) => r.id === fileId),
          FILE_COLUMNS,
        ),
        quota: pick(
          quotas.find((r) => r.user_id === userId),
          QUOTA_COLUMNS,
        ),
        audit: audits
          .filter((r) => r.upload_id === uploadId)
          .map(({ action, success, bytes_transferred }) => ({ action, success, bytes_transferred })),
      };
    };
    const [a, b, c] = subjects.map(rows);
    // The one documented difference: a draft upload is a tus session inside, and its row says so.
    expect([a.protocol, b.protocol, c.protocol]).toEqual(["native", "tus", "tus"]);
    const anonymous = (r: typeof a) => ({ ...r, protocol: undefined });
    expect(anonymous(c)).toEqual(anonymous(a));
    expect(anonymous(b)).toEqual(anonymous(a));
    expect(a.upload).toMatchObject({ total_size: bytes.length, parts_uploaded: 3, status: "completed" });
    expect(a.quota).toMatchObject({ used_bytes: bytes.length, reserved_bytes: 0, file_count: 1, active_uploads: 0 });
    expect(a.audit?.map((r) => r.action)).toEqual([
      "upload.complete",
      "upload.create",
      "upload.part",
      "upload.part",
      "upload.part",
    ]);
    expect((await download(server, viaDraft, draft.fileLocation)).equals(bytes)).toBe(true);
  });
});
