// The rate-limit arithmetic (GCRA over request and byte budgets) and the RateLimit header fields, as pure
// functions of a state and a clock. How the Worker enforces them per user is test/http/rate-limit-enforcement.test.ts.
import { describe, expect, it } from "vitest";
import {
  formatRateLimit,
  formatRateLimitPolicy,
  type GcraState,
  gcra,
  gcraAll,
  quotaPolicy,
  type RateLimit,
  rateLimitHeaders,
  serviceLimit,
  userLimits,
} from "../../src/core/rate-limit";

const GiB = 1024 ** 3;
/** A realistic epoch-ms clock, so float resolution at today's magnitudes is exercised. */
const T0 = Date.UTC(2026, 9, 1, 12, 0, 0);

/** Sends `n` requests of `cost` at `now`, threading the state; returns the results. */
function burstAt(state: GcraState | undefined, limit: RateLimit, n: number, now: number, cost = 1) {
  const results = [];
  let s = state;
  for (let i = 0; i < n; i++) {
    const r = gcra(s, limit, cost, now);
    results.push(r);
    s = r.state;
  }
  return { results, state: s };
}

describe("gcra: requests", () => {
  const perSecond: RateLimit = { rate: 1, periodMs: 1000, burst: 1 };

  it("passes a steady rate forever and refuses anything faster", () => {
    let state: GcraState | undefined;
    for (let i = 0; i < 1000; i++) {
      const r = gcra(state, perSecond, 1, T0 + i * 1000);
      expect(r.allowed, `request ${i}`).toBe(true);
      expect(r.remaining).toBe(0);
      expect(r.resetSeconds).toBe(1);
      state = r.state;
    }
    const early = gcra(state, perSecond, 1, T0 + 999 * 1000 + 500);
    expect(early).toMatchObject({ allowed: false, remaining: 0, retryAfterSeconds: 1, exceedsBurst: false });
  });

  it("keeps exact time with a rate that is not a whole number of milliseconds (3/s)", () => {
    const limit: RateLimit = { rate: 3, periodMs: 1000, burst: 1 };
    let state: GcraState | undefined;
    for (let i = 0; i < 3000; i++) {
      const r = gcra(state, limit, 1, T0 + (i * 1000) / 3);
      expect(r.allowed, `request ${i}`).toBe(true);
      state = r.state;
    }
    // Half an interval early is refused.
    expect(gcra(state, limit, 1, T0 + (2999.5 * 1000) / 3).allowed).toBe(false);
  });

  it("lets a full burst through at once, counts it down, then refuses", () => {
    const limit = userLimits({ requestsPerSecond: 50, burst: 100, bytesPerMinute: GiB }).requests;
    const { results, state } = burstAt(undefined, limit, 101, T0);
    expect(results.slice(0, 100).every((r) => r.allowed)).toBe(true);
    expect(results.slice(0, 100).map((r) => r.remaining)).toEqual(Array.from({ length: 100 }, (_, i) => 99 - i));
    // 100 requests at 20 ms each: the bucket is full again in 2 s.
    expect(results[99].resetSeconds).toBe(2);
    expect(results[100]).toMatchObject({ allowed: false, remaining: 0, retryAfterSeconds: 1, exceedsBurst: false });
    // The refusal did not move the state: the TAT is still exactly 2 s ahead.
    expect(results[100].state).toEqual(state);
    expect(state!.tat).toBe(T0 + 2000);
  });

  it("refills at the sustained rate: one unit per emission interval", () => {
    const limit: RateLimit = { rate: 50, periodMs: 1000, burst: 100 };
    const { state } = burstAt(undefined, limit, 100, T0);
    expect(gcra(state, limit, 1, T0 + 19).allowed).toBe(false);
    const after20 = gcra(state, limit, 1, T0 + 20);
    expect(after20).toMatchObject({ allowed: true, remaining: 0 });
    // After one second, 50 more are available (and the 51st is not).
    const { results } = burstAt(state, limit, 51, T0 + 1000);
    expect(results.filter((r) => r.allowed)).toHaveLength(50);
    expect(results[50].allowed).toBe(false);
  });

  it("passes a refused request once the advertised Retry-After has elapsed, not before", () => {
    const limit: RateLimit = { rate: 1, periodMs: 10_000, burst: 2 };
    const { state } = burstAt(undefined, limit, 2, T0);
    const refused = gcra(state, limit, 1, T0);
    expect(refused).toMatchObject({ allowed: false, retryAfterSeconds: 10, resetSeconds: 20 });
    expect(gcra(state, limit, 1, T0 + 9_999).allowed).toBe(false);
    const retried = gcra(refused.state, limit, 1, T0 + refused.retryAfterSeconds! * 1000);
    expect(retried).toMatchObject({ allowed: true, remaining: 0, retryAfterSeconds: 0 });
  });

  it("does not bank idle time beyond the burst", () => {
    const limit: RateLimit = { rate: 10, periodMs: 1000, burst: 5 };
    const { state } = burstAt(undefined, limit, 1, T0);
    const { results } = burstAt(state, limit, 6, T0 + 3_600_000);
    expect(results.map((r) => r.allowed)).toEqual([true, true, true, true, true, false]);
  });

  it("peeks with cost 0 without consuming", () => {
    const limit: RateLimit = { rate: 10, periodMs: 1000, burst: 5 };
    const { state } = burstAt(undefined, limit, 2, T0);
    const peek = gcra(state, limit, 0, T0);
    expect(peek).toMatchObject({ allowed: true, remaining: 3 });
    expect(peek.state).toEqual(state);
  });

  it("treats a missing or corrupt state as a full bucket", () => {
    const limit: RateLimit = { rate: 1, periodMs: 1000, burst: 3 };
    expect(gcra(undefined, limit, 1, T0).remaining).toBe(2);
    expect(gcra(null, limit, 1, T0).remaining).toBe(2);
    expect(gcra({ tat: Number.NaN }, limit, 1, T0).remaining).toBe(2);
    expect(gcra({ tat: 0 }, limit, 1, T0).remaining).toBe(2);
  });

  it("refuses bad arguments loudly", () => {
    const limit: RateLimit = { rate: 1, periodMs: 1000, burst: 1 };
    expect(() => gcra(undefined, { ...limit, rate: 0 }, 1, T0)).toThrow(RangeError);
    expect(() => gcra(undefined, { ...limit, burst: -1 }, 1, T0)).toThrow(RangeError);
    expect(() => gcra(undefined, { ...limit, periodMs: Number.POSITIVE_INFINITY }, 1, T0)).toThrow(RangeError);
    expect(() => gcra(undefined, limit, -1, T0)).toThrow(RangeError);
    expect(() => gcra(undefined, limit, Number.NaN, T0)).toThrow(RangeError);
    expect(() => gcra(undefined, limit, 1, Number.NaN)).toThrow(RangeError);
  });
});

