/**
 * Every error code the API answers with, in one table: the stable, machine-readable `code` of
 * `{"error":{"code","message","details?"}}` that clients branch on. A code not listed here does not
 * type-check anywhere an error is made, and a test checks that each one is documented under `docs/`.
 */
export const ERROR_CODES = {
  // Requests
  invalid_request: "The request (path, query, headers or body) does not match what the route takes.",
  payload_too_large: "The request body is larger than the route accepts.",
  length_required: "The body needs a Content-Length.",
  body_too_long: "The body ran past its declared Content-Length.",
  incomplete_body: "The body ended before its declared Content-Length.",
  unsupported_media_type: "The content type is not allowed (by the user's allowlist or by the route).",
  method_not_allowed: "The route does not take this method.",
  route_not_found: "No such route.",
  precondition_required: "The request must be conditional (If-Match).",
  precondition_failed: "A precondition (If-Match, If-Unmodified-Since) did not hold.",
  range_not_satisfiable: "The Range lies outside the file.",
  http_error: "Another HTTP-level refusal from the framework.",
  internal_error: "An unexpected server error.",
  // Identity and limits
  unauthorized: "No valid bearer token.",
  forbidden: "The token does not grant this.",
  token_scope: "An upload token was used outside its own upload's writes, status, completion or abort.",
  auth_unavailable: "The identity provider's key set (JWKS) could not be fetched; retry.",
  rate_limited: "Too many requests or bytes for the user's rate limits; retry after Retry-After.",
  too_many_active_uploads: "The user has as many uploads open as allowed; complete or abort one.",
  quota_exceeded: "The upload does not fit in the user's remaining quota.",
  file_too_large: "The file is larger than the largest allowed file.",
  version_conflict: "The settings changed since the version named in If-Match.",
  // Uploads
  not_found: "No such file (or not the caller's).",
  upload_not_found: "No such upload (or not the caller's).",
  upload_not_active: "The upload takes no more writes in its current state.",
  upload_expired: "The upload expired and was cleaned up.",
  upload_terminated: "The upload was terminated.",
  upload_failed: "The upload failed and was cleaned up.",
  upload_incomplete: "A tus upload completes when its last byte arrives.",
  upload_locked: "Another request is writing this upload; retry shortly.",
  protocol_mismatch: "The upload belongs to the other protocol's endpoint.",
  part_out_of_range: "No such part number in the upload's plan.",
  part_size_mismatch: "The part is not exactly the size the plan gives it.",
  parts_missing: "Some parts have not been uploaded yet.",
  part_write_conflict: "Another write of the same part overlapped this one; the part is missing: send it again.",
  digest_mismatch: "The body does not match its Content-Digest.",
  checksum_mismatch: "The assembled file or chunk does not match its declared checksum.",
  storage_error: "R2 refused or failed an operation; retry.",
  ledger_unavailable: "The quota ledger did not answer; retry.",
  // tus
  unsupported_tus_version: "Tus-Resumable names a version this server does not speak.",
  offset_mismatch: "Upload-Offset does not match the upload's offset.",
  exceeds_upload_length: "The body runs past Upload-Length.",
  upload_length_mismatch: "Upload-Length cannot change once set.",
  upload_length_too_small: "Upload-Length is below the bytes already received.",
  invalid_metadata: "Upload-Metadata is malformed.",
  invalid_checksum: "Upload-Checksum is malformed.",
  unsupported_checksum_algorithm: "Upload-Checksum names an algorithm this server does not support.",
  lease_lost: "Another writer took the upload.",
  write_rejected: "The write does not follow the bytes already recorded.",
  tail_missing: "A stored tail segment of the upload is missing.",
  // Resumable Uploads for HTTP (the IETF draft)
  unsupported_interop_version: "Upload-Draft-Interop-Version is missing or names a version not spoken here.",
  inconsistent_upload_length: "The request's length values disagree with each other or with the upload's length.",
  upload_completed: "The upload is already complete: nothing can be appended.",
  // Files and links
  file_changed: "The file changed while it was being read.",
  link_invalid: "The signed link is malformed or its signature does not verify.",
  link_expired: "The signed link has expired.",
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;
