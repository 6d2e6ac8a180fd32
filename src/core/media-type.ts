/**
 * Whether a media type (parameters ignored, case-insensitive) is allowed by patterns such as
 * `image/*`, `application/pdf` or `*\/*`.
 */
export function isAllowedMediaType(contentType: string, patterns: readonly string[]): boolean {
  const essence = contentType.split(";")[0].trim().toLowerCase();
  const [type] = essence.split("/");
  return patterns.some((p) => p === "*/*" || p === essence || (p.endsWith("/*") && p.slice(0, -2) === type));
}

/** A media type as RFC 9110 §8.3.1 shapes it: `type/subtype` of token characters, optional parameters. */
const NAME = "[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}";
const TOKEN = "[A-Za-z0-9!#$&^_.+-]+";
export const MEDIA_TYPE = new RegExp(`^${NAME}/${NAME}(\\s*;\\s*${TOKEN}=("[^"\\r\\n]*"|${TOKEN}))*$`);
