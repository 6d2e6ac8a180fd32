/**
 * Streams one tus request body (a PATCH, or a creation with a body) into R2's multipart rules.
 *
 * tus chunks come in any size; R2 wants every part but the last to be the same size (≥ 5 MiB). So the
 * body is cut at part boundaries: each whole part is streamed through a `FixedLengthStream` into
 * `uploadPart` (the first one opening with the bytes of the recorded tail segments, read back from R2 in
 * order), and whatever is left past the last whole part goes into a new tail segment under a key no write
 * has used (R2 takes about one write per second per key). A write that fills no part just appends its
 * bytes as one more segment, so small chunks are not copied over and over; only past
 * MAX_TAIL_SEGMENTS are the segments folded into one. Memory stays at one chunk of the body whatever the
 * part size. Nothing is buffered.
 *
 * Without a checksum each whole part is recorded as soon as R2 has it, so a client that disconnects
 * mid-body keeps every whole part it sent. With a checksum nothing is recorded until the whole body has
 * been read and its digest matched ("the uploaded chunk MUST be discarded, and the upload and its offset
 * MUST NOT be updated"); parts uploaded by a refused write stay unrecorded and are overwritten by the
 * next write of the same numbers, and its tail object is deleted.
 */

import { sessionFor } from "../../objects/stubs";
import {
  MAX_TAIL_SEGMENTS,
  type TailRef,
  type TusFinish,
  type TusPart,
  type TusWriteGrant,
  type TusWriteResult,
} from "../../objects/upload-session/contract";
import type { RequestMeta } from "../core/audit";
import type { Outcome } from "../core/outcome";
import { sameBytes } from "../http/content-digest";
import { ApiError, unwrap } from "../http/errors";
import { CHECKSUM_MISMATCH, type ExpectedChecksum } from "./tus-protocol";

export type WriteGrant = Extract<TusWriteGrant, { kind: "write" }>;

/** A request body as the tus routes hand it over. */
export interface TusBody {
  stream: ReadableStream<Uint8Array> | null;
  /** Its Content-Length (0 for none). */
  length: number;
  /** `Upload-Length` declared with this request, if any. */
  uploadLength: number | null;
  checksum: ExpectedChecksum | null;
}

export const EMPTY_BODY: TusBody = { stream: null, length: 0, uploadLength: null, checksum: null };

/** The body ended before Content-Length bytes (the client went away or lied). */
class IncompleteBody extends Error {}

/**
 * Writes the body the lease `grant` allows and records it with the session. Returns the session's new
 * state; when it says `completing`, the caller still holds the lease and must drive the completion. On
 * any failure the lease is released and an unrecorded tail object queued for deletion.
 */
