import { fail, type Outcome, ok } from "./outcome";

const MiB = 1024 * 1024;

/** R2 (like S3) refuses non-final parts under 5 MiB. */
export const MIN_PART_SIZE = 5 * MiB;
/** A part travels in one Worker request; request bodies are capped at 100 MB, so stay under it. */
export const MAX_PART_SIZE = 95 * MiB;
/** R2 (like S3) allows at most 10,000 parts per multipart upload. */
export const MAX_PARTS = 10_000;
/** The largest file the part rules allow at all. */
export const MAX_PLANNABLE_SIZE = MAX_PART_SIZE * MAX_PARTS;

export interface PartPlan {
  partSize: number;
  partCount: number;
}

/**
 * Chooses how a file of `size` bytes is cut into parts: the preferred size when 10,000 parts of it are
 * enough, otherwise the smallest whole number of MiB that fits the file in 10,000 parts. Every part but
 * the last has exactly `partSize` bytes (R2 requires equal non-final parts). An empty file has no parts.
 */
export function planParts(size: number, preferredPartSize: number): Outcome<PartPlan> {
  let partSize = Math.min(MAX_PART_SIZE, Math.max(MIN_PART_SIZE, preferredPartSize));
  if (Math.ceil(size / partSize) > MAX_PARTS) partSize = Math.ceil(size / MAX_PARTS / MiB) * MiB;
  if (partSize > MAX_PART_SIZE) {
    return fail(413, "file_too_large", `Files are limited to ${MAX_PLANNABLE_SIZE} bytes by the part rules`, {
      size,
      maxFileSizeBytes: MAX_PLANNABLE_SIZE,
    });
  }
  return ok({ partSize, partCount: size === 0 ? 0 : Math.ceil(size / partSize) });
}
