import { loadSettings, type Settings } from "./settings";

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

/** The service-wide policy from the effective settings (D1 versions over the vars, cached briefly). */
export async function accountPolicy(env: Env): Promise<AccountPolicy> {
  return policyFromSettings((await loadSettings(env)).settings);
}

/** The account policy part of the service settings. */
export function policyFromSettings(settings: Settings): AccountPolicy {
  return {
    quotaBytes: settings.defaultQuotaBytes,
    maxFileSizeBytes: settings.maxFileSizeBytes,
    allowedContentTypes: settings.allowedContentTypes,
    requestsPerSecond: settings.requestsPerSecond,
    burst: settings.burst,
    bytesPerMinute: settings.bytesPerMinute,
    maxActiveUploads: settings.maxActiveUploads,
  };
}
