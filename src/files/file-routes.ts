import { type Context, Hono } from "hono";
import { z } from "zod";
import { accountFor } from "../../objects/stubs";
import { auditAs, auditing, requestMeta, writeAuditLater } from "../audit/audit-middleware";
import { requireUser } from "../auth/user-auth";
import type { AuditAction } from "../core/audit";
import type { AppEnv } from "../http/app-env";
import { notFound, unwrap } from "../http/errors";
import { jsonBody } from "../http/json-body";
import { Cursor, decodeCursor, Limit, optionalParam, pageOf } from "../http/pagination";
import { deliverFile } from "./file-delivery";
import { FILE_COLUMNS, FileId, type FileRow, fileView, findLiveFile } from "./file-records";
import { buildLinkUrl, linkSigningKey, MAX_LINK_TTL_SECONDS } from "./signed-links";

const ListQuery = z.object({
  cursor: Cursor,
  limit: Limit,
  prefix: optionalParam(z.string().max(1024, "must be at most 1024 characters")),
});

const IdParam = z.object({ id: FileId });

const CreateLinkBody = z.strictObject({
  expiresIn: z
    .number({ error: "must be a whole number of seconds" })
    .int("must be a whole number of seconds")
    .min(1, "must be at least 1 second")
    .max(MAX_LINK_TTL_SECONDS, `must be at most ${MAX_LINK_TTL_SECONDS} seconds (7 days)`),
});

/** `\`, `%` and `_` are LIKE's escape and wildcards; escaped, a prefix matches only itself. */
function likePrefix(prefix: string): string {
  return `${prefix.replace(/[\\%_]/g, "\\$&")}%`;
}

/**
 * Marks the request as an audited operation on the `:id` of the path, before anything can refuse it, so
 * `auditRefusals` records every refusal (bad id, unknown or foreign file, 412, 416…). The raw id is cut
 * to the longest valid length so a junk path cannot bloat the log.
 */
function auditFileRoute(c: Context<AppEnv>, action: AuditAction): void {
  auditAs(c, { action, ...fileSubject(c) });
}

function fileSubject(c: Context<AppEnv>) {
  return { fileId: c.req.param("id")?.slice(0, 128) ?? null };
}

/** Records one successful operation on a file of the caller's. */
function recordSuccess(
  c: Context<AppEnv>,
  action: AuditAction,
  fileId: string,
  started: number,
  metadata?: Record<string, unknown>,
) {
  const meta = requestMeta(c);
  writeAuditLater(c, [
    {
      id: crypto.randomUUID(),
      userId: c.get("userId"),
      action,
      success: true,
      fileId,
      durationMs: Date.now() - started,
      ipAddress: meta.ipAddress,
      userAgent: meta.userAgent,
      metadata: metadata ?? null,
      timestamp: Date.now(),
    },
  ]);
}

/** `/v1/files`: the caller's completed files. Every route needs a bearer token. */
export const files = new Hono<AppEnv>()
  .use(requireUser)

  // GET /v1/files?cursor=&limit=&prefix= — live files, newest first, keyset-paginated over (created_at, id).
  .get("/", async (c) => {
    const query = ListQuery.parse(c.req.query());
    const where = ["user_id = ?", "status = 'active'"];
    const binds: unknown[] = [c.get("userId")];
    if (query.cursor !== undefined) {
      const key = decodeCursor("files", query.cursor);
      where.push("(created_at, id) < (?, ?)");
      binds.push(key.time, key.id);
    }
    if (query.prefix !== undefined) {
      // SQLite's LIKE folds ASCII case; the exact comparison of the leading characters keeps the filter
      // case-sensitive (prefixes behave like path prefixes), LIKE keeps the wildcards out.
      where.push("filename LIKE ? ESCAPE '\\'", "substr(filename, 1, length(?)) = ?");
      binds.push(likePrefix(query.prefix), query.prefix, query.prefix);
    }
    const { results } = await c.env.DB.prepare(
      `SELECT ${FILE_COLUMNS} FROM files WHERE ${where.join(" AND ")} ORDER BY created_at DESC, id DESC LIMIT ?`,
    )
      .bind(...binds, query.limit + 1)
      .all<FileRow>();
    const page = pageOf("files", results, query.limit, (row) => ({ time: row.created_at, id: row.id }));
    return c.json({ files: page.items.map(fileView), nextCursor: page.nextCursor });
  })

  // GET /v1/files/:id — one live file's metadata.
  .get("/:id", async (c) => {
    const started = Date.now();
    auditFileRoute(c, "file.read");
    const { id } = IdParam.parse(c.req.param());
    const file = await findLiveFile(c.env.DB, c.get("userId"), id);
    if (!file) throw notFound("File");
    recordSuccess(c, "file.read", id, started);
    return c.json(fileView(file));
  })

  // DELETE /v1/files/:id — the owner's account object is the authority on live files: it gives the
  // bytes back to the ledger at once and removes the R2 object and the D1 row through its outbox (tried
  // before it answers, retried until done). Another user's account does not know the id: 404.
  .delete("/:id", async (c) => {
    auditFileRoute(c, "file.delete");
    const { id } = IdParam.parse(c.req.param());
    const userId = c.get("userId");
    unwrap(await accountFor(c.env, userId).removeFile({ userId, fileId: id, meta: requestMeta(c) }));
    return c.body(null, 204);
  })

  // GET|HEAD /v1/files/:id/content — the bytes, with Range and conditional requests (Hono answers HEAD
  // with the GET route; deliverFile sends no body for it).
  .get("/:id/content", async (c) => {
    const started = Date.now();
    auditFileRoute(c, "file.download");
    const { id } = IdParam.parse(c.req.param());
    const userId = c.get("userId");
    const file = await findLiveFile(c.env.DB, userId, id);
    if (!file) throw notFound("File");
    return deliverFile(c, file, { action: "file.download", userId, started });
  })

  // POST /v1/files/:id/links {expiresIn} — a presigned GET/HEAD URL for one file.
  .post("/:id/links", auditing("file.link", fileSubject), jsonBody(CreateLinkBody), async (c) => {
    const started = Date.now();
    const { id } = IdParam.parse(c.req.param());
    const { expiresIn } = c.req.valid("json");
    const userId = c.get("userId");
    const file = await findLiveFile(c.env.DB, userId, id);
    if (!file) throw notFound("File");
    const expiresAt = Math.floor(Date.now() / 1000) + expiresIn;
    const url = await buildLinkUrl(new URL(c.req.url).origin, linkSigningKey(c.env), {
      fileId: id,
      userId,
      expiresAt,
      scope: "GET",
    });
    const expiresAtIso = new Date(expiresAt * 1000).toISOString();
    recordSuccess(c, "file.link", id, started, { expiresAt: expiresAtIso });
    return c.json({ url, expiresAt: expiresAtIso }, 201);
  });
