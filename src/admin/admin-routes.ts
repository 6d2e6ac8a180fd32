import { Hono } from "hono";
import { z } from "zod";
import { type AuditRow, adminAuditEventView } from "../audit/audit-view";
import { UserId } from "../auth/user-auth";
import type { AppEnv } from "../http/app-env";
import { ApiError, invalidRequest, notFound, zodDetails } from "../http/errors";
import { jsonBody } from "../http/json-body";
import { Cursor, decodeCursor, limitParam, optionalParam, pageOf } from "../http/pagination";
import { readConfig } from "../settings/config";
import {
  appendVersion,
  applyOverrides,
  clearSettingsCache,
  combinationIssues,
  listVersions,
  mergePatch,
  readLatestVersion,
  readVersion,
  SETTING_KEYS,
  type SettingKey,
  type Settings,
  type SettingsOverrides,
  SettingsPatchSchema,
  type SettingsVersion,
  settingsFromConfig,
} from "../settings/settings";
import { adminFingerprint, requireAdmin } from "./admin-auth";
import { adminUsers } from "./user-routes";

// ---------------------------------------------------------------------------------------------------
// Input schemas
// ---------------------------------------------------------------------------------------------------

/** Parses `value` with `schema` or answers 400 `invalid_request` naming what was wrong. */
function parseInput<T extends z.ZodType>(schema: T, value: unknown, what: string): z.output<T> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw invalidRequest(`The ${what} is invalid`, zodDetails(parsed.error));
  return parsed.data;
}

const VERSION_DIGITS = /^[0-9]{1,15}$/;

/** What an `If-Match` asks for: any current version (`*`), or one of the listed versions. */
type Precondition = { any: true } | { any: false; versions: number[] };

/**
 * `If-Match`, RFC 9110 §13.1.1: `If-Match = "*" / #entity-tag`. Our entity-tags are `"<version>"`; a
 * bare `3` is accepted too, for hand-written requests. Evaluation, quoted from §13.1.1:
 *   "1. If the field value is "*", the condition is true if the origin server has a current
 *       representation for the target resource.
 *    2. If the field value is a list of entity tags, the condition is true if any of the listed tags
 *       match the entity tag of the selected representation.
 *    3. Otherwise, the condition is false."
 * Settings always have a current representation (version 0 is the vars), so `*` is always true: the
 * caller knowingly asks for an unconditional write. "An origin server MUST use the strong comparison
 * function when comparing entity tags for If-Match", so a weak tag (`W/"3"`) never matches; neither
 * does a value that is not an entity-tag at all (step 3). Both end in 412, never in a 400.
 */
const IfMatch = z
  .string()
  .trim()
  .transform((value): Precondition => {
    if (value === "*") return { any: true };
    const versions: number[] = [];
    for (const member of value.split(",")) {
      const strong = /^"([0-9]{1,15})"$/.exec(member.trim()) ?? /^([0-9]{1,15})$/.exec(member.trim());
      if (strong) versions.push(Number(strong[1]));
    }
    return { any: false, versions };
  });

/** `X-Admin-Actor`: who is acting, as the caller names themselves (an email or a username). */
const AdminActor = z
  .string()
  .trim()
  .regex(/^[A-Za-z0-9._@+:-]{1,64}$/, "must be 1-64 characters of A-Z a-z 0-9 . _ @ + : -");

const VersionParam = z.object({
  version: z.string().regex(VERSION_DIGITS, "must be a version number").transform(Number),
});

const HistoryQuery = z.strictObject({
  cursor: optionalParam(z.string().regex(VERSION_DIGITS, "is not a cursor from this listing").transform(Number)),
  limit: limitParam(20, 100),
});

/** `since`: an ISO 8601 date or date-time, or epoch milliseconds. */
const Since = z.union(
  [
    z
      .string()
      .regex(/^[0-9]{1,15}$/)
      .transform(Number),
    z.iso.datetime({ offset: true }).transform((s) => Date.parse(s)),
    z.iso.date().transform((s) => Date.parse(`${s}T00:00:00Z`)),
  ],
  { error: "must be an ISO 8601 date or date-time, or epoch milliseconds" },
);

