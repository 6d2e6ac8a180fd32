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

const ConfigSchema = z.object({
  DEFAULT_QUOTA_BYTES: wholeNumber(10 * GiB, 0),
  MAX_FILE_SIZE_BYTES: wholeNumber(5 * GiB, 0),
  UPLOAD_TTL_SECONDS: wholeNumber(86_400, 1),
  PART_SIZE_BYTES: wholeNumber(8 * MiB, 5 * MiB, 95 * MiB),
  ALLOWED_CONTENT_TYPES: contentTypePatterns,
});

/** Service configuration, parsed from the Worker's vars. */
export interface Config {
  defaultQuotaBytes: number;
  maxFileSizeBytes: number;
  uploadTtlSeconds: number;
  partSizeBytes: number;
  allowedContentTypes: string[];
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
  };
  cache.set(env, config);
  return config;
}
