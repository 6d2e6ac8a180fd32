/**
 * Rate limits: whether one request may proceed under the user's budgets (GCRA: no timers, exact under
 * concurrency because the account object serializes its callers).
 */
import type { AccountPolicy } from "../../src/core/policy";
import {
  type BudgetCheck,
  BYTES_POLICY,
  gcraAll,
  quotaPolicy,
  REQUESTS_POLICY,
  rateLimitHeaders,
  userLimits,
} from "../../src/core/rate-limit";
import type { Admission } from "./contract";
import type { LedgerStore } from "./ledger-store";

/**
 * Decides one request under the user's (effective) `policy`: one request unit, plus `bytes` of the byte
 * budget for a request that carries upload data. An admitted request spends from every budget; a
 * refused one spends nothing.
 */
export function admit(store: LedgerStore, policy: AccountPolicy, bytes: number, now: number): Admission {
  const limits = userLimits(policy);
  const states = store.rateStates();
  const checks: Record<string, BudgetCheck> = {
    [REQUESTS_POLICY]: { state: states[REQUESTS_POLICY], limit: limits.requests, cost: 1 },
  };
  if (bytes > 0) checks[BYTES_POLICY] = { state: states[BYTES_POLICY], limit: limits.bytes, cost: bytes };
  const decision = gcraAll(checks, now);
  if (decision.allowed) {
    for (const [budget, result] of Object.entries(decision.results)) store.saveRateState(budget, result.state);
  }
  const decisions = [
    { policy: quotaPolicy(REQUESTS_POLICY, limits.requests), result: decision.results[REQUESTS_POLICY] },
    ...(decision.results[BYTES_POLICY]
      ? [{ policy: quotaPolicy(BYTES_POLICY, limits.bytes, "content-bytes"), result: decision.results[BYTES_POLICY] }]
      : []),
  ];
  const headers = rateLimitHeaders(decisions);
  const tooBig = decisions.some((d) => d.result.exceedsBurst);
  const waits = decisions.flatMap((d) =>
    !d.result.allowed && d.result.retryAfterSeconds !== null ? [d.result.retryAfterSeconds] : [],
  );
  return {
    allowed: decision.allowed,
    status: decision.allowed ? 200 : tooBig ? 413 : 429,
    headers,
    retryAfterSeconds: decision.allowed || tooBig ? null : Math.max(...waits),
  };
}
