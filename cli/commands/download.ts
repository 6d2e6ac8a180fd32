// `durable-uploads download <fileId> [-o path]`: streams a file to disk and resumes a partial download
// with a Range request (guarded by If-Range, so a replaced object restarts instead of splicing).
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { readFile, rename, rm, stat } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Command } from "commander";
import { requireToken } from "../config.ts";
import { apiClient, type CommandContext } from "../context.ts";
import { CliError, EXIT, interrupted } from "../output.ts";
import { Progress } from "../progress.ts";
import { writeFileAtomic } from "../resume-state.ts";
import { getFile } from "../server-api.ts";
import { formatBytes } from "../units.ts";
import type { Action } from "./action.ts";

interface DownloadOptions {
  output?: string;
  force?: boolean;
}

/** What the `.part` file holds, so a later run only appends to bytes of the same object. */
interface PartialRecord {
  fileId: string;
  etag: string | null;
  size: number;
}

/** Adds the command(s) of this module to the program. */
export function registerDownload(program: Command, action: Action): void {
  program
    .command("download")
    .description("download a file (resumes a partial download when run again)")
    .argument("<fileId>", "file id")
    .option("-o, --output <path>", "where to write (a directory keeps the file's name; default: ./<filename>)")
    .option("-f, --force", "overwrite an existing file")
    .action(action((ctx, fileId: string, options: DownloadOptions) => download(ctx, fileId, options)));
}

async function exists(path: string): Promise<{ isDirectory(): boolean; size: number } | null> {
  return stat(path).catch(() => null);
}

async function download(ctx: CommandContext, fileId: string, options: DownloadOptions): Promise<number> {
  const api = apiClient(ctx, requireToken(ctx.config));
  const file = await getFile(api, fileId);
  if (!file) throw new CliError("not_found", `no such file: ${fileId}`);

  // The server's name is display-only; keep its last segment so it can never point elsewhere.
  const safeName = basename(file.filename) || "download";
  let target = resolve(options.output ?? safeName);
  if ((await exists(target))?.isDirectory()) target = join(target, safeName);
  if ((await exists(target)) && !options.force) {
    throw new CliError("file_exists", `${target} exists; pass --force to overwrite`, { exitCode: EXIT.usage });
  }
  const partial = `${target}.part`;
  const sidecar = `${partial}.json`;

  // Resume only onto bytes of this very object (same id, same etag).
  let offset = 0;
  try {
    const record = JSON.parse(await readFile(sidecar, "utf8")) as PartialRecord;
    const have = await exists(partial);
    if (
      have &&
      record.fileId === file.id &&
      record.etag === file.etag &&
      record.size === file.size &&
      have.size <= file.size
    ) {
      offset = have.size;
    }
  } catch {
    // no partial download to resume
  }
  writeFileAtomic(
    sidecar,
    JSON.stringify({ fileId: file.id, etag: file.etag, size: file.size } satisfies PartialRecord),
  );

  const progress = new Progress(ctx.out, { title: "download", totalBytes: file.size });
  const bar = progress.file(safeName, file.size, offset);
  try {
    if (offset < file.size) {
      const headers: Record<string, string> = {};
      if (offset > 0) {
        headers.Range = `bytes=${offset}-`;
        if (file.etag) headers["If-Range"] = `"${file.etag}"`;
      }
      const res = await api.call(`/v1/files/${encodeURIComponent(file.id)}/content`, { headers });
      if (res.status === 200 && offset > 0) {
        // The server ignored the Range (the object changed): start over.
        bar.add(-offset);
        offset = 0;
      }
      const body = Readable.fromWeb(res.body as import("node:stream/web").ReadableStream<Uint8Array>);
      body.on("data", (chunk: Buffer) => bar.add(chunk.length));
      await pipeline(body, createWriteStream(partial, { flags: offset > 0 ? "a" : "w" }), { signal: ctx.signal });
    }
    bar.finish(true);
  } catch (err) {
    bar.finish(false);
    if (ctx.signal.aborted) throw interrupted("run the same command again to resume");
    throw err;
  } finally {
    progress.stop();
  }

  const written = (await stat(partial)).size;
  if (written !== file.size) {
    throw new CliError("size_mismatch", `got ${written} bytes, expected ${file.size}; run again to resume`);
  }
  let verified = false;
  if (file.sha256) {
    const hash = createHash("sha256");
    for await (const chunk of createReadStream(partial)) hash.update(chunk as Buffer);
    const actual = hash.digest("hex");
    if (actual !== file.sha256) {
      await rm(partial, { force: true });
      await rm(sidecar, { force: true });
      throw new CliError("checksum_mismatch", `the downloaded bytes hash to ${actual}, the server says ${file.sha256}`);
    }
    verified = true;
  }
  await rename(partial, target);
  await rm(sidecar, { force: true });
  ctx.out.info(
    `downloaded ${file.filename} (${formatBytes(file.size)})${verified ? ", sha256 verified" : ""} → ${target}`,
  );
  ctx.out.result({ fileId: file.id, path: target, size: file.size, sha256: file.sha256 ?? null, verified }, target);
  return EXIT.ok;
}