const AuditQuery = z.strictObject({
  userId: optionalParam(UserId),
  // Any well-formed action rather than an enum: a search for an action this build does not know yet
  // (or no longer writes) should find nothing, not fail.
  action: optionalParam(
    z.string().regex(/^[a-z_]{1,32}\.[a-z_]{1,32}$/, "must be an audit action such as upload.part"),
  ),
  since: optionalParam(Since),
  cursor: Cursor,
  limit: limitParam(50, 200),
});

// ---------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------

const etag = (version: number) => `"${version}"`;

/** Who made a change: `X-Admin-Actor` if given (validated), else a fingerprint of the admin token. */
async function actorOf(header: string | undefined, adminToken: string): Promise<string> {
  if (header !== undefined) return parseInput(AdminActor, header, "X-Admin-Actor header");
  return adminFingerprint(adminToken);
}

/** 412 Precondition Failed, with the current version (and its ETag) so the client can re-read. */
function versionConflict(current: number): ApiError {
  return new ApiError(
    412,
    "version_conflict",
    `Settings changed since that version; the current version is ${current}`,
    { currentVersion: current },
    { ETag: etag(current) },
  );
}

/** The `If-Match` precondition, or 428 when the header is missing. */
function requiredIfMatch(header: string | undefined): Precondition {
  // RFC 6585 §3: "The 428 status code indicates that the origin server requires the request to be
  // conditional. Its typical use is to avoid the "lost update" problem, where a client GETs a resource's
  // state, modifies it, and PUTs it back to the server, when meanwhile a third party has modified the
  // state on the server, leading to a conflict." [...] "Responses using this status code SHOULD explain
  // how to resubmit the request successfully."
  if (header === undefined || header.trim() === "") {
    throw new ApiError(428, "precondition_required", 'Send If-Match with the version you read, e.g. If-Match: "3"');
  }
  return parseInput(IfMatch, header, "If-Match header");
}

/** The latest version and its overrides, version 0 when nothing is stored. */
async function current(db: D1Database): Promise<{ version: number; overrides: SettingsOverrides }> {
  const latest = await readLatestVersion(db);
  return { version: latest?.version ?? 0, overrides: latest?.overrides ?? {} };
}

/** The response body for a version: effective settings and which keys are overrides. */
function settingsBody(base: Settings, version: number, overrides: SettingsOverrides) {
  return { version, settings: applyOverrides(base, overrides), overrides };
}

/** Keys whose effective value differs between two settings. */
function changedKeys(before: Settings, after: Settings): SettingKey[] {
  return SETTING_KEYS.filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k]));
}

/** What changed between two settings, key by key, in {@link SETTING_KEYS} order. */
function diff(before: Settings, after: Settings): { key: SettingKey; from: unknown; to: unknown }[] {
  return changedKeys(before, after).map((key) => ({ key, from: before[key], to: after[key] }));
}

/** A change to commit, computed from the latest version (see {@link commit}). */
interface Change {
  overrides: SettingsOverrides;
  kind: "update" | "rollback";
  rolledBackTo?: number;
}

/**
 * Appends the version `build(latest)` describes, under `precondition`, and returns it.
 *
 * With a version precondition there is one attempt: a mismatch, or losing the race to another admin
 * between our read and our insert (the insert is guarded on the version read, see `appendVersion`), is
 * 412 Precondition Failed: RFC 9110 §13.1.1, an origin server "MUST NOT perform the requested method if
 * a received If-Match condition evaluates to false", and §15.5.13 names 412 for "one or more conditions
 * given in the request header fields evaluated to false when tested on the server".
 *
 * With `*` (or no precondition, where allowed) the caller accepts whatever is current, so a lost race
 * is not a failed precondition: re-read, rebuild the change on the new latest version and retry a few
 * times, then 409 Conflict. Either way no write is ever torn or silently lost.
 *
 * Clears this isolate's settings cache on success; other isolates follow within the cache lifetime.
 */
async function commit(
  env: Env,
  precondition: Precondition,
  changedBy: string,
  build: (latest: { version: number; overrides: SettingsOverrides }) => Change,
): Promise<{ version: number; overrides: SettingsOverrides }> {
  const attempts = precondition.any ? UNCONDITIONAL_ATTEMPTS : 1;
  for (let attempt = 0; attempt < attempts; attempt++) {
    const latest = await current(env.DB);
    if (!precondition.any && !precondition.versions.includes(latest.version)) throw versionConflict(latest.version);
    const change = build(latest);
    const version = await appendVersion(env.DB, {
      expectedVersion: latest.version,
      changedAt: Date.now(),
      changedBy,
      ...change,
    });
    if (version !== null) {
      clearSettingsCache();
      return { version, overrides: change.overrides };
    }
  }
  if (!precondition.any) throw versionConflict((await current(env.DB)).version);
  throw new ApiError(409, "version_conflict", "Settings are changing concurrently; read them again and retry");
}