describe("gcra: cost larger than the burst", () => {
  it("can never pass, says so, and leaves the state alone", () => {
    const limit: RateLimit = { rate: 100, periodMs: 60_000, burst: 100 };
    const fresh = gcra(undefined, limit, 101, T0);
    expect(fresh).toMatchObject({
      allowed: false,
      exceedsBurst: true,
      retryAfterSeconds: null,
      remaining: 100,
      resetSeconds: 0,
    });
    expect(fresh.state).toEqual({ tat: 0 });
    const { state } = burstAt(undefined, limit, 1, T0, 40);
    const later = gcra(state, limit, 101, T0 + 10 * 60_000);
    expect(later).toMatchObject({ allowed: false, exceedsBurst: true, retryAfterSeconds: null });
    expect(later.state).toEqual(state);
  });

  it("a cost exactly equal to the burst passes on a full bucket", () => {
    const limit: RateLimit = { rate: 100, periodMs: 60_000, burst: 100 };
    expect(gcra(undefined, limit, 100, T0)).toMatchObject({ allowed: true, remaining: 0, resetSeconds: 60 });
  });
});

describe("gcra: byte budgets", () => {
  const bytes = userLimits({ requestsPerSecond: 50, burst: 100, bytesPerMinute: 10 * GiB }).bytes;

  it("charges parts by size and tells how long until a part fits", () => {
    const first = gcra(undefined, bytes, 8 * GiB, T0);
    expect(first).toMatchObject({ allowed: true, remaining: 2 * GiB, resetSeconds: 48 });
    // 4 GiB more needs 2 GiB of refill at 10 GiB/min: 12 s.
    const refused = gcra(first.state, bytes, 4 * GiB, T0);
    expect(refused).toMatchObject({ allowed: false, remaining: 2 * GiB, retryAfterSeconds: 12, exceedsBurst: false });
    expect(gcra(first.state, bytes, 4 * GiB, T0 + 11_900).allowed).toBe(false);
    const retried = gcra(first.state, bytes, 4 * GiB, T0 + 12_000);
    expect(retried).toMatchObject({ allowed: true, remaining: 0 });
  });

  it("streams 8 MiB parts at the sustained byte rate", () => {
    const part = 8 * 1024 ** 2;
    const interval = (60_000 * part) / (10 * GiB); // ms of budget one part is worth
    let state: GcraState | undefined = gcra(undefined, bytes, 10 * GiB, T0).state; // drain the burst
    for (let i = 1; i <= 500; i++) {
      const r = gcra(state, bytes, part, T0 + i * interval);
      expect(r.allowed, `part ${i}`).toBe(true);
      state = r.state;
    }
    expect(gcra(state, bytes, part, T0 + 500 * interval).allowed).toBe(false);
  });

  it("refuses a part larger than the whole budget with no retry", () => {
    const r = gcra(undefined, bytes, 10 * GiB + 1, T0);
    expect(r).toMatchObject({ allowed: false, exceedsBurst: true, retryAfterSeconds: null });
  });
});

