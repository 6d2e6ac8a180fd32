import type { AccountPolicy } from "../objects/user-account";
import { readConfig } from "./config";

/** The limits the account object enforces for a user, from the service configuration. */
export function accountPolicy(env: Env): AccountPolicy {
  const config = readConfig(env);
  return { quotaBytes: config.defaultQuotaBytes, maxActiveUploads: (config as { maxActiveUploads?: number }).maxActiveUploads ?? 100 };
}