/** How often an unconditional write (`If-Match: *`, or a rollback without If-Match) retries a lost race. */
const UNCONDITIONAL_ATTEMPTS = 3;

const UPLOAD_STATUSES = ["active", "completing", "completed", "aborted", "expired", "failed"] as const;
const DAY_MS = 86_400_000;

// ---------------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------------

/** `/v1/admin`: operator controls, guarded by ADMIN_TOKEN. */
export const admin = new Hono<AppEnv>()
  .use(requireAdmin)
  .use(async (c, next) => {
    await next();
    // Operator data must not be kept by shared or browser caches.
    c.header("Cache-Control", "no-store");
  })

  // The effective settings and their version; the ETag is what PUT's If-Match names.
  .get("/settings", async (c) => {
    const { version, overrides } = await current(c.env.DB);
    c.header("ETag", etag(version));
    return c.json(settingsBody(settingsFromConfig(readConfig(c.env)), version, overrides));
  })

  // Change some settings: merge the body into the current overrides, conditional on If-Match.
  .put("/settings", jsonBody(SettingsPatchSchema), async (c) => {
    const precondition = requiredIfMatch(c.req.header("If-Match"));
    const patch = c.req.valid("json");
    const changedBy = await actorOf(c.req.header("X-Admin-Actor"), c.env.ADMIN_TOKEN);
    const base = settingsFromConfig(readConfig(c.env));

    const { version, overrides } = await commit(c.env, precondition, changedBy, (latest) => {
      const overrides = mergePatch(latest.overrides, patch);
      // Each key was validated alone; rules between keys are checked on the result, so a change that
      // is fine alone but not with the rest is refused before anything is written.
      const next = applyOverrides(base, overrides);
      const issues = combinationIssues(next, changedKeys(applyOverrides(base, latest.overrides), next));
      if (issues.length > 0) throw invalidRequest("The resulting settings are invalid", issues);
      return { overrides, kind: "update" };
    });
    c.header("ETag", etag(version));
    return c.json(settingsBody(base, version, overrides));
  })

  // Versions newest first, each with what changed against the version before it.
  .get("/settings/history", async (c) => {
    const q = parseInput(HistoryQuery, c.req.query(), "query");
    // One row more than the page: it tells whether there is a next page and is the predecessor the
    // last item of this page is diffed against.
    const rows = await listVersions(c.env.DB, { before: q.cursor, limit: q.limit + 1 });
    const page = rows.slice(0, q.limit);
    const base = settingsFromConfig(readConfig(c.env));
    const items = page.map((v: SettingsVersion, i) => {
      // Versions are consecutive, so the next row is the predecessor; version 1's is the vars alone.
      const previous = rows[i + 1]?.overrides ?? {};
      return {
        version: v.version,
        changedBy: v.changedBy,
        changedAt: new Date(v.changedAt).toISOString(),
        kind: v.kind,
        ...(v.rolledBackTo !== null ? { rolledBackTo: v.rolledBackTo } : {}),
        overrides: v.overrides,
        diff: diff(applyOverrides(base, previous), applyOverrides(base, v.overrides)),
      };
    });
    const nextCursor = rows.length > q.limit ? String(page[page.length - 1].version) : null;
    return c.json({ versions: items, nextCursor });
  })

  // Restore an old version's overrides as a new version; history stays append-only.
  .post("/settings/rollback/:version", async (c) => {
    const { version: target } = parseInput(VersionParam, c.req.param(), "version");
    // If-Match is optional here: a rollback names its target explicitly, so without one the caller
    // accepts whatever is current (as with `*`).
    const ifMatch = c.req.header("If-Match");
    const precondition: Precondition = ifMatch === undefined ? { any: true } : requiredIfMatch(ifMatch);
    const changedBy = await actorOf(c.req.header("X-Admin-Actor"), c.env.ADMIN_TOKEN);

    const old = target === 0 ? null : await readVersion(c.env.DB, target);
    if (!old) throw notFound(`Settings version ${target}`);

    const base = settingsFromConfig(readConfig(c.env));
    const { version, overrides } = await commit(c.env, precondition, changedBy, (latest) => {
      const next = applyOverrides(base, old.overrides);
      const issues = combinationIssues(next, changedKeys(applyOverrides(base, latest.overrides), next));
      if (issues.length > 0) {
        throw invalidRequest(`Version ${target}'s settings are not valid with the current vars`, issues);
      }
      return { overrides: old.overrides, kind: "rollback", rolledBackTo: target };
    });
    c.header("ETag", etag(version));
    return c.json(settingsBody(base, version, overrides));
  })

  // Service-wide numbers from the D1 index, in one round trip.
  .get("/stats", async (c) => {
    const db = c.env.DB;
    const since = Date.now() - DAY_MS;
    const [ledger, files, uploads, uploaded, rejected] = await db.batch([
      db.prepare(`SELECT COUNT(*) AS users, COALESCE(SUM(reserved_bytes), 0) AS bytes_reserved FROM user_quotas`),
      db.prepare(`SELECT COUNT(*) AS files, COALESCE(SUM(file_size), 0) AS bytes FROM files WHERE status = 'active'`),
      db.prepare(`SELECT status, COUNT(*) AS n FROM multipart_uploads GROUP BY status`),
      db
        .prepare(
          `SELECT COALESCE(SUM(bytes_transferred), 0) AS bytes FROM file_access_logs
           WHERE action = 'upload.part' AND success = 1 AND timestamp >= ?`,
        )
        .bind(since),
      db
        .prepare(
          `SELECT COALESCE(error_code, 'unknown') AS code, COUNT(*) AS n FROM file_access_logs
           WHERE success = 0 AND timestamp >= ? GROUP BY COALESCE(error_code, 'unknown') ORDER BY code`,
        )
        .bind(since),
    ]);
    const l = ledger.results[0] as { users: number; bytes_reserved: number };
    const f = files.results[0] as { files: number; bytes: number };
    const uploadsByStatus = Object.fromEntries(UPLOAD_STATUSES.map((s) => [s, 0])) as Record<
      (typeof UPLOAD_STATUSES)[number],
      number
    >;
    for (const row of uploads.results as { status: (typeof UPLOAD_STATUSES)[number]; n: number }[]) {
      uploadsByStatus[row.status] = row.n;
    }
    const requestsRejected: Record<string, number> = {};
    for (const row of rejected.results as { code: string; n: number }[]) requestsRejected[row.code] = row.n;
    return c.json({
      users: l.users,
      bytesStored: f.bytes,
      bytesReserved: l.bytes_reserved,
      filesStored: f.files,
      uploadsByStatus,
      last24h: { bytesUploaded: (uploaded.results[0] as { bytes: number }).bytes, requestsRejected },
    });
  })

  // Audit events of all users, newest first, filtered, in pages keyed by (timestamp, id).
  .get("/audit", async (c) => {
    const q = parseInput(AuditQuery, c.req.query(), "query");
    const where: string[] = [];
    const params: (string | number)[] = [];
    const filter = (clause: string, value: string | number | undefined) => {
      if (value === undefined) return;
      where.push(clause);
      params.push(value);
    };
    filter("user_id = ?", q.userId);
    filter("action = ?", q.action);
    filter("timestamp >= ?", q.since);
    if (q.cursor !== undefined) {
      const after = decodeCursor("audit", q.cursor);
      // (timestamp, id) < (t, i), written so the leading range on timestamp can use an index.
      where.push("timestamp <= ? AND (timestamp < ? OR id < ?)");
      params.push(after.time, after.time, after.id);
    }
    const sql = `SELECT * FROM file_access_logs ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
                 ORDER BY timestamp DESC, id DESC LIMIT ?`;
    const { results } = await c.env.DB.prepare(sql)
      .bind(...params, q.limit + 1)
      .all<AuditRow>();
    const page = pageOf("audit", results, q.limit, (row) => ({ time: row.timestamp, id: row.id }));
    // `events`, as GET /v1/audit names them; each also carries userId and errorMessage here.
    return c.json({ events: page.items.map(adminAuditEventView), nextCursor: page.nextCursor });
  });

// GET /v1/admin/users/:userId and PUT /v1/admin/users/:userId: see ./admin-users.ts. Mounted after
// requireAdmin like every route here.
admin.route("/users", adminUsers);
