// The native multipart protocol from a local file, shared by `upload` and `migrate run`: ask the server
// which parts it is missing, send exactly those (in parallel, each with its SHA-256 as Content-Digest),
// then complete. The server is the record of what arrived, so a client that was killed, lost its
// network or crashed resumes by asking again: a part the server recorded is never sent twice.
import { createHash } from "node:crypto";
import { type FileHandle, open } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { type ApiClient, ApiError, NetworkError } from "./api-client.ts";
import {
  completeUpload,
  createUpload,
  type FileInfo,
  getUpload,
  listActiveUploads,
  type NewUpload,
  type UploadView,
} from "./server-api.ts";

/** Chunks a part is streamed in, so progress moves while a part travels. */
const CHUNK = 256 * 1024;
/** A part whose body did not match its digest is read and sent again this many times. */
const DIGEST_RETRIES = 2;

/** The upload can no longer take parts (expired, aborted, failed, or unknown): start a new one. */
export class UploadGoneError extends Error {
  readonly status: string;
  constructor(uploadId: string, status: string) {
    super(`upload ${uploadId} is ${status}`);
    this.name = "UploadGoneError";
    this.status = status;
  }
}

/** What sending needs to know of an upload: its plan and what the server has. */
export type UploadState = Pick<
  UploadView,
  "uploadId" | "status" | "size" | "partSize" | "partCount" | "missingParts" | "bytesReceived" | "file"
>;

export interface SendOptions {
  /** Parts in flight at once. */
  parallel: number;
  signal?: AbortSignal;
  /** Bytes sent (negative: an attempt that failed is taken back). */
  onBytes?: (delta: number) => void;
  /** Told once what the server already had, before anything is sent. */
  onResume?: (state: UploadState) => void;
  /** The upload's state when the caller knows it already (just created): saves asking the server. */
  known?: UploadState;
}

export interface FinishResult {
  file: FileInfo;
  /** Parts sent by this call. */
  partsSent: number;
  /** Parts the server already had. */
  partsAlready: number;
  bytesAlready: number;
}

/** Fills `buffer` from `fh` at `offset`; a short read means the file shrank under us. */
async function readFully(fh: FileHandle, buffer: Buffer, offset: number): Promise<void> {
  let filled = 0;
  while (filled < buffer.length) {
    const { bytesRead } = await fh.read(buffer, filled, buffer.length - filled, offset + filled);
    if (bytesRead === 0) throw new Error("the file is shorter than when the upload started");
    filled += bytesRead;
  }
}

/** Sends one part from the file, streamed in chunks so the caller can count bytes as they leave. */
async function sendPart(
  api: ApiClient,
  view: UploadState,
  fh: FileHandle,
  partNumber: number,
  options: SendOptions,
): Promise<void> {
  const offset = (partNumber - 1) * view.partSize;
  const size = Math.min(view.partSize, view.size - offset);
  const buffer = Buffer.allocUnsafe(size);
  for (let digestTry = 0; ; digestTry++) {
    await readFully(fh, buffer, offset);
    const digest = createHash("sha256").update(buffer).digest("base64");
    let counted = 0;
    const takeBack = () => {
      if (counted) options.onBytes?.(-counted);
      counted = 0;
    };
    try {
      const res = await api.call(`/v1/uploads/${view.uploadId}/parts/${partNumber}`, {
        method: "PUT",
        drain: true,
        contentLength: size,
        headers: { "Content-Type": "application/octet-stream", "Content-Digest": `sha-256=:${digest}:` },
        signal: options.signal,
        onAttempt: takeBack,
        body: () => {
          let sent = 0;
          return new ReadableStream<Uint8Array>({
            pull(controller) {
              if (sent >= size) {
                controller.close();
                return;
              }
              const chunk = buffer.subarray(sent, Math.min(size, sent + CHUNK));
              sent += chunk.length;
              counted += chunk.length;
              options.onBytes?.(chunk.length);
              controller.enqueue(chunk);
            },
          });
        },
      });
      await res.body?.cancel();
      return;
    } catch (err) {
      takeBack();
      if (err instanceof ApiError && err.code === "digest_mismatch" && digestTry < DIGEST_RETRIES) continue;
      if (err instanceof ApiError && (err.status === 410 || err.code === "upload_not_found")) {
        throw new UploadGoneError(view.uploadId, err.status === 410 ? "expired" : "unknown");
      }
      throw err;
    }
  }
}

/**
 * Takes an upload from wherever it is to completed: sends the parts the server is missing (at most
 * `parallel` at once) and completes. The local file must be the one the upload was created for (its
 * size is checked here; its SHA-256, when declared, by the server at completion).
 */