export async function writeTusBody(
  env: Env,
  userId: string,
  uploadId: string,
  grant: WriteGrant,
  body: TusBody,
  leaseMs: number,
  meta: RequestMeta,
): Promise<TusWriteResult> {
  const session = sessionFor(env, uploadId);
  const token = grant.token;
  const partSize = grant.partSize;
  const tailBytes = grant.tail.reduce((sum, t) => sum + t.size, 0);
  const available = tailBytes + body.length;
  // The write that brings the upload's last byte turns the remainder into the (short) last part.
  const final = grant.length !== null && grant.offset + body.length === grant.length;
  const whole = Math.floor(available / partSize);
  const rest = available - whole * partSize;
  const sizes: number[] = Array.from({ length: whole }, () => partSize);
  if (final && rest > 0) sizes.push(rest);
  // Not the end: the remainder becomes a new tail segment (unless no new byte came: the old tail stands).
  // When no part fills, the new segment holds only this body's bytes and follows the recorded ones;
  // past MAX_TAIL_SEGMENTS it takes a copy of them instead and replaces them.
  const tailSize = !final && body.length > 0 ? rest : 0;
  const fold = whole === 0 && grant.tail.length + 1 > MAX_TAIL_SEGMENTS;

  const reader = new BodyReader(body.stream, body.checksum?.digest ?? null);
  let lost: ApiError | null = null;
  const heartbeat = setInterval(
    () => {
      session.tusRenewLease(userId, token, leaseMs).then(
        (renewed: Outcome<unknown>) => {
          if (!renewed.ok) lost = ApiError.from(renewed.error);
        },
        () => {},
      );
    },
    Math.max(250, Math.floor(leaseMs / 3)),
  );
  const stillHeld = () => {
    if (lost) throw lost;
  };

  let unrecordedTail: string | null = null;
  try {
    let tail: TailRef[] = grant.tail;
    const pending: TusPart[] = [];
    for (let i = 0; i < sizes.length; i++) {
      stillHeld();
      const partNumber = grant.nextPart + i;
      const etag = await uploadPart(env.BUCKET, grant, partNumber, sizes[i], tail, reader);
      const part: TusPart = { partNumber, size: sizes[i], etag, consumedTail: tail.map((t) => t.key) };
      tail = [];
      const lastOfUpload = final && i === sizes.length - 1;
      // The upload's last part is recorded with the move to completing; with a checksum, every part waits.
      if (body.checksum || lastOfUpload) pending.push(part);
      else unwrap(await session.tusRecordPart(userId, token, part, leaseMs, meta));
    }
    let newTail: TusFinish["newTail"] = null;
    if (tailSize > 0) {
      stillHeld();
      const copied = fold ? tail : [];
      const size = fold ? tailSize : tailSize - tail.reduce((sum, t) => sum + t.size, 0);
      unrecordedTail = grant.newTailKey;
      await putTail(env.BUCKET, grant.newTailKey, size, copied, reader);
      newTail = { key: grant.newTailKey, size, copied: copied.map((t) => t.key) };
    }
    await reader.expectEnd();
    if (body.checksum) {
      const digest = await reader.digest();
      if (!sameBytes(digest, body.checksum.bytes)) {
        throw new ApiError(
          CHECKSUM_MISMATCH,
          "checksum_mismatch",
          `The body does not match its ${body.checksum.name} Upload-Checksum; none of it was kept`,
        );
      }
    }
    stillHeld();
    const result = unwrap(
      await session.tusFinishWrite(
        userId,
        token,
        { parts: pending, newTail, uploadLength: body.uploadLength },
        leaseMs,
        meta,
      ),
    );
    unrecordedTail = null;
    return result;
  } catch (err) {
    reader.cancel(err);
    await session.tusReleaseLease(userId, token, unrecordedTail).catch(() => {});
    throw err;
  } finally {
    clearInterval(heartbeat);
  }
}

/** Streams part `partNumber` of exactly `size` bytes: the tail segments' bytes, then the body's. */
async function uploadPart(
  bucket: R2Bucket,
  grant: WriteGrant,
  partNumber: number,
  size: number,
  tail: TailRef[],
  reader: BodyReader,
): Promise<string> {
  // Only a zero-length upload has no multipart upload, and it has no parts to write.
  if (grant.r2UploadId === null) throw new Error("a part of an upload without a multipart upload");
  const fixed = new FixedLengthStream(size);
  const writer = fixed.writable.getWriter();
  const uploading = bucket.resumeMultipartUpload(grant.r2Key, grant.r2UploadId).uploadPart(partNumber, fixed.readable);
  const feeding = feed(bucket, writer, size, tail, reader);
  try {
    const [uploaded] = await Promise.all([uploading, feeding]);
    return uploaded.etag;
  } catch (err) {
    throw failure(err, writer, uploading, feeding);
  }
}

/**
 * Writes a new tail segment of exactly `size` bytes: the bytes of the segments it folds in (if any), then the
 * body's.
 */
async function putTail(
  bucket: R2Bucket,
  key: string,
  size: number,
  tail: TailRef[],
  reader: BodyReader,
): Promise<void> {
  const fixed = new FixedLengthStream(size);
  const writer = fixed.writable.getWriter();
  const putting = bucket.put(key, fixed.readable);
  const feeding = feed(bucket, writer, size, tail, reader);
  try {
    await Promise.all([putting, feeding]);
  } catch (err) {
    throw failure(err, writer, putting, feeding);
  }
}

