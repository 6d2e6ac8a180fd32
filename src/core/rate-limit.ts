/**
 * Rate limiting math: pure functions, no I/O, no timers.
 *
 * The limiter is GCRA, the generic cell rate algorithm (ITU-T I.371's "virtual scheduling" form). It
 * behaves exactly like a token bucket of `burst` units refilled at `rate` units per `periodMs`, but its
 * whole state is one number, the theoretical arrival time (TAT): the moment at which the bucket would be
 * full again if nothing more arrived. Because refill is implied by the clock, nothing needs to run
 * between requests; the account object stores `{tat}` next to the ledger and calls {@link gcra} with the
 * request's cost.
 *
 * Response headers follow draft-ietf-httpapi-ratelimit-headers-11 ("RateLimit header fields for HTTP",
 * https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/), quoted beside the code below.
 */

/** Stored limiter state. `tat` is epoch milliseconds; 0 (or any time in the past) means a full bucket. */
export interface GcraState {
  tat: number;
}

/** `rate` units per `periodMs` sustained, with at most `burst` units at once (the bucket size). */
export interface RateLimit {
  rate: number;
  periodMs: number;
  burst: number;
}

/** The decision on one request. */
export interface RateLimitResult {
  allowed: boolean;
  /** The state to store: advanced when allowed, the given state unchanged when refused. */
  state: GcraState;
  /** Whole units still available right after this decision (the draft's `r`). */
  remaining: number;
  /** Seconds until the whole burst is available again, if nothing more arrives (0 = full now). */
  resetSeconds: number;
  /**
   * When refused: seconds after which this same cost will pass (nothing else consuming). 0 when allowed.
   * `null` when it can never pass because the cost exceeds the burst; see `exceedsBurst`.
   */
  retryAfterSeconds: number | null;
  /**
   * The cost is larger than the bucket: no amount of waiting helps. Callers answer 413 for a byte
   * budget (the body is too large) rather than a 429 that a client would retry forever.
   */
  exceedsBurst: boolean;
}

/**
 * Slack for floating-point rounding, in milliseconds. Epoch milliseconds around 1.8e12 are doubles with
 * a resolution of about 0.24 µs, so a TAT read back from storage can be off by that much; up to 1 µs of
 * slack keeps a request that arrives exactly on time from being refused by rounding. It is capped at a
 * thousandth of one unit's interval so it never shows up in `remaining` (at 10 GiB/min a byte is worth
 * 5.6 ns, far below the clock's resolution: there a decision may be off by a few dozen bytes, which is
 * immaterial and no request is ever refused for more than the one second `Retry-After` rounds up to).
 */
const MAX_EPSILON_MS = 1e-3;

function assertLimit(limit: RateLimit): void {
  for (const key of ["rate", "periodMs", "burst"] as const) {
    const v = limit[key];
    if (!Number.isFinite(v) || v <= 0) throw new RangeError(`rate limit ${key} must be a positive number, got ${v}`);
  }
}

/**
 * Decides whether a request costing `cost` units may pass at `now`, and returns the state to store.
 *
 * With emission interval `T = periodMs / rate` (milliseconds one unit is worth) and capacity
 * `burst · T` (the bucket as time), the request is allowed iff `max(tat, now) + cost·T − now ≤ burst·T`,
 * and then `tat` becomes `max(tat, now) + cost·T`. A refused request leaves the state untouched, so
 * being refused costs nothing and a client that waits `retryAfterSeconds` gets through.
 *
 * @param state stored state, or undefined for a user never seen (a full bucket)
 * @param limit the policy
 * @param cost units this request consumes: 1 for a request, its byte count for a byte budget; 0 peeks
 * @param now current time, epoch milliseconds
 */
