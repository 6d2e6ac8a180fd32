/**
 * The arithmetic of a tus write, as pure functions: whether the bytes a request declares fit the upload,
 * whether the parts and tail a writer reports follow what is recorded, and what recording them changes.
 * No storage here: the session's tus steps (`tus-upload.ts`) read the recorded state, call these, and
 * write what they decide.
 *
 * The offset tus reports is always `bytes in recorded parts + recorded tail`. A writer streams whole parts
 * (every part is `partSize` bytes except the upload's last) and leaves the bytes past the last whole part
 * in tail segments; the first part of a write opens with the recorded tail's bytes ("consumes" it).
 */
import { fail, type Outcome, ok, type Refusal } from "../../src/core/outcome";
import { fileTooLarge } from "../shared/refusals";
import { MAX_TAIL_SEGMENTS, type TailRef, type TusFinish, type TusPart, type TusWriteRequest } from "./contract";
import { writeRejected } from "./refusals";
import type { Session } from "./session";

/** What the write rules need to know of the session: how its length is known and cut into parts. */
export type WriteLayout = Pick<Session, "lengthDeferred" | "size" | "maxLength" | "partSize" | "partCount">;

/** What the session has recorded: its parts and its tail. */
export interface RecordedBytes {
  partCount: number;
  partBytes: number;
  tail: readonly TailRef[];
}

/** What a write may do, decided before it reads a byte. */
export interface WriteAdmission {
  /** The upload's length as far as this write knows it (recorded, or declared by this request). */
  length: number | null;
  /** A deferred length: the bytes the reservation must cover before any byte of this write is accepted. */
  reserveBytes: number | null;
  /** The deferred length this request declares, when it may be recorded at once (no checksum to verify). */
  lengthToRecord: number | null;
}

/**
 * Checks that the bytes a request declares fit the upload's length and the largest allowed file, at the
 * upload's current `offset` (which the request's `Upload-Offset` matched).
 */
export function admitTusWrite(
  layout: WriteLayout,
  offset: number,
  req: Pick<TusWriteRequest, "contentLength" | "uploadLength" | "checksum">,
): Outcome<WriteAdmission> {
  const recorded = layout.lengthDeferred ? null : layout.size;
  const maxLength = layout.maxLength ?? layout.size;
  const declared = req.uploadLength;
  if (declared !== null) {
    // tus 1.0.0 §Creation: "Once set the length MUST NOT be changed."
    if (recorded !== null && declared !== recorded) {
      return fail(400, "upload_length_mismatch", "Upload-Length cannot change once set", {
        uploadLength: recorded,
        declared,
      });
    }
    if (declared < offset)
      return fail(400, "upload_length_too_small", "Upload-Length is below the bytes already received", {
        offset,
        declared,
      });
    if (declared > maxLength) return fileTooLarge(declared, maxLength);
  }
  const length = recorded ?? declared;
  if (length !== null && offset + req.contentLength > length) {
    return fail(413, "exceeds_upload_length", "The body runs past Upload-Length", {
      offset,
      contentLength: req.contentLength,
      uploadLength: length,
    });
  }
  if (length === null && offset + req.contentLength > maxLength)
    return fileTooLarge(offset + req.contentLength, maxLength);
  return ok({
    length,
    // Grow (or shrink) the reservation to cover every byte this request may bring.
    reserveBytes: layout.lengthDeferred ? (declared ?? offset + req.contentLength) : null,
    lengthToRecord: layout.lengthDeferred && declared !== null && !req.checksum ? declared : null,
  });
}

/**
 * Checks one whole part a writer without a checksum recorded mid-write: the next number, a full part
 * (never the upload's last, which comes with the write's end), opening with exactly the recorded tail.
 */
export function checkTusPart(
  layout: WriteLayout,
  recorded: { partCount: number; tailKeys: readonly string[] },
  part: TusPart,
): Refusal | null {
  const next = recorded.partCount + 1;
  const last = layout.lengthDeferred ? null : layout.partCount;
  if (
    part.partNumber !== next ||
    part.size !== layout.partSize ||
    (last !== null && part.partNumber >= last) ||
    !sameKeys(part.consumedTail, recorded.tailKeys)
  ) {
    return writeRejected("The part does not follow the recorded bytes", {
      expectedPart: next,
      partNumber: part.partNumber,
    });
  }
  return null;
}

