/** Refusals both objects give, built in one place so their bodies cannot drift apart. */
import { fail, type Refusal } from "../../src/core/outcome";

/** 413: `size` bytes is more than the largest file the user may store (or the upload may declare). */
export function fileTooLarge(size: number, maxFileSizeBytes: number): Refusal {
  return fail(413, "file_too_large", `Files are limited to ${maxFileSizeBytes} bytes`, { size, maxFileSizeBytes });
}
