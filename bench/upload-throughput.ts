// Benchmark: native multipart upload throughput and the Worker runtime's memory while uploading files of
// growing size through a real `wrangler dev` (local R2, D1, Durable Objects).
//   npm run bench                      # 64 MiB, 256 MiB, 1 GiB with 4 parts in flight
//   npm run bench -- --sizes 64,512 --concurrency 8
// Prints, per file size: wall time, MiB/s, and workerd's resident memory (idle, peak while uploading, and after
// the parts, the completion and the verifying download). If bytes
// were buffered anywhere, peak memory would grow with the file size; streaming keeps it flat.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { startDevServer } from "../test/e2e/harness.ts";

const MiB = 1024 * 1024;
const { values } = parseArgs({
  options: { sizes: { type: "string", default: "64,256,1024" }, concurrency: { type: "string", default: "4" } },
});
const sizesMiB = values.sizes.split(",").map(Number);
const concurrency = Number(values.concurrency);

/** Resident memory (bytes) of every workerd process under the server's process group. */
function workerdRss(groupId: number): number {
  let total = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const pgrp = Number(fields[2]);
      if (pgrp !== groupId || !stat.includes("(workerd)")) continue;
      const status = readFileSync(`/proc/${entry}/status`, "utf8");
      total += Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
    } catch {
      // the process ended while we looked
    }
  }
  return total;
}

/** Part `n` of a synthetic file: a random block stamped with its number, so parts differ. */
function makePart(block: Uint8Array, n: number, size: number): Uint8Array<ArrayBuffer> {
  const part = new Uint8Array(size);
  part.set(block.subarray(0, size));
  new DataView(part.buffer).setUint32(0, n);
  return part;
}

const server = await startDevServer({
  vars: { DEFAULT_QUOTA_BYTES: 64 * 1024 * MiB, MAX_FILE_SIZE_BYTES: 64 * 1024 * MiB },
});
try {
  const token = await server.token("bench-user");
  const block = (await import("node:crypto")).randomBytes(8 * MiB);
  console.log(`durable-uploads upload benchmark: wrangler dev on ${server.url}, ${concurrency} parts in flight`);
  console.log(
    "size_MiB  parts  seconds  MiB_per_s  rss_idle  rss_peak  after_parts  after_complete  after_download" +
      "  (RSS in MiB)",
  );
  for (const sizeMiB of sizesMiB) {
    const size = sizeMiB * MiB;
    const idle = workerdRss(server.pid);
    let peak = idle;
    const sampler = setInterval(() => (peak = Math.max(peak, workerdRss(server.pid))), 50);
    const started = performance.now();
    const created = (await (
      await server.fetch("/v1/uploads", {
        method: "POST",
        token,
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ filename: `bench-${sizeMiB}.bin`, size }),
      })
    ).json()) as { uploadId: string; partSize: number; partCount: number };
    const { uploadId, partSize, partCount } = created;
    const sizeOf = (n: number) => (n < partCount ? partSize : size - partSize * (partCount - 1));
    let next = 1;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        for (let n = next++; n <= partCount; n = next++) {
          const res = await server.fetch(`/v1/uploads/${uploadId}/parts/${n}`, {
            method: "PUT",
            token,
            body: makePart(block, n, sizeOf(n)),
          });
          if (res.status !== 200) throw new Error(`part ${n}: ${res.status} ${await res.text()}`);
          await res.arrayBuffer();
        }
      }),
    );
    const afterParts = workerdRss(server.pid);
    const done = await server.fetch(`/v1/uploads/${uploadId}/complete`, { method: "POST", token });
    if (done.status !== 200) throw new Error(`complete: ${done.status} ${await done.text()}`);
    const seconds = (performance.now() - started) / 1000;
    clearInterval(sampler);
    const afterComplete = workerdRss(server.pid);
    // Verify the stored bytes once (outside the timing): same hash as the parts sent, in order.
    const { file } = (await done.json()) as { file: { id: string } };
    const expected = createHash("sha256");
    for (let n = 1; n <= partCount; n++) expected.update(makePart(block, n, sizeOf(n)));
    const got = createHash("sha256");
    const download = await server.fetch(`/v1/files/${file.id}/content`, { token });
    for await (const chunk of download.body as unknown as AsyncIterable<Uint8Array>) got.update(chunk);
    if (got.digest("hex") !== expected.digest("hex")) throw new Error("stored bytes differ from the bytes sent");
    const afterDownload = workerdRss(server.pid);
    await server.fetch(`/v1/files/${file.id}`, { method: "DELETE", token });
    console.log(
      [
        sizeMiB,
        partCount,
        seconds.toFixed(2),
        (sizeMiB / seconds).toFixed(1),
        ...[idle, peak, afterParts, afterComplete, afterDownload].map((b) => (b / MiB).toFixed(0)),
      ]
        .map((v) => String(v).padStart(8))
        .join("  "),
    );
  }
} finally {
  await server.stop();
}