/** What recording the end of a write changes. */
export interface FinishPlan {
  /** The upload's length after this write (null while still deferred). */
  length: number | null;
  /** The deferred length this write declares, to record with it. */
  lengthToRecord: number | null;
  /** Recorded tail segments whose bytes went into a part or into the new segment: forget and delete them. */
  dropped: string[];
  /** The upload's offset once the write is recorded. */
  offset: number;
  /** The offset reached the length with no tail left: the session moves to completing. */
  completing: boolean;
}

/**
 * Checks the end of a write against what is recorded (its parts, all of them, follow in order; its new
 * tail segment builds on what remains; nothing runs past the length) and plans what recording it
 * changes. Checks everything before anything is changed: a refusal means none of it is recorded.
 */
export function planTusFinish(layout: WriteLayout, recorded: RecordedBytes, fin: TusFinish): Outcome<FinishPlan> {
  if (fin.uploadLength !== null && !layout.lengthDeferred && fin.uploadLength !== layout.size)
    return writeRejected("Upload-Length cannot change once set");
  const length = layout.lengthDeferred ? fin.uploadLength : layout.size;
  const partCount =
    length === null ? null : layout.lengthDeferred ? Math.ceil(length / layout.partSize) : layout.partCount;
  const lastPartSize = length === null || partCount === null ? null : length - layout.partSize * (partCount - 1);
  const recordedKeys = recorded.tail.map((t) => t.key);
  let next = recorded.partCount + 1;
  let tail = recordedKeys;
  let bytes = recorded.partBytes;
  for (const part of fin.parts) {
    const expected = part.partNumber === partCount && lastPartSize !== null ? lastPartSize : layout.partSize;
    if (
      part.partNumber !== next ||
      part.size !== expected ||
      (partCount !== null && part.partNumber > partCount) ||
      !sameKeys(part.consumedTail, tail)
    ) {
      return writeRejected("The parts do not follow the recorded bytes");
    }
    bytes += part.size;
    tail = [];
    next++;
  }
  // A new segment either replaces every remaining segment (their bytes were copied in) or follows them.
  const copied = !!fin.newTail && fin.newTail.copied.length > 0;
  if (fin.newTail && copied && !sameKeys(fin.newTail.copied, tail)) {
    return writeRejected("The new tail does not build on the recorded one");
  }
  const kept = copied ? [] : tail;
  if (fin.newTail && kept.length + 1 > MAX_TAIL_SEGMENTS) return writeRejected("Too many tail segments");
  // What is kept is the whole recorded tail (no part consumed it, nothing was copied) or nothing.
  const keptBytes = tail.length > 0 && kept.length > 0 ? sizeOf(recorded.tail) : 0;
  const offset = bytes + keptBytes + (fin.newTail?.size ?? 0);
  if (length !== null && offset > length) return writeRejected("The write runs past Upload-Length");
  if (length !== null && length < recorded.partBytes + sizeOf(recorded.tail))
    return writeRejected("Upload-Length is below the bytes already received");
  return ok({
    length,
    lengthToRecord: fin.uploadLength !== null && layout.lengthDeferred ? fin.uploadLength : null,
    dropped: recordedKeys.filter((key) => !kept.includes(key)),
    offset,
    completing: length !== null && offset === length && kept.length === 0 && !fin.newTail,
  });
}

/** The key of the tail segment a write granted with `token` may create (a key no write has used). */
export function newTailKey(prefix: string, writeSeq: number, token: string): string {
  return `${prefix}tail-${writeSeq}-${token.slice(0, 8)}`;
}

function sizeOf(tail: readonly TailRef[]): number {
  return tail.reduce((sum, t) => sum + t.size, 0);
}

function sameKeys(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((k, i) => k === b[i]);
}