describe("gcraAll", () => {
  const limits = userLimits({ requestsPerSecond: 10, burst: 10, bytesPerMinute: 1000 });

  it("advances every budget when all allow", () => {
    const { allowed, results } = gcraAll(
      {
        requests: { state: undefined, limit: limits.requests, cost: 1 },
        bytes: { state: undefined, limit: limits.bytes, cost: 600 },
      },
      T0,
    );
    expect(allowed).toBe(true);
    expect(results.requests).toMatchObject({ allowed: true, remaining: 9 });
    expect(results.bytes).toMatchObject({ allowed: true, remaining: 400 });
  });

  it("changes no budget when one refuses", () => {
    const requestState = { tat: T0 + 100 };
    const bytesState = gcra(undefined, limits.bytes, 900, T0).state;
    const { allowed, results } = gcraAll(
      {
        requests: { state: requestState, limit: limits.requests, cost: 1 },
        bytes: { state: bytesState, limit: limits.bytes, cost: 600 },
      },
      T0,
    );
    expect(allowed).toBe(false);
    expect(results.requests.state).toEqual(requestState);
    expect(results.requests.remaining).toBe(9); // a peek: nothing was spent
    expect(results.bytes).toMatchObject({ allowed: false, remaining: 100, retryAfterSeconds: 30 });
    expect(results.bytes.state).toEqual(bytesState);
  });
});