async function feed(
  bucket: R2Bucket,
  writer: WritableStreamDefaultWriter<Uint8Array>,
  size: number,
  tail: TailRef[],
  reader: BodyReader,
): Promise<void> {
  let fromTail = 0;
  for (const segment of tail) {
    const object = await bucket.get(segment.key);
    if (!object || object.size !== segment.size) {
      throw new ApiError(500, "tail_missing", "Received bytes of the upload are missing from storage", {
        key: segment.key,
      });
    }
    const source = object.body.getReader();
    for (;;) {
      const { done, value } = await source.read();
      if (done) break;
      await writer.write(value);
    }
    fromTail += segment.size;
  }
  await reader.copy(size - fromTail, writer);
  await writer.close();
}

/** Stops the other half of a failed transfer and says what went wrong in API terms. */
function failure(
  err: unknown,
  writer: WritableStreamDefaultWriter<Uint8Array>,
  ...pending: Promise<unknown>[]
): unknown {
  writer.abort(err).catch(() => {});
  for (const p of pending) p.catch(() => {});
  if (err instanceof ApiError) return err;
  if (err instanceof IncompleteBody) {
    return new ApiError(
      400,
      "incomplete_body",
      "The body ended before Content-Length bytes arrived; the whole parts before that were kept",
    );
  }
  return new ApiError(502, "storage_error", "Storage refused the upload's bytes; retry from the current offset", {
    cause: String(err instanceof Error ? err.message : err).slice(0, 200),
  });
}

/**
 * Reads a request body in exact slices without buffering more than the chunk in hand, hashing the bytes
 * on the way through when a checksum is expected.
 */
class BodyReader {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array> | null;
  readonly #hash: { stream: DigestStream; writer: WritableStreamDefaultWriter<ArrayBuffer | ArrayBufferView> } | null;
  #pending: Uint8Array | null = null;

  constructor(body: ReadableStream<Uint8Array> | null, digest: string | null) {
    this.#reader = body?.getReader() ?? null;
    if (digest) {
      const stream = new crypto.DigestStream(digest);
      this.#hash = { stream, writer: stream.getWriter() };
    } else this.#hash = null;
  }

  async #next(): Promise<Uint8Array | null> {
    if (this.#pending) {
      const chunk = this.#pending;
      this.#pending = null;
      return chunk;
    }
    if (!this.#reader) return null;
    let result: ReadableStreamReadResult<Uint8Array>;
    try {
      result = await this.#reader.read();
    } catch {
      throw new IncompleteBody();
    }
    return result.done ? null : result.value;
  }

  /** Moves exactly `n` bytes of the body into `out`. */
  async copy(n: number, out: WritableStreamDefaultWriter<Uint8Array>): Promise<void> {
    let left = n;
    while (left > 0) {
      const chunk = await this.#next();
      if (!chunk) throw new IncompleteBody();
      let piece = chunk;
      if (chunk.byteLength > left) {
        // Keep a copy of the rest: the piece written below may be handed over to the stream.
        this.#pending = chunk.slice(left);
        piece = chunk.subarray(0, left);
      }
      if (piece.byteLength === 0) continue;
      if (this.#hash) await this.#hash.writer.write(piece.slice());
      await out.write(piece);
      left -= piece.byteLength;
    }
  }

  /** The body must end here: more bytes than Content-Length declared is a malformed request. */
  async expectEnd(): Promise<void> {
    for (;;) {
      const chunk = await this.#next();
      if (!chunk) return;
      if (chunk.byteLength > 0) throw new ApiError(400, "body_too_long", "The body is longer than its Content-Length");
    }
  }

  async digest(): Promise<Uint8Array> {
    if (!this.#hash) throw new Error("no checksum expected");
    await this.#hash.writer.close();
    return new Uint8Array(await this.#hash.stream.digest);
  }

  cancel(reason: unknown): void {
    this.#reader?.cancel(reason).catch(() => {});
  }
}
