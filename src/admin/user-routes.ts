import { Hono } from "hono";
import { z } from "zod";
import { accountFor } from "../../objects/stubs";
import { requestMeta } from "../audit/audit-middleware";
import { type AuditRow, auditEventView } from "../audit/audit-view";
import { signUserToken, UserId } from "../auth/tokens";
import { auditSql } from "../core/audit";
import type { AppEnv } from "../http/app-env";
import { invalidRequest, zodDetails } from "../http/errors";
import { jsonBody } from "../http/json-body";
import { accountPolicy } from "../settings/policy";
import { SettingsSchema } from "../settings/settings";

const field = SettingsSchema.shape;

/**
 * A user's overrides: each key is validated with the same bounds as the service setting it overrides;
 * `null` removes the override so the service setting applies again. Unknown keys are refused.
 */
const OverridesPatch = z.strictObject({
  quotaBytes: field.defaultQuotaBytes.nullable().optional(),
  maxFileSizeBytes: field.maxFileSizeBytes.nullable().optional(),
  allowedContentTypes: field.allowedContentTypes.nullable().optional(),
  requestsPerSecond: field.requestsPerSecond.nullable().optional(),
  burst: field.burst.nullable().optional(),
  bytesPerMinute: field.bytesPerMinute.nullable().optional(),
  maxActiveUploads: field.maxActiveUploads.nullable().optional(),
});

const RECENT_AUDIT = 20;

/** A token minted for an operator tool acting as a user: short-lived, 15 minutes unless asked otherwise. */
const TokenRequest = z.strictObject({
  ttlSeconds: z.number().int().min(60).max(86_400).default(900),
});

function userIdOf(param: string | undefined): string {
  const parsed = UserId.safeParse(param);
  if (!parsed.success) throw invalidRequest("The user id is invalid", zodDetails(parsed.error));
  return parsed.data;
}

/** The user's most recent audit events from the D1 index. */
async function recentAudit(db: D1Database, userId: string) {
  const { results } = await db
    .prepare("SELECT * FROM file_access_logs WHERE user_id = ? ORDER BY timestamp DESC, id DESC LIMIT ?")
    .bind(userId, RECENT_AUDIT)
    .all<AuditRow>();
  return results.map(auditEventView);
}

/**
 * `/v1/admin/users/:userId` (behind `requireAdmin`, mounted by the admin sub-app): one user's ledger,
 * effective limits and overrides, straight from their account object, plus their recent audit events.
 * Lowering a quota below what the user already stores is allowed: nothing is deleted, new uploads are
 * refused until they fit.
 */
export const adminUsers = new Hono<AppEnv>()
  .get("/:userId", async (c) => {
    const userId = userIdOf(c.req.param("userId"));
    const view = await accountFor(c.env, userId).adminView(userId, await accountPolicy(c.env));
    return c.json({ ...view, recentAudit: await recentAudit(c.env.DB, userId) });
  })
  .put("/:userId", jsonBody(OverridesPatch), async (c) => {
    const userId = userIdOf(c.req.param("userId"));
    const patch = c.req.valid("json");
    const view = await accountFor(c.env, userId).setOverrides(userId, patch, await accountPolicy(c.env));
    return c.json({ ...view, recentAudit: await recentAudit(c.env.DB, userId) });
  })
  /**
   * Mints a short-lived user token, so operator tools (the migration tool) act through the public API
   * with the user's own quota, rate limits and audit trail, without ever holding the signing secret.
   * The audit row is written before the token is returned: no token leaves unrecorded.
   */
  .post("/:userId/tokens", jsonBody(TokenRequest), async (c) => {
    const userId = userIdOf(c.req.param("userId"));
    const { ttlSeconds } = c.req.valid("json");
    const now = Math.floor(Date.now() / 1000);
    const exp = now + ttlSeconds;
    const meta = requestMeta(c);
    const statement = auditSql({
      id: crypto.randomUUID(),
      userId,
      action: "user.token_issue",
      success: true,
      ipAddress: meta.ipAddress,
      userAgent: meta.userAgent,
      metadata: {
        requestId: meta.requestId,
        ttlSeconds,
        actor: c.req.header("X-Admin-Actor") ?? null,
      },
      timestamp: Date.now(),
    });
    await c.env.DB.prepare(statement.sql)
      .bind(...statement.params)
      .run();
    // Signed with the newest AUTH_SECRET entry (its kid in the header), so it survives a later rotation.
    const token = await signUserToken(c.env, { sub: userId, iat: now, exp });
    return c.json({ token, expiresAt: new Date(exp * 1000).toISOString() }, 201);
  });
