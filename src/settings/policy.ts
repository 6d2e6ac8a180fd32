import type { AccountPolicy } from "../core/policy";
import { loadSettings, type Settings } from "./settings";

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