export function gcra(
  state: GcraState | undefined | null,
  limit: RateLimit,
  cost: number,
  now: number,
): RateLimitResult {
  assertLimit(limit);
  if (!Number.isFinite(cost) || cost < 0) throw new RangeError(`cost must be a non-negative number, got ${cost}`);
  if (!Number.isFinite(now)) throw new RangeError(`now must be a finite time, got ${now}`);

  const interval = limit.periodMs / limit.rate;
  const capacity = limit.burst * interval;
  const epsilon = Math.min(MAX_EPSILON_MS, interval / 1000);
  const stored: GcraState = { tat: Number.isFinite(state?.tat) ? (state as GcraState).tat : 0 };
  // Time already owed: how far the TAT is ahead of now. A TAT in the past is a full bucket, not credit.
  const backlog = Math.max(stored.tat - now, 0);

  /** Whole units available if `owed` ms are owed, clamped to 0..burst. */
  const unitsLeft = (owed: number) =>
    Math.min(limit.burst, Math.max(0, Math.floor((capacity - owed + epsilon) / interval)));
  /** Whole seconds until `owed` ms have drained. */
  const secondsUntilDrained = (owed: number) => Math.max(0, Math.ceil((owed - epsilon) / 1000));

  if (cost > limit.burst) {
    return {
      allowed: false,
      state: stored,
      remaining: unitsLeft(backlog),
      resetSeconds: secondsUntilDrained(backlog),
      retryAfterSeconds: null,
      exceedsBurst: true,
    };
  }

  const owedAfter = backlog + cost * interval;
  if (owedAfter > capacity + epsilon) {
    // The bucket lacks `owedAfter - capacity` ms worth of units; that is exactly how long to wait.
    const waitMs = owedAfter - capacity;
    return {
      allowed: false,
      state: stored,
      remaining: unitsLeft(backlog),
      resetSeconds: secondsUntilDrained(backlog),
      retryAfterSeconds: Math.max(1, Math.ceil(waitMs / 1000)),
      exceedsBurst: false,
    };
  }

  return {
    allowed: true,
    state: { tat: now + owedAfter },
    remaining: unitsLeft(owedAfter),
    resetSeconds: secondsUntilDrained(owedAfter),
    retryAfterSeconds: 0,
    exceedsBurst: false,
  };
}

/** One budget to check in {@link gcraAll}. */
export interface BudgetCheck {
  state: GcraState | undefined | null;
  limit: RateLimit;
  cost: number;
}

/**
 * Decides several budgets for one request (e.g. requests and bytes): it passes only if every budget
 * allows it, and then every state advances; if any refuses, no state changes, so a request refused by
 * the byte budget does not also spend a request unit. The results of budgets that would have allowed it
 * are recomputed as a peek (cost 0) so their `remaining` is what is really left.
 */
export function gcraAll<K extends string>(
  checks: Record<K, BudgetCheck>,
  now: number,
): { allowed: boolean; results: Record<K, RateLimitResult> } {
  const keys = Object.keys(checks) as K[];
  const results = {} as Record<K, RateLimitResult>;
  for (const k of keys) results[k] = gcra(checks[k].state, checks[k].limit, checks[k].cost, now);
  const allowed = keys.every((k) => results[k].allowed);
  if (!allowed) {
    for (const k of keys) {
      if (results[k].allowed) {
        const peek = gcra(checks[k].state, checks[k].limit, 0, now);
        results[k] = {
          ...peek,
          state: { tat: Number.isFinite(checks[k].state?.tat) ? (checks[k].state?.tat ?? 0) : 0 },
        };
      }
    }
  }
  return { allowed, results };
}

/** The two per-user budgets of this service, by policy name. */
export interface UserLimits {
  requests: RateLimit;
  bytes: RateLimit;
}

/**
 * The per-user limits from the effective settings: `requestsPerSecond` sustained with `burst` at once,
 * and `bytesPerMinute` of upload bytes whose burst is one minute's worth (there is no separate byte
 * burst setting, so a part larger than `bytesPerMinute` can never pass: see `exceedsBurst`).
 */
