import { Hono } from "hono";
import { z } from "zod";
import { requireUser } from "../auth/user-auth";
import { AUDIT_ACTIONS } from "../core/audit";
import type { AppEnv } from "../http/app-env";
import { Cursor, decodeCursor, Limit, optionalParam, pageOf } from "../http/pagination";
import { type AuditRow, auditEventView } from "./audit-view";

const ListQuery = z.object({
  cursor: Cursor,
  limit: Limit,
  action: optionalParam(z.enum(AUDIT_ACTIONS, { error: `must be one of: ${AUDIT_ACTIONS.join(", ")}` })),
});

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
      `SELECT *
         FROM file_access_logs
        WHERE ${where.join(" AND ")}
        ORDER BY timestamp DESC, id DESC
        LIMIT ?`,
    )
      .bind(...binds, query.limit + 1)
      .all<AuditRow>();
    const page = pageOf("audit", results, query.limit, (row) => ({ time: row.timestamp, id: row.id }));
    return c.json({ events: page.items.map(auditEventView), nextCursor: page.nextCursor });
  });
