// The go/no-go of a migration, per owner: do the owner's files fit what is left of their quota, is any
// file over their size limit or of a type they may not store, and what the source itself got wrong.
// Pure functions over the source's entries and each owner's usage and limits (read by the caller).
import { isAllowedContentType } from "../content-type.ts";
import type { AdminUserView } from "../server-api.ts";
import type { SourceEntry } from "./source.ts";

export type Verdict = "go" | "partial" | "no-go";

/** Why one file will not be uploaded. */
export interface Refusal {
  code: string;
  message: string;
}

export interface FileFinding {
  entry: SourceEntry;
  refusal: Refusal | null;
}

export interface OwnerAssessment {
  userId: string;
  files: number;
  bytes: number;
  /** Files (and bytes) that pass every check and would be uploaded. */
  eligibleFiles: number;
  eligibleBytes: number;
  usage: AdminUserView["usage"] | null;
  limits: AdminUserView["limits"] | null;
  /** What is left of the quota: limit − used − reserved. */
  remainingBytes: number | null;
  verdict: Verdict;
  /** Plain-language reasons behind a verdict other than go. */
  reasons: string[];
  findings: FileFinding[];
}

/** What the caller learnt about an owner: their view, or why it could not be read. */
export type OwnerFacts = { view: AdminUserView } | { error: string };

export interface AssessOptions {
  /**
   * Bytes of this owner's files that an earlier invocation of the same run already holds on the server
   * (in `used` or `reserved`): they are part of the usage read now, so they are not needed again.
   */
  alreadyCountedBytes?: number;
  /** Skip the quota test: an earlier invocation of the run already decided the owner fits. */
  quotaDecided?: boolean;
}

/** Assesses one owner's entries (problem entries included, as refusals). */
export function assessOwner(
  userId: string,
  entries: SourceEntry[],
  facts: OwnerFacts,
  options: AssessOptions = {},
): OwnerAssessment {
  const view = "view" in facts ? facts.view : null;
  const findings: FileFinding[] = entries.map((entry) => ({ entry, refusal: fileRefusal(entry, view) }));
  const eligible = findings.filter((f) => f.refusal === null);
  const eligibleBytes = eligible.reduce((sum, f) => sum + (f.entry.size ?? 0), 0);
  const usage = view?.usage ?? null;
  const remainingBytes = usage ? usage.limitBytes - usage.usedBytes - usage.reservedBytes : null;
  const reasons: string[] = [];
  let verdict: Verdict = "go";

  if ("error" in facts) {
    verdict = "no-go";
    reasons.push(`the owner's usage and limits could not be read: ${facts.error}`);
    for (const f of eligible) f.refusal = { code: "owner_unknown", message: facts.error };
  } else if (remainingBytes !== null && !options.quotaDecided) {
    const needed = eligibleBytes - (options.alreadyCountedBytes ?? 0);
    if (needed > remainingBytes) {
      verdict = "no-go";
      const message =
        `the owner's files need ${needed} bytes but only ${Math.max(0, remainingBytes)} of their quota remain ` +
        `(limit ${usage?.limitBytes}, used ${usage?.usedBytes}, reserved ${usage?.reservedBytes})`;
      reasons.push(message);
      // All or nothing per owner: half an account's files is worse than none, and the fix (a quota
      // override, or a smaller source) is the operator's call.
      for (const f of eligible) f.refusal = { code: "owner_over_quota", message };
    }
  }
  const refused = findings.filter((f) => f.refusal !== null);
  if (verdict === "go" && refused.length > 0) {
    verdict = refused.length === findings.length ? "no-go" : "partial";
    const counts = new Map<string, number>();
    for (const f of refused) counts.set(f.refusal?.code ?? "", (counts.get(f.refusal?.code ?? "") ?? 0) + 1);
    for (const [code, n] of counts) reasons.push(`${n} file(s) refused: ${code}`);
  }
  const stillEligible = findings.filter((f) => f.refusal === null);
  return {
    userId,
    files: findings.length,
    bytes: findings.reduce((sum, f) => sum + (f.entry.size ?? 0), 0),
    eligibleFiles: stillEligible.length,
    eligibleBytes: stillEligible.reduce((sum, f) => sum + (f.entry.size ?? 0), 0),
    usage,
    limits: view?.limits ?? null,
    remainingBytes,
    verdict,
    reasons,
    findings,
  };
}

/** Why the server would refuse this file for this owner (or the source already says it cannot go). */
function fileRefusal(entry: SourceEntry, view: AdminUserView | null): Refusal | null {
  if (entry.problem) return { code: entry.problem.code, message: entry.problem.message };
  if (!view) return null;
  const size = entry.size ?? 0;
  if (size > view.limits.maxFileSizeBytes) {
    return {
      code: "file_too_large",
      message: `${size} bytes is over the owner's file size limit of ${view.limits.maxFileSizeBytes} bytes`,
    };
  }
  if (!isAllowedContentType(entry.contentType, view.limits.allowedContentTypes)) {
    return {
      code: "unsupported_media_type",
      message:
        `${entry.contentType} is not among the owner's allowed types ` +
        `(${view.limits.allowedContentTypes.join(", ")})`,
    };
  }
  return null;
}

export interface Estimate {
  /** The stated transfer rate, MiB/s. */
  rateMiBps: number;
  /** The stated per-file rate for small files (create + complete round trips), files/s. */
  filesPerSecond: number;
  seconds: number;
}

/** Time to move `bytes` in `files` at the stated rates: bytes at the transfer rate plus a per-file cost. */
export function estimateDuration(bytes: number, files: number, rateMiBps: number, filesPerSecond: number): Estimate {
  return { rateMiBps, filesPerSecond, seconds: bytes / (rateMiBps * 1024 * 1024) + files / filesPerSecond };
}

/** The worst verdict of several. */
export function overallVerdict(verdicts: Verdict[]): Verdict {
  if (verdicts.includes("no-go")) return "no-go";
  if (verdicts.includes("partial")) return "partial";
  return "go";
}