export function userLimits(settings: { requestsPerSecond: number; burst: number; bytesPerMinute: number }): UserLimits {
  return {
    requests: { rate: settings.requestsPerSecond, periodMs: 1000, burst: settings.burst },
    bytes: { rate: settings.bytesPerMinute, periodMs: 60_000, burst: settings.bytesPerMinute },
  };
}

// ---------------------------------------------------------------------------------------------------
// Header fields (draft-ietf-httpapi-ratelimit-headers-11)
// ---------------------------------------------------------------------------------------------------

/**
 * Draft §3.1.2: "This specification defines three quota units: requests [...] content-bytes [...]
 * concurrent-requests". §3.1: "The default quota unit is "requests"."
 */
export type QuotaUnit = "requests" | "content-bytes" | "concurrent-requests";

/** One Quota Policy Item of `RateLimit-Policy` (draft §3.1). */
export interface QuotaPolicy {
  /** The policy identifier; §3: "The Item[SF] value MUST be a String[SF]." */
  name: string;
  /** `q`: §3.1.1 "MUST be a non-negative Integer". */
  quota: number;
  /** `qu`, omitted for the default "requests". */
  unit?: QuotaUnit;
  /** `w`: §3.1.3 "MUST be a non-negative, non-zero, Integer value expressing an interval in seconds". */
  windowSeconds?: number;
}

/** One Service Limit Item of `RateLimit` (draft §4.1). */
export interface ServiceLimit {
  /** §4.1: "Each service limit Item[SF] identifies the quota policy". */
  name: string;
  /** `r`: §4.1.1 "the available quota under the identified policy [...] a non-negative Integer". */
  remaining: number;
  /** `t`: §4.1.2 "the number of seconds within which the client can use no more than the available quota". */
  resetSeconds?: number;
}

/** Policy names used by this service. */
export const REQUESTS_POLICY = "requests";
export const BYTES_POLICY = "bytes";

/** RFC 9651 §3.3.1: Integers have at most 15 decimal digits. */
const SF_INTEGER_MAX = 999_999_999_999_999;

function sfInteger(value: number, what: string): string {
  if (!Number.isInteger(value) || Math.abs(value) > SF_INTEGER_MAX) {
    throw new RangeError(`${what} must be an integer of at most 15 digits, got ${value}`);
  }
  return String(value);
}

/**
 * RFC 9651 §4.1.6 (Serializing a String): only printable ASCII (%x20-7E); `\` and `"` are escaped with a
 * backslash; the result is wrapped in double quotes.
 */
function sfString(value: string): string {
  if (!/^[\x20-\x7e]*$/.test(value)) throw new RangeError(`not a structured-field string: ${JSON.stringify(value)}`);
  return `"${value.replace(/[\\"]/g, (ch) => `\\${ch}`)}"`;
}

/**
 * The advertised policy of a GCRA limit: `q = burst` units per `w = burst / rate` seconds (rounded up),
 * which is both the most a client may send at once and, averaged over the window, exactly the sustained
 * rate. Advertising `q = burst; w = period` instead would tell a client reading the policy as a ratio
 * (draft §8.5 warns about exactly that) that it may sustain `burst` per period, which for the default
 * 50/s with a burst of 100 is twice the real rate. Rounding `w` up only ever understates the rate.
 */
export function quotaPolicy(name: string, limit: RateLimit, unit?: QuotaUnit): QuotaPolicy {
  assertLimit(limit);
  const windowSeconds = Math.max(1, Math.ceil((limit.burst * limit.periodMs) / limit.rate / 1000 - 1e-9));
  return { name, quota: Math.floor(limit.burst), windowSeconds, ...(unit && unit !== "requests" ? { unit } : {}) };
}

/**
 * Serializes `RateLimit-Policy`. Draft §3: "a non-empty List[SF] of Quota Policy Items", e.g.
 * `RateLimit-Policy: "burst";q=100;w=60,"daily";q=1000;w=86400`; parameters in the order of the
 * draft's §3.2 example (`q`, `qu`, `w`). List members are joined with ", " as RFC 9651 §4.1.1 serializes.
 */
