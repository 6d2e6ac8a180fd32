import { Hono } from "hono";
import { z } from "zod";
import type { AppEnv } from "../app-env";
import { AUDIT_ACTIONS } from "../audit";
import { requireUser } from "../auth";
import { Cursor, decodeCursor, Limit, optionalParam, pageOf } from "../pagination";

const ListQuery = z.object({
  cursor: Cursor,
  limit: Limit,
  action: optionalParam(z.enum(AUDIT_ACTIONS, { error: `must be one of: ${AUDIT_ACTIONS.join(", ")}` })),
});

/** One `file_access_logs` row, as selected below. */
interface AuditRow {
  id: string;
  action: string;
  success: number;
  file_id: string | null;
  upload_id: string | null;
  error_code: string | null;
  bytes_transferred: number;
  duration_ms: number | null;
  ip_address: string | null;
  user_agent: string | null;
  metadata: string | null;
  timestamp: number;
}

/** The metadata column holds a JSON object written by this service; anything unreadable shows as null. */
function parseMetadata(text: string | null): Record<string, unknown> | null {
  if (text === null) return null;
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function eventView(row: AuditRow) {
  return {
    id: row.id,
    action: row.action,
    success: row.success === 1,
    fileId: row.file_id,
    uploadId: row.upload_id,
    errorCode: row.error_code,
    bytesTransferred: row.bytes_transferred,
    durationMs: row.duration_ms,
    ipAddress: row.ip_address,
    userAgent: row.user_agent,
    metadata: parseMetadata(row.metadata),
    timestamp: new Date(row.timestamp).toISOString(),
  };
}

/** `/v1/audit`: the caller's own audit events. */
export const auditLog = new Hono<AppEnv>()
  .use(requireUser)

  // GET /v1/audit?cursor=&limit=&action= — newest first, keyset-paginated over (timestamp, id).
  .get("/", async (c) => {
    const query = ListQuery.parse(c.req.query());
    const where = ["user_id = ?"];
    const binds: unknown[] = [c.get("userId")];
    if (query.action !== undefined) {
      where.push("action = ?");
      binds.push(query.action);
    }
    if (query.cursor !== undefined) {
      const key = decodeCursor("audit", query.cursor);
      where.push("(timestamp, id) < (?, ?)");
      binds.push(key.time, key.id);
    }
    const { results } = await c.env.DB.prepare(
      `SELECT id, action, success, file_id, upload_id, error_code, bytes_transferred, duration_ms, ip_address,
              user_agent, metadata, timestamp
         FROM file_access_logs
        WHERE ${where.join(" AND ")}
        ORDER BY timestamp DESC, id DESC
        LIMIT ?`,
    )
      .bind(...binds, query.limit + 1)
      .all<AuditRow>();
    const page = pageOf("audit", results, query.limit, (row) => ({ time: row.timestamp, id: row.id }));
    return c.json({ events: page.items.map(eventView), nextCursor: page.nextCursor });
  });
