import type { CompletionStep, PartTicket } from "../../objects/upload-session/contract";
import { type ExpectedDigest, sameBytes, toHex } from "../http/content-digest";
import { ApiError } from "../http/errors";

export interface WrittenPart {
  etag: string;
  /** True when a Content-Digest was sent and matched; false when it did not; null when none was sent. */
  digestMatched: boolean | null;
}

/**
 * Streams a request body straight into part `partNumber` of an R2 multipart upload. R2 takes only a body
 * of known length, so the stream goes through a `FixedLengthStream` of the declared length (which also
 * fails the write if the client sends fewer bytes). When a digest is expected it is computed on the way
 * through, chunk by chunk: memory stays constant whatever the part size, and no part is buffered.
 */
export async function writePart(
  bucket: R2Bucket,
  ticket: PartTicket,
  partNumber: number,
  body: ReadableStream<Uint8Array>,
  digest: ExpectedDigest | null,
): Promise<WrittenPart> {
  const fixed = new FixedLengthStream(ticket.expectedSize);
  let hashing: DigestStream | null = null;
  let source = body;
  if (digest) {
    const hasher = new crypto.DigestStream(digest.algorithm);
    const writer = hasher.getWriter();
    hashing = hasher;
    source = body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        async transform(chunk, controller) {
          controller.enqueue(chunk);
          await writer.write(chunk);
        },
        async flush() {
          await writer.close();
        },
      }),
    );
  }
  const mpu = bucket.resumeMultipartUpload(ticket.r2Key, ticket.r2UploadId);
  let uploaded: R2UploadedPart;
  try {
    [uploaded] = await Promise.all([mpu.uploadPart(partNumber, fixed.readable), source.pipeTo(fixed.writable)]);
  } catch (err) {
    // The client hung up or sent a body that does not match its Content-Length. Nothing is recorded.
    throw new ApiError(400, "incomplete_body", "The part body ended before Content-Length bytes arrived", {
      expectedSize: ticket.expectedSize,
      cause: String(err instanceof Error ? err.message : err).slice(0, 200),
    });
  }
  let digestMatched: boolean | null = null;
  if (digest && hashing) digestMatched = sameBytes(new Uint8Array(await hashing.digest), digest.bytes);
  return { etag: uploaded.etag, digestMatched };
}

/**
 * R2 refused to assemble because a part it was given is not what it holds under that number ("InvalidPart":
 * R2's error 10025, "One or more of the specified parts could not be found"): the session's record of its
 * parts is not true to R2, and R2 does not say which part. Only a fault outside the session's knowledge
 * gets here (the session forgets a part whenever a write of it may have reached R2 unrecorded).
 */
export class PartsRejected extends ApiError {
  constructor(cause: string) {
    super(502, "storage_error", "Storage does not hold the parts as recorded", { cause });
  }
}

/** R2's InvalidPart, as the binding reports it (its code, its name, or its message). */
const INVALID_PART = /InvalidPart|10025|parts could not be found/i;

/**
 * Assembles the object from its recorded parts (or writes an empty object for an empty file). A retry
 * after R2 already completed the upload finds the object in place and carries on. A failure is one the
 * client can act on: completeUpload hands the upload back (a 502 to retry; PartsRejected: every part is
 * to be sent again).
 */
export async function assembleObject(
  bucket: R2Bucket,
  step: Extract<CompletionStep, { kind: "assemble" }>,
): Promise<{ etag: string }> {
  if (step.r2UploadId === null) {
    const object = await bucket.put(step.r2Key, new Uint8Array(0), { httpMetadata: { contentType: step.contentType } });
    return { etag: object.etag };
  }
  try {
    const object = await bucket.resumeMultipartUpload(step.r2Key, step.r2UploadId).complete(step.parts);
    return { etag: object.etag };
  } catch (err) {
    const existing = await bucket.head(step.r2Key);
    if (existing) return { etag: existing.etag };
    const cause = String(err instanceof Error ? err.message : err).slice(0, 200);
    if (INVALID_PART.test(cause)) throw new PartsRejected(cause);
    throw new ApiError(
      502,
      "storage_error",
      "Storage could not assemble the upload; it is active again: retry the completion, or abort",
      { cause, status: "active" },
    );
  }
}

/** Reads a stored object back through a SHA-256 digest (streamed) and returns it as lowercase hex. */
export async function sha256OfObject(bucket: R2Bucket, key: string): Promise<string> {
  const object = await bucket.get(key);
  if (!object) throw new ApiError(502, "storage_error", "The assembled object is missing");
  const hasher = new crypto.DigestStream("SHA-256");
  await object.body.pipeTo(hasher);
  return toHex(await hasher.digest);
}
