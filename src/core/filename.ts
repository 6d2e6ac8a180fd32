/** Longest display name kept, in characters. */
const MAX_LENGTH = 255;

/**
 * Makes a client-supplied filename safe to display and to put in a Content-Disposition header later:
 * keeps only the last path segment, drops control characters, trims, normalizes to NFC and bounds the
 * length. It is never used to build a storage key (keys are made by the server).
 */
export function sanitizeFilename(raw: string): string {
  const lastSegment = raw.split(/[\\/]/).pop() ?? "";
  const cleaned = lastSegment
    .normalize("NFC")
    // C0/C1 controls, DEL, and bidi overrides that could disguise an extension.
    .replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, "")
    .trim();
  const name = cleaned === "." || cleaned === ".." ? "" : cleaned;
  return Array.from(name).slice(0, MAX_LENGTH).join("") || "file";
}