export async function finishUpload(
  api: ApiClient,
  uploadId: string,
  path: string,
  options: SendOptions,
): Promise<FinishResult> {
  for (let round = 0; ; round++) {
    const view = round === 0 && options.known ? options.known : await getUpload(api, uploadId);
    if (!view) throw new UploadGoneError(uploadId, "unknown");
    if (view.status === "completed" && view.file) {
      return { file: view.file, partsSent: 0, partsAlready: view.partCount, bytesAlready: view.size };
    }
    if (view.status !== "active" && view.status !== "completing") throw new UploadGoneError(uploadId, view.status);
    if (round === 0) options.onResume?.(view);
    const missing = view.status === "active" ? view.missingParts : [];
    const partsAlready = view.partCount - missing.length;
    await sendParts(api, view, path, missing, options);
    try {
      const file = await completeOnce(api, uploadId, options.signal);
      return { file, partsSent: missing.length, partsAlready, bytesAlready: view.bytesReceived };
    } catch (err) {
      // A part recorded after we read the status can only help; one the server still lacks (lost
      // between our send and its record) is sent in the next round. Two rounds are plenty.
      if (err instanceof ApiError && err.code === "parts_missing" && round < 2) continue;
      if (err instanceof ApiError && err.status === 410) throw new UploadGoneError(uploadId, "expired");
      throw err;
    }
  }
}

/** How long to wait for a completion we lost the answer of before asking for it again. */
const COMPLETING_WAIT_MS = 5 * 60_000;
const COMPLETING_POLL_MS = 2_000;

/**
 * Completes, once. Completion assembles the parts and, with a declared SHA-256, reads the whole object
 * back: for a big file that takes a while, and the connection may drop or time out meanwhile. Then the
 * server is most likely still at it, so rather than asking again (which would assemble a second time),
 * this waits for the upload to leave `completing` and takes the file from its status.
 */
async function completeOnce(api: ApiClient, uploadId: string, signal: AbortSignal | undefined): Promise<FileInfo> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await completeUpload(api, uploadId);
    } catch (err) {
      const lost = err instanceof NetworkError;
      const failed = err instanceof ApiError && err.status >= 500;
      if ((!lost && !failed) || attempt >= 5) throw err;
      if (failed) {
        // The server answered that this attempt failed (e.g. 502 storage_error): nothing is running, ask again.
        await sleep(1000 * attempt, undefined, { signal });
        continue;
      }
    }
    const deadline = Date.now() + COMPLETING_WAIT_MS;
    for (;;) {
      const view = await getUpload(api, uploadId);
      if (!view) throw new UploadGoneError(uploadId, "unknown");
      if (view.status === "completed" && view.file) return view.file;
      if (view.status === "active") break;
      if (view.status !== "completing") throw new UploadGoneError(uploadId, view.status);
      if (Date.now() > deadline) break;
      await sleep(COMPLETING_POLL_MS, undefined, { signal });
    }
  }
}

async function sendParts(
  api: ApiClient,
  view: UploadState,
  path: string,
  parts: number[],
  options: SendOptions,
): Promise<void> {
  if (parts.length === 0) return;
  const fh = await open(path, "r");
  // One failing part stops the others: the upload is resumed as a whole later. Ctrl-C does not cut
  // parts in flight (their requests drain); it only stops new ones from starting.
  const stop = new AbortController();
  const queue = [...parts];
  let failure: unknown = null;
  try {
    const stat = await fh.stat();
    if (stat.size !== view.size) {
      throw new Error(`the file is ${stat.size} bytes now, the upload expects ${view.size}`);
    }
    // A stop (Ctrl-C) takes no new part; the ones in flight finish (see interrupt.ts).
    const next = () => (failure === null && !options.signal?.aborted ? queue.shift() : undefined);
    const worker = async () => {
      for (let n = next(); n !== undefined; n = next()) {
        try {
          await sendPart(api, view, fh, n, { ...options, signal: stop.signal });
        } catch (err) {
          if (failure === null) failure = err;
          stop.abort(err);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(options.parallel, parts.length)) }, worker));
  } finally {
    await fh.close();
  }
  if (options.signal?.aborted) throw options.signal.reason;
  if (failure !== null) throw failure;
}

/**
 * Looks among the caller's active uploads for one that `matches` (checked on the full view, which
 * carries sha256 and metadata). Only uploads of the right size are looked at closely.
 */
export async function findActiveUpload(
  api: ApiClient,
  size: number,
  matches: (view: UploadView) => boolean,
): Promise<UploadView | null> {
  for await (const upload of listActiveUploads(api)) {
    if (upload.size !== size) continue;
    const view = await getUpload(api, upload.uploadId);
    if (view && view.status === "active" && matches(view)) return view;
  }
  return null;
}

/**
 * Creates an upload; when the answer is lost (the connection broke after the request went out), looks
 * for the upload it may have created before trying again, so a flaky network cannot leave a second
 * reservation behind.
 */
export async function createUploadOnce(
  api: ApiClient,
  upload: NewUpload,
  matches: (view: UploadView) => boolean,
): Promise<UploadState> {
  for (let attempt = 1; ; attempt++) {
    try {
      const created = await createUpload(api, upload);
      const missingParts = Array.from({ length: created.partCount }, (_, i) => i + 1);
      return { ...created, status: "active", missingParts, bytesReceived: 0 };
    } catch (err) {
      if (!(err instanceof Error) || err.name !== "NetworkError" || attempt >= 5) throw err;
      const found = await findActiveUpload(api, upload.size, matches);
      if (found) return found;
    }
  }
}
