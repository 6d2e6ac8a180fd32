// SHA-256 of a local file, streamed (a file may be far larger than memory).
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";

/**
 * Hex SHA-256 of the file at `path`. `onBytes` is told of each chunk read (for a "hashing" progress
 * line); `signal` stops the read.
 */
export async function sha256File(
  path: string,
  options: { onBytes?: (n: number) => void; signal?: AbortSignal } = {},
): Promise<string> {
  const hash = createHash("sha256");
  const stream = createReadStream(path, { highWaterMark: 1024 * 1024, signal: options.signal });
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    hash.update(chunk);
    options.onBytes?.(chunk.length);
  }
  return hash.digest("hex");
}
