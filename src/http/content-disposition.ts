/**
 * `Content-Disposition: attachment` for a user-chosen filename (RFC 6266 with the RFC 8187 `filename*`
 * encoding). Filenames come from clients, so nothing of them may reach the header unescaped.
 */

/**
 * Characters removed from a filename before it goes anywhere near a header: C0 controls (CR and LF
 * included, so no header can be injected), DEL, C1 controls, and the bidirectional-formatting marks that
 * can make `evil<U+202E>fdp.exe` display as `evilexe.pdf`. Quotes and backslashes are dropped too: they are
 * the quoted-string's own metacharacters, and older clients unescape them inconsistently.
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069"\\]/g;

/** RFC 8187 §3.2.1 attr-char: ALPHA / DIGIT / "!" / "#" / "$" / "&" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~". */
const ATTR_CHAR = /^[A-Za-z0-9!#$&+\-.^_`|~]$/;

const FALLBACK_NAME = "download";

/**
 * The filename as it may stand in a header: controls, bidi overrides, quotes and backslashes removed;
 * never empty. (Stored names were already cleaned by `sanitizeFilename` in core; this guards the header.)
 */
export function dispositionFilename(filename: string): string {
  // toWellFormed: a lone surrogate would otherwise become bytes no decoder agrees on.
  const cleaned = filename.toWellFormed().replace(UNSAFE, "").trim();
  return cleaned === "" ? FALLBACK_NAME : cleaned;
}

/** RFC 8187 value-chars: UTF-8 bytes, attr-chars as they are, everything else as %XX. */
function encodeExtValue(value: string): string {
  let out = "";
  for (const byte of new TextEncoder().encode(value)) {
    const ch = String.fromCharCode(byte);
    out += byte < 0x80 && ATTR_CHAR.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/**
 * Builds `Content-Disposition: attachment` for `filename`.
 *
 * Plain printable-ASCII names get `attachment; filename="name"`. Any other name also gets
 * `filename*=UTF-8''<percent-encoded>`, with an ASCII fallback in `filename` for clients that do not
 * understand it (RFC 6266 §4.3: "when both 'filename' and 'filename*' are present in a single header
 * field value, recipients SHOULD pick 'filename*' and ignore 'filename'"). The fallback replaces each
 * non-ASCII character and `%` with `_`: RFC 6266 Appendix D advises against `%` followed by hex digits
 * in `filename` "since certain user agents incorrectly interpret them as percent-encoded".
 */
export function contentDisposition(filename: string): string {
  const name = dispositionFilename(filename);
  const plain = /^[\x20-\x7e]*$/.test(name) && !name.includes("%");
  if (plain) return `attachment; filename="${name}"`;
  const fallback = Array.from(name, (ch) => (ch.charCodeAt(0) < 0x80 && ch !== "%" ? ch : "_")).join("");
  return `attachment; filename="${fallback}"; filename*=UTF-8''${encodeExtValue(name)}`;
}
