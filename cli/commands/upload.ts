// `durable-uploads upload <file…>`: native multipart uploads that resume where they stopped.
import { stat } from "node:fs/promises";
import { basename, resolve } from "node:path";
import type { Command } from "commander";
import { ApiError, isAbort } from "../api-client.ts";
import { requireToken, tokenSubject } from "../config.ts";
import { contentTypeFor, MEDIA_TYPE } from "../content-type.ts";
import { apiClient, type CommandContext } from "../context.ts";
import { sha256File } from "../file-hash.ts";
import {
  createUploadOnce,
  findActiveUpload,
  finishUpload,
  UploadGoneError,
  type UploadState,
} from "../multipart-upload.ts";
import { CliError, EXIT, interrupted } from "../output.ts";
import { type FileProgress, Progress } from "../progress.ts";
import { ResumeState } from "../resume-state.ts";
import { abortUpload, type UploadView } from "../server-api.ts";
import { formatBytes, formatDuration, formatRate, parseWholeNumber } from "../units.ts";
import type { Action } from "./action.ts";

interface UploadOptions {
  parallel: string;
  contentType?: string;
  metadata?: string[];
}

interface UploadedFile {
  path: string;
  fileId: string;
  filename: string;
  size: number;
  sha256: string;
  uploadId: string;
  resumed: boolean;
  partsSent: number;
  partsAlready: number;
}

