// Media types for local files: from the extension (the `mime` package's table), else octet-stream.
import mime from "mime";

export const DEFAULT_CONTENT_TYPE = "application/octet-stream";

/** The media type a file's name suggests. */
export function contentTypeFor(filename: string): string {
  return mime.getType(filename) ?? DEFAULT_CONTENT_TYPE;
}

// The shape the server accepts (RFC 9110 §8.3.1): `type/subtype` of token characters, then parameters.
const TOKEN = "[A-Za-z0-9!#$&^_.+-]";
const NAME = `[A-Za-z0-9]${TOKEN}{0,126}`;
const PARAMETER = `\\s*;\\s*${TOKEN}+=("[^"\\r\\n]*"|${TOKEN}+)`;

/** A media type as the server accepts it, e.g. `text/plain; charset=utf-8`. */
export const MEDIA_TYPE = new RegExp(`^${NAME}\\/${NAME}(${PARAMETER})*$`);

/** Whether `contentType` (parameters ignored, case-insensitive) matches patterns such as `image/*`. */
export function isAllowedContentType(contentType: string, patterns: readonly string[]): boolean {
  const essence = contentType.split(";")[0].trim().toLowerCase();
  const type = essence.split("/")[0];
  return patterns.some((p) => p === "*/*" || p === essence || (p.endsWith("/*") && p.slice(0, -2) === type));
}
