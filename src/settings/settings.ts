import { z } from "zod";
import { MAX_PART_SIZE, MAX_PLANNABLE_SIZE, MIN_PART_SIZE } from "../core/part-plan";
import { type Config, isCorsOrigin, LIMIT_BOUNDS, MEDIA_TYPE_PATTERN, readConfig } from "./config";

/**
 * Runtime settings: the Worker's vars (src/config.ts), overlaid with what admins changed at runtime and
 * stored, versioned and append-only, in D1 (`settings_versions`, migrations/0002_settings.sql). A change
 * reaches every isolate within the cache lifetime below, without a deploy.
 */

const dedupe = (values: string[]) => [...new Set(values)];

/** Every setting with its bounds. Each is validated alone, so an admin may change one key at a time. */
const FIELDS = {
  defaultQuotaBytes: z
    .int()
    .min(0)
    .max(2 ** 50),
  /** The largest file that fits in 10,000 parts of the largest part size. */
  maxFileSizeBytes: z.int().min(1).max(MAX_PLANNABLE_SIZE),
  allowedContentTypes: z
    .array(
      z
        .string()
        .trim()
        .toLowerCase()
        .regex(MEDIA_TYPE_PATTERN, "must be a media-type pattern: type/subtype, type/* or */*"),
    )
    .min(1)
    .max(100)
    .transform(dedupe),
  /** At least a minute; at most 7 days, after which R2 itself aborts an incomplete multipart upload. */
  uploadTtlSeconds: z
    .int()
    .min(60)
    .max(7 * 86_400),
  partSizeBytes: z.int().min(MIN_PART_SIZE).max(MAX_PART_SIZE),
  requestsPerSecond: z.int().min(LIMIT_BOUNDS.requestsPerSecond.min).max(LIMIT_BOUNDS.requestsPerSecond.max),
  burst: z.int().min(LIMIT_BOUNDS.burst.min).max(LIMIT_BOUNDS.burst.max),
  bytesPerMinute: z.int().min(LIMIT_BOUNDS.bytesPerMinute.min).max(LIMIT_BOUNDS.bytesPerMinute.max),
  maxActiveUploads: z.int().min(LIMIT_BOUNDS.maxActiveUploads.min).max(LIMIT_BOUNDS.maxActiveUploads.max),
  corsOrigins: z
    .array(
      z
        .string()
        .trim()
        .toLowerCase()
        .refine(isCorsOrigin, "must be * or an origin http(s)://host[:port] without a path"),
    )
    .min(1)
    .max(50)
    .transform(dedupe),
};

/** The setting names, in the order they are listed and diffed. */
export const SETTING_KEYS = Object.keys(FIELDS) as (keyof typeof FIELDS)[];
export type SettingKey = keyof typeof FIELDS;

const SettingsObject = z.strictObject(FIELDS);
/** The complete, effective settings. */
export type Settings = z.output<typeof SettingsObject>;
/** Validates complete settings key by key (see {@link combinationIssues} for the rules between keys). */
export const SettingsSchema = SettingsObject;

/** A rule between settings, with the keys it involves. */
interface CombinationRule {
  keys: readonly SettingKey[];
  path: SettingKey;
  holds: (s: Settings) => boolean;
  message: (s: Settings) => string;
}

const RULES: CombinationRule[] = [
  {
    // A part is at least `partSizeBytes` (the last one aside), and the byte budget's burst is
    // `bytesPerMinute`, so a smaller budget would refuse every part forever.
    keys: ["bytesPerMinute", "partSizeBytes"],
    path: "bytesPerMinute",
    holds: (s) => s.bytesPerMinute >= s.partSizeBytes,
    message: (s) =>
      `must be at least partSizeBytes (${s.partSizeBytes}): a part larger than the byte budget never passes`,
  },
];

/**
 * The rules between settings that `next` breaks, counting only rules that involve a key in `changed`.
 * A change is refused for a conflict it creates, not for one the vars already had (an e2e run may set
 * odd vars on purpose, and an admin fixing something else must not be blocked by it).
 */
export function combinationIssues(next: Settings, changed: readonly SettingKey[]): { path: string; message: string }[] {
  return RULES.filter((r) => r.keys.some((k) => changed.includes(k)) && !r.holds(next)).map((r) => ({
    path: r.path,
    message: r.message(next),
  }));
}

/** What a settings version stores: only the keys admins set. */
export type SettingsOverrides = Partial<Settings>;

type PatchShape = { [K in SettingKey]: z.ZodOptional<z.ZodNullable<(typeof FIELDS)[K]>> };
const patchShape = Object.fromEntries(SETTING_KEYS.map((k) => [k, FIELDS[k].nullable().optional()])) as PatchShape;

