import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import { type AuditAction, type AuditEvent, auditSql, type RequestMeta } from "../core/audit";
import type { AppEnv } from "../http/app-env";

/** The request metadata of a Hono context: request id, client IP (`CF-Connecting-IP`) and user agent. */
export function requestMeta(c: Context<AppEnv>): RequestMeta {
  return {
    requestId: c.get("requestId"),
    ipAddress: c.req.header("CF-Connecting-IP") ?? null,
    userAgent: c.req.header("User-Agent")?.slice(0, 512) ?? null,
  };
}

/** {@link auditSql} as a prepared D1 statement. */
export function auditStatement(db: D1Database, e: AuditEvent): D1PreparedStatement {
  const { sql, params } = auditSql(e);
  return db.prepare(sql).bind(...params);
}

const WRITE_ATTEMPTS = 4;

/**
 * Writes audit events from the Worker after the response (`waitUntil`), retrying with backoff. Used for
 * events that belong to no Durable Object (downloads, denied attempts); events that change an upload or
 * a ledger go through that object's outbox instead, so none is lost when D1 hiccups.
 */
export function writeAuditLater(c: Context<AppEnv>, events: AuditEvent[]): void {
  if (events.length === 0) return;
  const db = c.env.DB;
  const work = (async () => {
    for (let attempt = 1; attempt <= WRITE_ATTEMPTS; attempt++) {
      try {
        await db.batch(events.map((e) => auditStatement(db, e)));
        return;
      } catch (err) {
        if (attempt === WRITE_ATTEMPTS) {
          console.error(
            JSON.stringify({
              level: "error",
              msg: "audit write failed",
              requestId: c.get("requestId"),
              error: String(err),
            }),
          );
          return;
        }
        await new Promise((r) => setTimeout(r, 100 * 4 ** (attempt - 1)));
      }
    }
  })();
  try {
    c.executionCtx.waitUntil(work);
  } catch {
    // No execution context (e.g. app.request() in a unit test): the promise still runs to completion.
  }
}

/** What a route is about to do, so a refusal can be audited: set by the handler before it decides. */
export interface AuditSubject {
  action: AuditAction;
  uploadId?: string | null;
  fileId?: string | null;
}

/** Marks the request as an auditable operation on `subject`. */
export function auditAs(c: Context<AppEnv>, subject: AuditSubject): void {
  c.set("auditSubject", subject);
}

/**
 * Middleware form of {@link auditAs}, for routes whose input is validated before the handler runs: the
 * operation is marked first, so a refused body is audited like any other refusal. `subjectOf` may name
 * the path's id.
 */
export function auditing(
  action: AuditAction,
  subjectOf: (c: Context<AppEnv>) => Omit<AuditSubject, "action"> = () => ({}),
) {
  return createMiddleware<AppEnv>(async (c, next) => {
    auditAs(c, { action, ...subjectOf(c) });
    await next();
  });
}

/**
 * Records every refused attempt of an audited operation (any 4xx/5xx after `auditAs` was called by an
 * authenticated route) with its error code. Successful events are recorded where the change happens.
 */
export const auditRefusals = createMiddleware<AppEnv>(async (c, next) => {
  const started = Date.now();
  await next();
  const subject = c.get("auditSubject");
  const userId = c.get("userId");
  if (!subject || !userId || c.res.status < 400) return;
  const meta = requestMeta(c);
  writeAuditLater(c, [
    {
      id: crypto.randomUUID(),
      userId,
      action: subject.action,
      success: false,
      uploadId: subject.uploadId ?? null,
      fileId: subject.fileId ?? null,
      errorCode: c.get("errorCode") ?? `http_${c.res.status}`,
      durationMs: Date.now() - started,
      ipAddress: meta.ipAddress,
      userAgent: meta.userAgent,
      timestamp: Date.now(),
    },
  ]);
});
