import { sessionFor } from "../../objects/stubs";

/** How far past its expiry a session may be before the sweep assumes its alarm was lost. */
const GRACE_MS = 60_000;
/** Sessions woken per sweep; the next sweep takes the rest. */
const BATCH = 200;

/**
 * The periodic maintenance sweep (cron): finds uploads that D1 still shows active or completing well past
 * their expiry and wakes their session objects, which expire or fail them and flush their outboxes.
 * Alarms make this unnecessary in the normal case; the sweep covers a lost alarm.
 */
export async function sweepExpiredUploads(env: Env, now = Date.now()): Promise<{ woken: number; failed: number }> {
  const { results } = await env.DB.prepare(
    `SELECT upload_id FROM multipart_uploads
      WHERE status IN ('active', 'completing') AND expires_at < ?
      ORDER BY expires_at LIMIT ?`,
  )
    .bind(now - GRACE_MS, BATCH)
    .all<{ upload_id: string }>();
  const outcomes = await Promise.allSettled(results.map((r) => sessionFor(env, r.upload_id).sweep()));
  const failed = outcomes.filter((o) => o.status === "rejected").length;
  if (results.length > 0) {
    console.log(JSON.stringify({ level: "info", msg: "expiry sweep", woken: results.length - failed, failed }));
  }
  return { woken: results.length - failed, failed };
}