export function formatRateLimitPolicy(policies: readonly QuotaPolicy[]): string {
  if (policies.length === 0) throw new RangeError("RateLimit-Policy must list at least one policy");
  return policies
    .map((p) => {
      if (p.quota < 0) throw new RangeError("q must be non-negative");
      let item = `${sfString(p.name)};q=${sfInteger(p.quota, "q")}`;
      if (p.unit && p.unit !== "requests") item += `;qu=${sfString(p.unit)}`;
      if (p.windowSeconds !== undefined) {
        if (p.windowSeconds <= 0) throw new RangeError("w must be non-zero");
        item += `;w=${sfInteger(p.windowSeconds, "w")}`;
      }
      return item;
    })
    .join(", ");
}

/**
 * Serializes `RateLimit`. Draft §4: "a List[SF] of Service Limit Items", e.g.
 * `RateLimit: "default";r=50;t=30`.
 */
export function formatRateLimit(limits: readonly ServiceLimit[]): string {
  if (limits.length === 0) throw new RangeError("RateLimit must list at least one service limit");
  return limits
    .map((l) => {
      if (l.remaining < 0) throw new RangeError("r must be non-negative");
      let item = `${sfString(l.name)};r=${sfInteger(l.remaining, "r")}`;
      if (l.resetSeconds !== undefined) {
        if (l.resetSeconds < 0) throw new RangeError("t must be non-negative");
        item += `;t=${sfInteger(l.resetSeconds, "t")}`;
      }
      return item;
    })
    .join(", ");
}

/**
 * The service limit to advertise after a decision. Normally `t` is the time until the bucket is full
 * again. On a refusal that waiting can cure, `t` is the retry delay instead, because draft §6 says "If a
 * response contains both the Retry-After and the RateLimit header fields, the Retry-After field value
 * SHOULD NOT reference a point in time earlier than the end of the effective window", and the time to
 * full is usually later than the moment the refused request would pass.
 */
export function serviceLimit(name: string, result: RateLimitResult): ServiceLimit {
  const t = !result.allowed && result.retryAfterSeconds !== null ? result.retryAfterSeconds : result.resetSeconds;
  return { name, remaining: result.remaining, resetSeconds: t };
}

/** One decision with the policy it was made under, for {@link rateLimitHeaders}. */
export interface PolicyDecision {
  policy: QuotaPolicy;
  result: RateLimitResult;
}

/**
 * The response headers for a set of decisions (usually the request budget and, for part uploads, the
 * byte budget): `RateLimit-Policy`, `RateLimit` and, when a refusal can be cured by waiting,
 * `Retry-After` in delay-seconds (RFC 9110 §10.2.3: `Retry-After = HTTP-date / delay-seconds`) — the
 * longest wait of any refusing policy, since all must pass. Draft §7: "If a response contains both the
 * RateLimit and Retry-After fields, the Retry-After field MUST take precedence". No `Retry-After` is
 * sent when the only refusals exceed their burst: retrying cannot succeed.
 */
export function rateLimitHeaders(decisions: readonly PolicyDecision[]): Record<string, string> {
  const headers: Record<string, string> = {
    "RateLimit-Policy": formatRateLimitPolicy(decisions.map((d) => d.policy)),
    RateLimit: formatRateLimit(decisions.map((d) => serviceLimit(d.policy.name, d.result))),
  };
  const waits = decisions
    .filter((d) => !d.result.allowed && d.result.retryAfterSeconds !== null)
    .map((d) => d.result.retryAfterSeconds as number);
  const blockedForever = decisions.some((d) => d.result.exceedsBurst);
  if (waits.length > 0 && !blockedForever) headers["Retry-After"] = String(Math.max(...waits));
  return headers;
}
