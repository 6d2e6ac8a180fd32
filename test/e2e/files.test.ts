// The life of a file end to end, with its audit trail: create → parts → complete → download (whole and a
// range) → link → link download without a token → delete, through a real wrangler dev.
import { createHash, randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DevServer, startDevServer } from "./harness.ts";

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("files end to end", () => {
  let server: DevServer;
  beforeAll(async () => {
    server = await startDevServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("serves, links and deletes a file, auditing every step with its byte count", async () => {
    const token = await server.token("e2e-files");
    const bytes = randomBytes(9 * MiB + 17);
    const created = (await (
      await server.fetch("/v1/uploads", {
        method: "POST",
        token,
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ filename: "résumé 2026.pdf", size: bytes.length, contentType: "application/pdf" }),
      })
    ).json()) as any;
    const { uploadId, partSize } = created;
    for (let n = 1; n <= created.partCount; n++) {
      const res = await server.fetch(`/v1/uploads/${uploadId}/parts/${n}`, {
        method: "PUT",
        token,
        body: bytes.subarray((n - 1) * partSize, n * partSize),
      });
      expect(res.status).toBe(200);
    }
    const { file } = (await (
      await server.fetch(`/v1/uploads/${uploadId}/complete`, { method: "POST", token })
    ).json()) as any;

    const whole = await server.fetch(`/v1/files/${file.id}/content`, { token });
    expect(whole.status).toBe(200);
    expect(whole.headers.get("content-length")).toBe(String(bytes.length));
    expect(whole.headers.get("content-disposition")).toContain("filename*=UTF-8''r%C3%A9sum%C3%A9%202026.pdf");
    expect(
      createHash("sha256")
        .update(Buffer.from(await whole.arrayBuffer()))
        .digest("hex"),
    ).toBe(createHash("sha256").update(bytes).digest("hex"));

    const ranged = await server.fetch(`/v1/files/${file.id}/content`, {
      token,
      headers: { Range: "bytes=8388600-8388615" },
    });
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get("content-range")).toBe(`bytes 8388600-8388615/${bytes.length}`);
    expect(Buffer.from(await ranged.arrayBuffer()).equals(bytes.subarray(8388600, 8388616))).toBe(true);

    const link = (await (
      await server.fetch(`/v1/files/${file.id}/links`, {
        method: "POST",
        token,
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ expiresIn: 300 }),
      })
    ).json()) as any;
    const viaLink = await fetch(link.url, { headers: { Range: "bytes=-100" } });
    expect(viaLink.status).toBe(206);
    expect(Buffer.from(await viaLink.arrayBuffer()).equals(bytes.subarray(bytes.length - 100))).toBe(true);
    const deleteViaLink = await fetch(link.url, { method: "DELETE" });
    expect(deleteViaLink.status).toBe(405);

    const del = await server.fetch(`/v1/files/${file.id}`, { method: "DELETE", token });
    expect(del.status).toBe(204);
    expect((await fetch(link.url)).status).toBe(404);
    const usage = (await (await server.fetch("/v1/usage", { token })).json()) as any;
    expect(usage).toMatchObject({ usedBytes: 0, reservedBytes: 0, fileCount: 0 });

    // The audit trail, newest first through the API, with byte counts.
    let events: any[] = [];
    for (let i = 0; i < 50; i++) {
      events = ((await (await server.fetch("/v1/audit?limit=100", { token })).json()) as any).events;
      if (events.some((e) => e.action === "file.delete") && events.some((e) => e.action === "file.link_download"))
        break;
      await sleep(200);
    }
    const successful = (action: string) => events.filter((e) => e.action === action && e.success);
    expect(successful("upload.create")).toHaveLength(1);
    expect(
      successful("upload.part")
        .map((e) => e.bytesTransferred)
        .sort((a, b) => a - b),
    ).toEqual([MiB + 17, 8 * MiB]);
    expect(successful("upload.complete")[0].bytesTransferred).toBe(bytes.length);
    expect(
      successful("file.download")
        .map((e) => e.bytesTransferred)
        .sort((a, b) => a - b),
    ).toEqual([16, bytes.length]);
    expect(successful("file.link")).toHaveLength(1);
    expect(successful("file.link_download").map((e) => e.bytesTransferred)).toEqual([100]);
    expect(successful("file.delete").map((e) => e.bytesTransferred)).toEqual([bytes.length]);
    const timestamps = events.map((e) => Date.parse(e.timestamp));
    expect([...timestamps].sort((a, b) => b - a)).toEqual(timestamps);
  });
});
