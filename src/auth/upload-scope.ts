/**
 * What an upload token may do: the requests that write, read the state of, complete or abort its own
 * upload, and nothing else. A fixed allow-list of method and path, checked before any route runs, so a
 * route added later is closed to upload tokens unless it is added here.
 */

const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";

/** Method → path patterns an upload token may use; `(id)` is the upload id, compared with the token's. */
const ALLOWED: ReadonlyArray<{ methods: readonly string[]; path: RegExp }> = [
  // Native: status (what to resume), part writes, completion, abort.
  { methods: ["GET", "HEAD", "DELETE"], path: new RegExp(`^/v1/uploads/(${UUID})$`) },
  { methods: ["PUT"], path: new RegExp(`^/v1/uploads/(${UUID})/parts/\\d{1,6}$`) },
  { methods: ["POST"], path: new RegExp(`^/v1/uploads/(${UUID})/complete$`) },
  // tus 1.0.0: offset (HEAD), append (PATCH), termination (DELETE).
  { methods: ["HEAD", "PATCH", "DELETE"], path: new RegExp(`^/v1/tus/(${UUID})$`) },
  // Resumable Uploads for HTTP: offset retrieval (HEAD), append (PATCH), cancellation (DELETE).
  { methods: ["HEAD", "PATCH", "DELETE"], path: new RegExp(`^/v1/resumable/(${UUID})$`) },
];

/**
 * Whether an upload token for `uploadId` may send `method` to `path` (the request's raw path). Anything
 * not listed is refused — every other route, and every route of another upload.
 */
export function uploadScopeAllows(uploadId: string, method: string, path: string): boolean {
  return ALLOWED.some((rule) => rule.methods.includes(method) && rule.path.exec(path)?.[1] === uploadId.toLowerCase());
}

/** The preference (RFC 7240) a tus or resumable creation sends to get an upload token back. */
export const UPLOAD_TOKEN_PREFERENCE = "upload-token";
/** Response header carrying the upload token of a tus or resumable creation. */
export const UPLOAD_TOKEN_HEADER = "Upload-Token";

/**
 * Whether a `Prefer` header (RFC 7240 §2: `Prefer: token [= value] *( ";" parameter )`, comma-separated)
 * asks for an upload token.
 */
export function prefersUploadToken(prefer: string | undefined): boolean {
  if (!prefer) return false;
  return prefer.split(",").some((item) => item.split(/[;=]/, 1)[0].trim().toLowerCase() === UPLOAD_TOKEN_PREFERENCE);
}