/**
 * The body of `PUT /v1/admin/settings`: any subset of the settings; `null` removes an override so the
 * var applies again; an unknown key is an error (a typo must not be silently ignored).
 */
export const SettingsPatchSchema = z
  .strictObject(patchShape)
  .refine((p) => Object.keys(p).length > 0, "must set or remove at least one setting");
export type SettingsPatch = z.output<typeof SettingsPatchSchema>;

/** The settings the vars give, before any override. */
export function settingsFromConfig(config: Config): Settings {
  return {
    defaultQuotaBytes: config.defaultQuotaBytes,
    maxFileSizeBytes: config.maxFileSizeBytes,
    allowedContentTypes: config.allowedContentTypes,
    uploadTtlSeconds: config.uploadTtlSeconds,
    partSizeBytes: config.partSizeBytes,
    requestsPerSecond: config.requestsPerSecond,
    burst: config.burst,
    bytesPerMinute: config.bytesPerMinute,
    maxActiveUploads: config.maxActiveUploads,
    corsOrigins: config.corsOrigins,
  };
}

/** `base` with every key present in `overrides` replaced. */
export function applyOverrides(base: Settings, overrides: SettingsOverrides): Settings {
  const out: Record<string, unknown> = { ...base };
  for (const key of SETTING_KEYS) if (overrides[key] !== undefined) out[key] = overrides[key];
  return out as Settings;
}

/**
 * The overrides after a patch: `null` deletes a key, a value sets it. Returns a new object with keys in
 * {@link SETTING_KEYS} order so stored JSON is stable.
 */
export function mergePatch(current: SettingsOverrides, patch: SettingsPatch): SettingsOverrides {
  const out: Record<string, unknown> = {};
  for (const key of SETTING_KEYS) {
    const change = patch[key];
    if (change === null) continue;
    const value = change !== undefined ? change : current[key];
    if (value !== undefined) out[key] = value;
  }
  return out as SettingsOverrides;
}

/**
 * Reads stored overrides key by key, keeping every key that is still valid and dropping (and logging)
 * the rest. Stored rows were valid when written, but bounds may tighten in a later release; one stale
 * key must not take the other settings, or the request, down with it.
 */
export function parseOverrides(json: string): SettingsOverrides {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    raw = null;
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    console.error(JSON.stringify({ level: "error", msg: "stored settings are not a JSON object; ignored" }));
    return {};
  }
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    const field = (FIELDS as Record<string, z.ZodType>)[key];
    const parsed = field?.safeParse(value);
    if (parsed?.success) out[key] = parsed.data;
    else console.error(JSON.stringify({ level: "error", msg: "stored setting ignored", key }));
  }
  return mergePatch(out as SettingsOverrides, {});
}

// ---------------------------------------------------------------------------------------------------
// The store (D1 table settings_versions)
// ---------------------------------------------------------------------------------------------------

export type SettingsVersionKind = "update" | "rollback";

/** One row of the settings history. */
export interface SettingsVersion {
  version: number;
  overrides: SettingsOverrides;
  changedBy: string;
  changedAt: number;
  kind: SettingsVersionKind;
  rolledBackTo: number | null;
}

interface SettingsVersionRow {
  version: number;
  settings: string;
  changed_by: string;
  changed_at: number;
  kind: SettingsVersionKind;
  rolled_back_to: number | null;
}

const COLUMNS = "version, settings, changed_by, changed_at, kind, rolled_back_to";

function fromRow(row: SettingsVersionRow): SettingsVersion {
  return {
    version: row.version,
    overrides: parseOverrides(row.settings),
    changedBy: row.changed_by,
    changedAt: row.changed_at,
    kind: row.kind,
    rolledBackTo: row.rolled_back_to,
  };
}

/** The latest stored version, or null when none is stored yet (version 0: the vars apply). */
export async function readLatestVersion(db: D1Database): Promise<SettingsVersion | null> {
  const row = await db
    .prepare(`SELECT ${COLUMNS} FROM settings_versions ORDER BY version DESC LIMIT 1`)
    .first<SettingsVersionRow>();
  return row ? fromRow(row) : null;
}

/** One stored version, or null if there is no such version. */
export async function readVersion(db: D1Database, version: number): Promise<SettingsVersion | null> {
  const row = await db
    .prepare(`SELECT ${COLUMNS} FROM settings_versions WHERE version = ?`)
    .bind(version)
    .first<SettingsVersionRow>();
  return row ? fromRow(row) : null;
}

