// Benchmark: `durable-uploads migrate run` throughput against a real `wrangler dev` (local R2, D1,
// Durable Objects), for many small files and for a few large ones, as files/s and MiB/s.
//   node bench/migrate-throughput.ts                                  # 400 × 4 KiB, 8 × 64 MiB, 4 owners
//   node bench/migrate-throughput.ts --small 1000 --large 4 --concurrency 8 --parallel 4
// Each figure is the CLI's own measure of its run (the report's `invocation`), so it includes hashing,
// token minting, the journal's fsyncs and the server's SHA-256 check at completion.
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { run, startDevServer } from "../test/e2e/harness.ts";

const MiB = 1024 * 1024;
const CLI = resolve(import.meta.dirname, "../cli/main.ts");
const { values } = parseArgs({
  options: {
    small: { type: "string", default: "400" },
    "small-size": { type: "string", default: "4096" },
    large: { type: "string", default: "8" },
    "large-mib": { type: "string", default: "64" },
    owners: { type: "string", default: "4" },
    concurrency: { type: "string", default: "4" },
    parallel: { type: "string", default: "2" },
  },
});
const owners = Array.from({ length: Number(values.owners) }, (_, i) => `bench-owner-${i}`);

/** `count` files of `size` bytes spread over the owners, under `root/<owner>/batch/…`. */
function makeTree(root: string, count: number, size: number): void {
  const block = randomBytes(Math.min(size, 8 * MiB));
  for (let i = 0; i < count; i++) {
    const dir = join(root, owners[i % owners.length], `batch ${i % 7}`);
    mkdirSync(dir, { recursive: true });
    const content = Buffer.alloc(size);
    for (let offset = 0; offset < size; offset += block.length) block.copy(content, offset);
    if (size >= 4) content.writeUInt32BE(i, 0); // every file differs
    writeFileSync(join(dir, `file ${i}.bin`), content);
  }
}

const server = await startDevServer({ vars: { DEFAULT_QUOTA_BYTES: 1024 * 1024 * MiB } });
const work = mkdtempSync(join(tmpdir(), "durable-uploads-bench-"));
try {
  const env = {
    DURABLE_UPLOADS_URL: server.url,
    DURABLE_UPLOADS_ADMIN_TOKEN: server.adminToken,
    DURABLE_UPLOADS_JOURNAL_DIR: join(work, "journals"),
  };
  const cases = [
    { name: "small", count: Number(values.small), size: Number(values["small-size"]) },
    { name: "large", count: Number(values.large), size: Number(values["large-mib"]) * MiB },
  ];
  console.log(
    `durable-uploads migrate benchmark: wrangler dev on ${server.url}, ${owners.length} owners, ` +
      `--concurrency ${values.concurrency} --parallel ${values.parallel}`,
  );
  console.log("case    files  file_size   MiB    seconds  files_per_s  MiB_per_s");
  for (const c of cases) {
    if (c.count === 0) continue;
    const root = join(work, c.name);
    makeTree(root, c.count, c.size);
    const args = ["migrate", "run", root, "--run-id", `bench-${c.name}`, "--json", "--no-progress"];
    args.push("--concurrency", values.concurrency, "--parallel", values.parallel);
    const result = await run(process.execPath, [CLI, ...args], { env });
    if (result.code !== 0) throw new Error(`migrate run failed (${result.code}):\n${result.stderr}`);
    const { invocation } = JSON.parse(result.stdout) as {
      invocation: { seconds: number; files: number; bytes: number; filesPerSecond: number; mibPerSecond: number };
    };
    console.log(
      [
        c.name.padEnd(6),
        String(invocation.files).padStart(5),
        (c.size >= MiB ? `${c.size / MiB} MiB` : `${c.size} B`).padStart(9),
        (invocation.bytes / MiB).toFixed(1).padStart(7),
        invocation.seconds.toFixed(1).padStart(9),
        invocation.filesPerSecond.toFixed(2).padStart(11),
        invocation.mibPerSecond.toFixed(2).padStart(10),
      ].join("  "),
    );
  }
} finally {
  await server.stop();
  rmSync(work, { recursive: true, force: true });
}
