import { z } from "zod";

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** A var is a string (wrangler.toml or `--var NAME:value`); read it as a whole number within bounds. */
const wholeNumber = (fallback: number, min: number, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .optional()
    .transform((value, ctx) => {
      if (value === undefined || value.trim() === "") return fallback;
      const n = Number(value);
      if (!Number.isSafeInteger(n) || n < min || n > max) {
        ctx.addIssue({ code: "custom", message: `must be a whole number from ${min} to ${max}` });
        return z.NEVER;
      }
      return n;
    });

/** A media-type pattern: `type/subtype`, `type/*` or `*\/*`. */
export const MEDIA_TYPE_PATTERN = /^(\*\/\*|[a-z0-9][a-z0-9!#$&^_.+-]*\/(\*|[a-z0-9][a-z0-9!#$&^_.+-]*))$/;

const contentTypePatterns = z
  .string()
  .optional()
  .transform((value, ctx) => {
    const patterns = (value ?? "*/*")
      .split(",")
      .map((p) => p.trim().toLowerCase())
      .filter(Boolean);
    const bad = patterns.filter((p) => !MEDIA_TYPE_PATTERN.test(p));
    if (bad.length > 0) {
      ctx.addIssue({ code: "custom", message: `not media-type patterns: ${bad.join(", ")}` });
      return z.NEVER;
    }
    return patterns.length > 0 ? patterns : ["*/*"];
  });

/**
 * Bounds of the rate-limit and concurrency settings, shared by the vars (here) and admin overrides
 * (src/settings.ts) so both accept the same values.
 */
export const LIMIT_BOUNDS = {
  requestsPerSecond: { min: 1, max: 100_000 },
  burst: { min: 1, max: 1_000_000 },
  /** Up to 1 PiB a minute: far above anything one user can push through one Worker. */
  bytesPerMinute: { min: 1, max: 2 ** 50 },
  maxActiveUploads: { min: 1, max: 10_000 },
} as const;

/**
 * A CORS origin as the `Origin` header serializes it (RFC 6454 §6.2): `scheme://host[:port]`, lower case,
 * no path and no trailing slash, so a configured origin can be compared with the header byte for byte.
 * The host is a DNS name or a bracketed IPv6 literal; `*` (any origin) is checked separately.
 */
const DNS_LABEL = "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?";
export const ORIGIN_PATTERN = new RegExp(`^https?://(${DNS_LABEL}(\\.${DNS_LABEL})*|\\[[0-9a-f:.]+\\])(:[0-9]{1,5})?$`);

/** Whether `value` is `*` or an origin per {@link ORIGIN_PATTERN} with a port from 1 to 65535. */
export function isCorsOrigin(value: string): boolean {
  if (value === "*") return true;
  if (!ORIGIN_PATTERN.test(value)) return false;
  const port = /:([0-9]{1,5})$/.exec(value)?.[1];
  return port === undefined || (Number(port) >= 1 && Number(port) <= 65_535);
}

const corsOrigins = z
  .string()
  .optional()
  .transform((value, ctx) => {
    const origins = [
      ...new Set(
        (value ?? "*")
          .split(",")
          .map((o) => o.trim().toLowerCase())
          .filter(Boolean),
      ),
    ];
    const bad = origins.filter((o) => !isCorsOrigin(o));
    if (bad.length > 0) {
      ctx.addIssue({ code: "custom", message: `not origins (* or http(s)://host[:port]): ${bad.join(", ")}` });
      return z.NEVER;
    }
    return origins.length > 0 ? origins : ["*"];
  });

const ConfigSchema = z.object({
  DEFAULT_QUOTA_BYTES: wholeNumber(10 * GiB, 0),
  MAX_FILE_SIZE_BYTES: wholeNumber(5 * GiB, 0),
  UPLOAD_TTL_SECONDS: wholeNumber(86_400, 1),
  PART_SIZE_BYTES: wholeNumber(8 * MiB, 5 * MiB, 95 * MiB),
  ALLOWED_CONTENT_TYPES: contentTypePatterns,
  RATE_LIMIT_REQUESTS_PER_SECOND: wholeNumber(
    50,
    LIMIT_BOUNDS.requestsPerSecond.min,
    LIMIT_BOUNDS.requestsPerSecond.max,
  ),
  RATE_LIMIT_BURST: wholeNumber(100, LIMIT_BOUNDS.burst.min, LIMIT_BOUNDS.burst.max),
  RATE_LIMIT_BYTES_PER_MINUTE: wholeNumber(10 * GiB, LIMIT_BOUNDS.bytesPerMinute.min, LIMIT_BOUNDS.bytesPerMinute.max),
  MAX_ACTIVE_UPLOADS: wholeNumber(100, LIMIT_BOUNDS.maxActiveUploads.min, LIMIT_BOUNDS.maxActiveUploads.max),
  CORS_ORIGINS: corsOrigins,
  // 30 days: long enough for an app's session tokens, short enough that a leaked one dies.
  MAX_TOKEN_LIFETIME_SECONDS: wholeNumber(30 * 86_400, 60, 366 * 86_400),
});

/** Service configuration, parsed from the Worker's vars. */
export interface Config {
  defaultQuotaBytes: number;
  maxFileSizeBytes: number;
  uploadTtlSeconds: number;
  partSizeBytes: number;
  allowedContentTypes: string[];
  /** Sustained requests per second per user. */
  requestsPerSecond: number;
  /** Most requests a user may send at once (the bucket size); it refills at `requestsPerSecond`. */
  burst: number;
  /** Upload bytes per minute per user (also the byte burst). */
  bytesPerMinute: number;
  /** Uploads one user may have in progress at once. */
  maxActiveUploads: number;
  /** Origins CORS allows: `*` or exact `scheme://host[:port]` values. */
  corsOrigins: string[];
  /** The furthest in the future a user token's `exp` may be: tokens valid for longer are refused. */
  maxTokenLifetimeSeconds: number;
}

const cache = new WeakMap<object, Config>();

/**
 * Reads the service configuration from the environment. A malformed var is a deployment mistake, so it
 * throws (the request fails loudly) rather than silently falling back.
 */
export function readConfig(env: Env): Config {
  const cached = cache.get(env);
  if (cached) return cached;
  const parsed = ConfigSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
    throw new Error(`Invalid configuration: ${problems}`);
  }
  const v = parsed.data;
  const config: Config = {
    defaultQuotaBytes: v.DEFAULT_QUOTA_BYTES,
    maxFileSizeBytes: v.MAX_FILE_SIZE_BYTES,
    uploadTtlSeconds: v.UPLOAD_TTL_SECONDS,
    partSizeBytes: v.PART_SIZE_BYTES,
    allowedContentTypes: v.ALLOWED_CONTENT_TYPES,
    requestsPerSecond: v.RATE_LIMIT_REQUESTS_PER_SECOND,
    burst: v.RATE_LIMIT_BURST,
    bytesPerMinute: v.RATE_LIMIT_BYTES_PER_MINUTE,
    maxActiveUploads: v.MAX_ACTIVE_UPLOADS,
    corsOrigins: v.CORS_ORIGINS,
    maxTokenLifetimeSeconds: v.MAX_TOKEN_LIFETIME_SECONDS,
  };
  cache.set(env, config);
  return config;
}
