// Resumable multipart uploads end to end: a real wrangler dev, real HTTP clients, real local D1/R2/DOs.
import { createHash, randomBytes } from "node:crypto";
import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DevServer, eventually, startDevServer } from "./harness.ts";

const MiB = 1024 * 1024;

/** Sends `sent` bytes of a body that declares `declared` bytes, then drops the connection. */
function cutOffPart(server: DevServer, path: string, token: string, bytes: Buffer, sent: number): Promise<void> {
  return new Promise((resolve) => {
    const url = new URL(path, server.url);
    const req = request(url, {
      method: "PUT",
      headers: { Authorization: `Bearer ${token}`, "Content-Length": String(bytes.length) },
    });
    req.on("error", () => resolve());
    req.on("response", (res) => {
      res.resume();
      res.on("end", () => resolve());
    });
    req.write(bytes.subarray(0, sent), () => {
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 300);
    });
  });
}

describe("resumable multipart upload through wrangler dev", () => {
  let server: DevServer;
  beforeAll(async () => {
    server = await startDevServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("64 MiB in parallel parts: survives a cut-off part, resumes, completes with sha256, matches D1", async () => {
    const token = await server.token("e2e-big");
    const bytes = randomBytes(64 * MiB);
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    const json = async (res: Response) => ({ status: res.status, body: (await res.json()) as any });

    const before = await json(await server.fetch("/v1/usage", { token }));
    expect(before.body).toMatchObject({ usedBytes: 0, reservedBytes: 0, fileCount: 0 });

    const created = await json(
      await server.fetch("/v1/uploads", {
        method: "POST",
        token,
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          filename: "big.bin",
          size: bytes.length,
          sha256,
          contentType: "application/octet-stream",
        }),
      }),
    );
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ partSize: 8 * MiB, partCount: 8 });
    const { uploadId } = created.body;
    const part = (n: number) => bytes.subarray((n - 1) * 8 * MiB, n * 8 * MiB);

    // Parts 1..8, four at a time; part 5 is cut off half-way through by a dropped connection.
    const queue = [1, 2, 3, 4, 5, 6, 7, 8];
    const results = new Map<number, number>();
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let n = queue.shift(); n !== undefined; n = queue.shift()) {
          if (n === 5) {
            await cutOffPart(server, `/v1/uploads/${uploadId}/parts/5`, token, part(5), 3 * MiB);
            continue;
          }
          const res = await server.fetch(`/v1/uploads/${uploadId}/parts/${n}`, { method: "PUT", token, body: part(n) });
          results.set(n, res.status);
          await res.arrayBuffer();
        }
      }),
    );
    expect([...results.values()].every((s) => s === 200)).toBe(true);

    // The client asks what the server has and re-sends only what is missing.
    const status = await json(await server.fetch(`/v1/uploads/${uploadId}`, { token }));
    expect(status.body.missingParts).toEqual([5]);
    expect(status.body.bytesReceived).toBe(56 * MiB);
    for (const n of status.body.missingParts as number[]) {
      const res = await server.fetch(`/v1/uploads/${uploadId}/parts/${n}`, { method: "PUT", token, body: part(n) });
      expect(res.status).toBe(200);
    }

    const done = await json(await server.fetch(`/v1/uploads/${uploadId}/complete`, { method: "POST", token }));
    expect(done.status).toBe(200);
    expect(done.body.file).toMatchObject({ size: bytes.length, sha256, filename: "big.bin" });
    const fileId = done.body.file.id;

    const download = await server.fetch(`/v1/files/${fileId}/content`, { token });
    expect(download.status).toBe(200);
    const stored = Buffer.from(await download.arrayBuffer());
    expect(stored.length).toBe(bytes.length);
    expect(stored.equals(bytes)).toBe(true);

    const after = await json(await server.fetch("/v1/usage", { token }));
    expect(after.body).toMatchObject({ usedBytes: bytes.length, reservedBytes: 0, fileCount: 1, activeUploads: 0 });

    // D1 converges to what the objects say.
    const uploadRow = await eventually(
      async () =>
        (
          await server.d1(`SELECT * FROM multipart_uploads WHERE upload_id = '${uploadId}' AND status = 'completed'`)
        )[0],
    );
    expect(uploadRow).toMatchObject({
      file_id: fileId,
      user_id: "e2e-big",
      total_size: bytes.length,
      parts_uploaded: 8,
      bytes_received: bytes.length,
    });
    const fileRow = await eventually(async () => (await server.d1(`SELECT * FROM files WHERE id = '${fileId}'`))[0]);
    expect(fileRow).toMatchObject({
      user_id: "e2e-big",
      file_size: bytes.length,
      checksum: sha256,
      status: "active",
      r2_key: `u/e2e-big/${fileId}`,
    });
    const quotaRow = await eventually(
      async () =>
        (await server.d1(`SELECT * FROM user_quotas WHERE user_id = 'e2e-big' AND used_bytes = ${bytes.length}`))[0],
    );
    expect(quotaRow).toMatchObject({
      used_bytes: after.body.usedBytes,
      reserved_bytes: 0,
      file_count: 1,
      active_uploads: 0,
    });
    const audit = await server.d1(
      `SELECT action, COUNT(*) AS n FROM file_access_logs WHERE upload_id = '${uploadId}' AND success = 1
         GROUP BY action ORDER BY action`,
    );
    expect(audit).toEqual([
      { action: "upload.complete", n: 1 },
      { action: "upload.create", n: 1 },
      { action: "upload.part", n: 8 },
    ]);
  });

  it("lets exactly 10 of 50 simultaneous creates in when the quota fits 10", async () => {
    // The user's quota fits exactly 10 uploads of this size. This server keeps the default TTL (24 h): under
    // the 2 s TTL of the expiry test below, an upload created first could expire on a busy machine before
    // the last of the 50 is admitted, and free its reservation for an 11th.
    const size = 6 * MiB;
    const override = await fetch(`${server.url}/v1/admin/users/e2e-stampede`, {
      method: "PUT",
      headers: { Authorization: `Bearer ${server.adminToken}`, "Content-Type": "application/json" },
      body: JSON.stringify({ quotaBytes: 10 * size }),
    });
    expect(override.status).toBe(200);
    const token = await server.token("e2e-stampede");
    const responses = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        server.fetch("/v1/uploads", {
          method: "POST",
          token,
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ filename: `f${i}.bin`, size }),
        }),
      ),
    );
    const bodies = await Promise.all(responses.map((r) => r.json() as Promise<any>));
    const statuses = responses.map((r) => r.status);
    expect(statuses.filter((s) => s === 201)).toHaveLength(10);
    expect(statuses.filter((s) => s === 413)).toHaveLength(40);
    expect(bodies.filter((b) => b.error).every((b) => b.error.code === "quota_exceeded")).toBe(true);
    const usage = (await (await server.fetch("/v1/usage", { token })).json()) as any;
    expect(usage).toMatchObject({ reservedBytes: 10 * size, usedBytes: 0, activeUploads: 10 });
  });
});

describe("expiry through wrangler dev", () => {
  let server: DevServer;
  beforeAll(async () => {
    server = await startDevServer({ vars: { UPLOAD_TTL_SECONDS: 2 } });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("expires an idle upload after its TTL: reservation released, then 410", async () => {
    const token = await server.token("e2e-idle");
    const res = await server.fetch("/v1/uploads", {
      method: "POST",
      token,
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ filename: "idle.bin", size: 1000 }),
    });
    const { uploadId } = (await res.json()) as any;
    // Nobody touches the upload: only its own alarm can expire it.
    const expired = await eventually(async () => {
      const rows = await server.d1(`SELECT status FROM multipart_uploads WHERE upload_id = '${uploadId}'`);
      return rows[0]?.status === "expired";
    });
    expect(expired).toBe(true);
    const usage = (await (await server.fetch("/v1/usage", { token })).json()) as any;
    expect(usage).toMatchObject({ reservedBytes: 0, activeUploads: 0 });
    const part = await server.fetch(`/v1/uploads/${uploadId}/parts/1`, {
      method: "PUT",
      token,
      body: randomBytes(1000),
    });
    expect(part.status).toBe(410);
    expect(((await part.json()) as any).error.code).toBe("upload_expired");
  });
});