/**
 * Versions newest first, strictly below `before` when given. Asks for `limit` rows; callers wanting the
 * predecessor of the last row (to diff it) ask for one more.
 */
export async function listVersions(
  db: D1Database,
  opts: { before?: number; limit: number },
): Promise<SettingsVersion[]> {
  const { results } = await db
    .prepare(`SELECT ${COLUMNS} FROM settings_versions WHERE version < ? ORDER BY version DESC LIMIT ?`)
    .bind(opts.before ?? Number.MAX_SAFE_INTEGER, opts.limit)
    .all<SettingsVersionRow>();
  return results.map(fromRow);
}

/** A new version to append after `expectedVersion`. */
export interface NewSettingsVersion {
  expectedVersion: number;
  overrides: SettingsOverrides;
  changedBy: string;
  changedAt: number;
  kind: SettingsVersionKind;
  rolledBackTo?: number | null;
}

/**
 * Appends version `expectedVersion + 1` if, and only if, the latest version is still `expectedVersion`.
 * One `INSERT … SELECT … WHERE` statement is atomic in SQLite and D1 runs writes one at a time, so of
 * two admins who read the same version exactly one wins; the loser's statement inserts nothing
 * (`meta.changes === 0`) and it gets `false`, never a half-applied change.
 *
 * @returns the new version number, or null when `expectedVersion` is no longer the latest
 */
export async function appendVersion(db: D1Database, v: NewSettingsVersion): Promise<number | null> {
  const next = v.expectedVersion + 1;
  const result = await db
    .prepare(
      `INSERT INTO settings_versions (${COLUMNS})
       SELECT ?1, ?2, ?3, ?4, ?5, ?6
       WHERE (SELECT COALESCE(MAX(version), 0) FROM settings_versions) = ?7`,
    )
    .bind(
      next,
      JSON.stringify(v.overrides),
      v.changedBy,
      v.changedAt,
      v.kind,
      v.rolledBackTo ?? null,
      v.expectedVersion,
    )
    .run();
  return result.meta.changes === 1 ? next : null;
}

// ---------------------------------------------------------------------------------------------------
// Effective settings for request handling, cached per isolate
// ---------------------------------------------------------------------------------------------------

/**
 * How long an isolate trusts what it read. Admins are promised that a change applies everywhere within
 * 30 s; 10 s leaves room for a slow read and for an isolate that started its read just before the write.
 */
export const SETTINGS_CACHE_TTL_MS = 10_000;
/** After a failed read, how long to keep serving the last known value before asking D1 again. */
const RETRY_AFTER_FAILURE_MS = 1_000;

/**
 * One slot per isolate. Only D1's part (version + overrides) is cached; the vars are overlaid on every
 * call (readConfig caches its own parse), so the slot is right whatever `env` object a caller passes.
 * It holds plain data only: sharing a promise or I/O object across requests is not allowed in Workers.
 */
let cached: { version: number; overrides: SettingsOverrides; expiresAt: number } | null = null;

/** Effective settings and the version they come from. Version 0: nothing stored, the vars apply. */
export interface LoadedSettings {
  version: number;
  settings: Settings;
}

/**
 * The effective settings: the vars (readConfig) overlaid with the latest stored version's keys. Read
 * from D1 at most once per {@link SETTINGS_CACHE_TTL_MS} per isolate. If D1 fails, it serves the last
 * value it read or, having none, the vars alone (reported as version 0), and logs; it never fails the
 * request because of D1. A malformed var still throws, as readConfig does: that is a deploy mistake.
 */
export async function loadSettings(env: Env): Promise<{ version: number; settings: Settings }> {
  const base = settingsFromConfig(readConfig(env));
  const now = Date.now();
  if (!cached || now >= cached.expiresAt) {
    try {
      const latest = await readLatestVersion(env.DB);
      cached = {
        version: latest?.version ?? 0,
        overrides: latest?.overrides ?? {},
        expiresAt: now + SETTINGS_CACHE_TTL_MS,
      };
    } catch (err) {
      console.error(
        JSON.stringify({ level: "error", msg: "settings read failed; using last known settings", error: String(err) }),
      );
      // Without a previous read the vars are the best we know. Either way, back off briefly so an outage
      // does not turn every request into another failing D1 read.
      cached = {
        version: cached?.version ?? 0,
        overrides: cached?.overrides ?? {},
        expiresAt: now + RETRY_AFTER_FAILURE_MS,
      };
    }
  }
  return { version: cached.version, settings: applyOverrides(base, cached.overrides) };
}

/** Forgets this isolate's cached settings so the next {@link loadSettings} reads D1 (after a write; tests). */
export function clearSettingsCache(): void {
  cached = null;
}