describe("RateLimit header fields (draft-ietf-httpapi-ratelimit-headers-11)", () => {
  const limits = userLimits({ requestsPerSecond: 50, burst: 100, bytesPerMinute: 10_737_418_240 });

  it("advertises each policy as burst per time-to-refill, with the byte unit", () => {
    expect(quotaPolicy("requests", limits.requests)).toEqual({ name: "requests", quota: 100, windowSeconds: 2 });
    expect(quotaPolicy("bytes", limits.bytes, "content-bytes")).toEqual({
      name: "bytes",
      quota: 10_737_418_240,
      windowSeconds: 60,
      unit: "content-bytes",
    });
    // A burst below one second of rate still names a whole, non-zero window (§3.1.3).
    expect(quotaPolicy("r", { rate: 50, periodMs: 1000, burst: 10 }).windowSeconds).toBe(1);
    // "requests" is the default unit (§3.1), so it is not sent.
    expect(quotaPolicy("r", limits.requests, "requests")).not.toHaveProperty("unit");
  });

  it("formats RateLimit-Policy as a structured-field list", () => {
    const header = formatRateLimitPolicy([
      quotaPolicy("requests", limits.requests),
      quotaPolicy("bytes", limits.bytes, "content-bytes"),
    ]);
    expect(header).toBe('"requests";q=100;w=2, "bytes";q=10737418240;qu="content-bytes";w=60');
    expect(formatRateLimitPolicy([{ name: "daily", quota: 1000 }])).toBe('"daily";q=1000');
  });

  it("formats RateLimit with r and t", () => {
    expect(formatRateLimit([{ name: "requests", remaining: 42, resetSeconds: 1 }])).toBe('"requests";r=42;t=1');
    expect(
      formatRateLimit([
        { name: "requests", remaining: 0, resetSeconds: 2 },
        { name: "bytes", remaining: 999 },
      ]),
    ).toBe('"requests";r=0;t=2, "bytes";r=999');
  });

  it("escapes names and refuses values the syntax cannot carry", () => {
    expect(formatRateLimit([{ name: 'a"b\\c', remaining: 1 }])).toBe('"a\\"b\\\\c";r=1');
    expect(() => formatRateLimit([{ name: "naïve", remaining: 1 }])).toThrow(RangeError);
    expect(() => formatRateLimit([{ name: "x", remaining: 1.5 }])).toThrow(RangeError);
    expect(() => formatRateLimit([{ name: "x", remaining: -1 }])).toThrow(RangeError);
    expect(() => formatRateLimitPolicy([{ name: "x", quota: 10 ** 15 }])).toThrow(RangeError);
    expect(() => formatRateLimitPolicy([{ name: "x", quota: 1, windowSeconds: 0 }])).toThrow(RangeError);
    expect(() => formatRateLimitPolicy([])).toThrow(RangeError);
    expect(() => formatRateLimit([])).toThrow(RangeError);
  });

  it("uses the retry delay as t on a refusal, so Retry-After is not before the window ends (§6)", () => {
    const limit: RateLimit = { rate: 1, periodMs: 10_000, burst: 2 };
    const { state } = burstAt(undefined, limit, 2, T0);
    const refused = gcra(state, limit, 1, T0);
    expect(refused.resetSeconds).toBe(20);
    expect(serviceLimit("requests", refused)).toEqual({ name: "requests", remaining: 0, resetSeconds: 10 });
    const allowed = gcra(undefined, limit, 1, T0);
    expect(serviceLimit("requests", allowed)).toEqual({ name: "requests", remaining: 1, resetSeconds: 10 });
  });

  it("builds all headers, with Retry-After the longest wait of the refusing policies", () => {
    const requests = quotaPolicy("requests", limits.requests);
    const bytes = quotaPolicy("bytes", limits.bytes, "content-bytes");
    const ok = rateLimitHeaders([
      { policy: requests, result: gcra(undefined, limits.requests, 1, T0) },
      { policy: bytes, result: gcra(undefined, limits.bytes, GiB, T0) },
    ]);
    expect(ok).toEqual({
      "RateLimit-Policy": '"requests";q=100;w=2, "bytes";q=10737418240;qu="content-bytes";w=60',
      RateLimit: `"requests";r=99;t=1, "bytes";r=${9 * GiB};t=6`,
    });

    const drained = gcra(undefined, limits.bytes, 10 * GiB, T0).state;
    const refused = rateLimitHeaders([
      { policy: requests, result: gcra({ tat: T0 + 2000 }, limits.requests, 1, T0) },
      { policy: bytes, result: gcra(drained, limits.bytes, 5 * GiB, T0) },
    ]);
    expect(refused["Retry-After"]).toBe("30");
    expect(refused.RateLimit).toBe('"requests";r=0;t=1, "bytes";r=0;t=30');
  });

  it("sends no Retry-After when waiting cannot help", () => {
    const bytes = quotaPolicy("bytes", limits.bytes, "content-bytes");
    const headers = rateLimitHeaders([{ policy: bytes, result: gcra(undefined, limits.bytes, 11 * GiB, T0) }]);
    expect(headers).not.toHaveProperty("Retry-After");
    expect(headers.RateLimit).toBe(`"bytes";r=${10 * GiB};t=0`);
  });
});
