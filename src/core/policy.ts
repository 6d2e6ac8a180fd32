/**
 * The limits the account object enforces for one user: the service settings, which the object then
 * overlays with that user's own overrides (set by an administrator).
 */
export interface AccountPolicy {
  quotaBytes: number;
  maxFileSizeBytes: number;
  allowedContentTypes: string[];
  requestsPerSecond: number;
  burst: number;
  bytesPerMinute: number;
  maxActiveUploads: number;
}

/** The names an administrator may override per user. */
export const ACCOUNT_POLICY_KEYS = [
  "quotaBytes",
  "maxFileSizeBytes",
  "allowedContentTypes",
  "requestsPerSecond",
  "burst",
  "bytesPerMinute",
  "maxActiveUploads",
] as const satisfies readonly (keyof AccountPolicy)[];