interface FailedFile {
  path: string;
  error: { code: string; message: string };
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** `key=value` pairs into the upload's metadata map. */
function parseMetadata(pairs: string[]): Record<string, string> | undefined {
  if (pairs.length === 0) return undefined;
  const metadata: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq < 1)
      throw new CliError("invalid_metadata", `--metadata wants key=value, got: ${pair}`, { exitCode: EXIT.usage });
    metadata[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return metadata;
}

/** Adds the command(s) of this module to the program. */
export function registerUpload(program: Command, action: Action): void {
  program
    .command("upload")
    .description("upload files (resumes an interrupted upload of the same file when run again)")
    .argument("<files...>", "local files")
    .option("--parallel <n>", "parts in flight per file (1-32)", "4")
    .option("--content-type <type>", "media type for every file (default: from each file's extension)")
    .option("--metadata <key=value>", "metadata for every file (repeatable)", collect)
    .action(action((ctx, files: string[], options: UploadOptions) => upload(ctx, files, options)));
}

async function upload(ctx: CommandContext, files: string[], options: UploadOptions): Promise<number> {
  const token = requireToken(ctx.config);
  const parallel = parseWholeNumber(options.parallel, 1, 32);
  if (parallel === null)
    throw new CliError("invalid_option", "--parallel must be a whole number from 1 to 32", { exitCode: EXIT.usage });
  if (options.contentType !== undefined && !MEDIA_TYPE.test(options.contentType)) {
    throw new CliError("invalid_option", `--content-type is not a media type: ${options.contentType}`, {
      exitCode: EXIT.usage,
    });
  }
  const metadata = parseMetadata(options.metadata ?? []);

  // Every argument must be a readable regular file before anything is sent.
  const paths = [...new Set(files.map((f) => resolve(f)))];
  const sizes = new Map<string, number>();
  for (const path of paths) {
    const info = await stat(path).catch(() => null);
    if (!info?.isFile()) throw new CliError("file_not_found", `not a file: ${path}`, { exitCode: EXIT.usage });
    sizes.set(path, info.size);
  }

  const userId = tokenSubject(token) ?? "unknown-user";
  const state = new ResumeState();
  const total = [...sizes.values()].reduce((a, b) => a + b, 0);
  const progress = new Progress(ctx.out, {
    title: "upload",
    totalBytes: total,
    totalFiles: paths.length,
    keepFinished: true,
  });
  const api = apiClient(ctx, token, (line) => progress.note(line));
  const uploaded: UploadedFile[] = [];
  const failed: FailedFile[] = [];
  try {
    for (const path of paths) {
      const started = performance.now();
      try {
        const result = await uploadOne(
          ctx,
          { api, state, userId, progress, parallel, metadata, contentType: options.contentType },
          path,
        );
        uploaded.push(result);
        const seconds = (performance.now() - started) / 1000;
        progress.note(
          `uploaded ${result.filename} → ${result.fileId} ` +
            `(${formatBytes(result.size)} in ${formatDuration(seconds)}, ` +
            `${formatRate(result.size / Math.max(seconds, 0.001))}` +
            `${result.resumed ? `, resumed: ${result.partsAlready} part(s) were already there` : ""})`,
        );
      } catch (err) {
        if (isAbort(err) || ctx.signal.aborted) throw interrupted("run the same command again to resume");
        const error =
          err instanceof ApiError || err instanceof CliError
            ? { code: err.code, message: err.message }
            : {
                code: err instanceof Error && err.name === "NetworkError" ? "network_error" : "upload_failed",
                message: String((err as Error)?.message ?? err),
              };
        failed.push({ path, error });
        progress.note(`failed: ${path}: ${error.message}`);
      }
    }
  } finally {
    progress.stop();
  }
  ctx.out.result({ files: uploaded, failed }, uploaded.map((f) => f.fileId).join("\n"));
  if (failed.length > 0) {
    ctx.out.info(`${failed.length} of ${paths.length} file(s) failed; run the same command again to retry them`);
    return EXIT.failed;
  }
  return EXIT.ok;
}

interface UploadDeps {
  api: ReturnType<typeof apiClient>;
  state: ResumeState;
  userId: string;
  progress: Progress;
  parallel: number;
  metadata: Record<string, string> | undefined;
  contentType: string | undefined;
}

async function uploadOne(ctx: CommandContext, deps: UploadDeps, path: string): Promise<UploadedFile> {
  const { api, state, userId, progress } = deps;
  const server = ctx.config.url;
  const info = await stat(path);
  const filename = basename(path);
  const contentType = deps.contentType ?? contentTypeFor(filename);

  // What an earlier run of this command left: its upload and the file's hash, if the file is unchanged.
  let record = state.load(server, userId, path);
  if (record && (record.size !== info.size || record.mtimeMs !== info.mtimeMs)) {
    // The file changed since: that upload can never complete with these bytes; give its quota back.
    await abortUpload(api, record.uploadId).catch(() => undefined);
    state.remove(server, userId, path);
    record = null;
  }
  let sha256 = record?.sha256;
  if (!sha256) {
    if (info.size > 64 * 1024 * 1024) progress.note(`hashing ${filename} (${formatBytes(info.size)})`);
    sha256 = await sha256File(path, { signal: ctx.signal });
  }
  const wanted = filename.normalize("NFC").trim();
  const sameFile = (v: UploadView) => v.sha256 === sha256 && v.size === info.size && v.filename === wanted;

  // No local record (another machine, a wiped state dir): the server may still hold the upload.
  let uploadId = record?.uploadId;
  if (!uploadId) uploadId = (await findActiveUpload(api, info.size, sameFile))?.uploadId;
  let resumed = uploadId !== undefined;

  let bar: FileProgress | null = null;
  let counted = 0;
  for (let attempt = 1; ; attempt++) {
    let known: UploadState | undefined;
    if (!uploadId) {
      known = await createUploadOnce(
        api,
        { filename, size: info.size, contentType, sha256, ...(deps.metadata ? { metadata: deps.metadata } : {}) },
        sameFile,
      );
      uploadId = known.uploadId;
      resumed = false;
    }
    state.save(server, userId, {
      uploadId,
      path,
      size: info.size,
      mtimeMs: info.mtimeMs,
      sha256,
      createdAt: new Date().toISOString(),
    });
    try {
      const result = await finishUpload(api, uploadId, path, {
        parallel: deps.parallel,
        signal: ctx.signal,
        known,
        onResume: (view) => {
          if (!bar) bar = progress.file(filename, info.size);
          // What the server already had counts as done; a new upload after an expired one restarts at 0.
          bar.skip(view.bytesReceived - counted);
          counted = view.bytesReceived;
        },
        onBytes: (delta) => {
          counted += delta;
          bar?.add(delta);
        },
      });
      if (!bar) bar = progress.file(filename, info.size, info.size);
      (bar as FileProgress).finish(true);
      state.remove(server, userId, path);
      return {
        path,
        fileId: result.file.id,
        filename: result.file.filename,
        size: result.file.size,
        sha256,
        uploadId,
        resumed,
        partsSent: result.partsSent,
        partsAlready: result.partsAlready,
      };
    } catch (err) {
      // Expired (or aborted) while we were away: one fresh upload, from the first byte.
      if (err instanceof UploadGoneError && attempt === 1) {
        progress.note(`upload ${uploadId} is ${err.status}; starting a new one for ${filename}`);
        state.remove(server, userId, path);
        uploadId = undefined;
        continue;
      }
      (bar as FileProgress | null)?.finish(false);
      throw err;
    }
  }
}
