// The durable outbox both objects share: delivery in order per topic, a failing receiver retried with
// exponential backoff without holding up the other topics, and no message sent twice. First the Outbox
// itself, over the SQLite storage of a real object; then through an upload session's own alarm, driven
// with runDurableObjectAlarm, while D1 refuses its checkpoints.
import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { Outbox } from "../../objects/shared/outbox";
import { sessionFor } from "../../objects/stubs";
import type { SessionInit } from "../../src/core/domain";
import { MiB, sleep } from "../support/http";
import { d1Upload, drain, testMeta } from "../support/objects";

type Topics = { a: string; b: string };

/**
 * Runs `fn` with an Outbox over the storage of a new, never opened upload session: its schema made the
 * outbox table, and the object's own outbox delivers only its own topics (d1, ledger, r2) and has no alarm.
 */
function withOutbox<R>(fn: (outbox: Outbox<Topics>, sql: SqlStorage) => Promise<R>): Promise<R> {
  return runInDurableObject(sessionFor(env, crypto.randomUUID()), (_o, state) =>
    fn(new Outbox<Topics>(state.storage.sql), state.storage.sql),
  );
}

/** Receivers that record every batch they get, by topic; `down` topics throw instead. */
function recorder(down: (keyof Topics)[] = []) {
  const got: Record<keyof Topics, string[][]> = { a: [], b: [] };
  const receive = (topic: keyof Topics) => async (batch: string[]) => {
    if (down.includes(topic)) throw new Error(`${topic} is down`);
    got[topic].push(batch);
  };
  return { got, receivers: { a: receive("a"), b: receive("b") } };
}

/** The outbox rows of a topic, oldest first. */
function rowsOf(sql: SqlStorage, topic: string) {
  return sql
    .exec<{ payload: string; attempts: number; next_attempt_at: number; last_error: string | null }>(
      "SELECT payload, attempts, next_attempt_at, last_error FROM outbox WHERE topic = ? ORDER BY seq",
      topic,
    )
    .toArray();
}

describe("the outbox", () => {
  it("delivers each topic's messages in the order they were queued, in batches of at most 50", async () => {
    await withOutbox(async (outbox) => {
      const queued: Record<keyof Topics, string[]> = { a: [], b: [] };
      for (let i = 0; i < 120; i++) {
        outbox.enqueue("a", `a${i}`);
        queued.a.push(`a${i}`);
        if (i % 2 === 0) {
          outbox.enqueue("b", `b${i}`);
          queued.b.push(`b${i}`);
        }
      }
      expect(outbox.pending()).toEqual({ a: 120, b: 60 });
      const { got, receivers } = recorder();
      await outbox.deliver(receivers);
      expect(got.a.map((batch) => batch.length)).toEqual([50, 50, 20]);
      expect(got.a.flat()).toEqual(queued.a);
      expect(got.b.map((batch) => batch.length)).toEqual([50, 10]);
      expect(got.b.flat()).toEqual(queued.b);
      expect(outbox.pending()).toEqual({});
      expect(outbox.nextDueAt()).toBeNull();
    });
  });

  it("backs off a failing topic without holding up the others; its later messages wait behind it", async () => {
    await withOutbox(async (outbox, sql) => {
      outbox.enqueue("a", "a1");
      outbox.enqueue("b", "b1");
      outbox.enqueue("a", "a2");
      const down = recorder(["a"]);
      const before = Date.now();
      // A receiver that throws never makes deliver throw: the failure is recorded for a later retry.
      await expect(outbox.deliver(down.receivers)).resolves.toBeUndefined();
      const after = Date.now();
      expect(down.got.b).toEqual([["b1"]]);
      const failed = rowsOf(sql, "a");
      expect(failed.map((r) => [r.payload, r.attempts, r.last_error])).toEqual([
        ['"a1"', 1, "a is down"],
        ['"a2"', 1, "a is down"],
      ]);
      // The first retry is due a second later, plus up to 20 % jitter.
      for (const r of failed) {
        expect(r.next_attempt_at).toBeGreaterThanOrEqual(before + 1000);
        expect(r.next_attempt_at).toBeLessThanOrEqual(after + 1200);
      }
      expect(outbox.nextDueAt()).toBe(Math.min(...failed.map((r) => r.next_attempt_at)));

      // A message queued now is due at once, but must not overtake the two still backing off.
      outbox.enqueue("a", "a3");
      const up = recorder();
      await outbox.deliver(up.receivers);
      expect(up.got.a).toEqual([]);
      expect(outbox.pending()).toEqual({ a: 3 });

      // Once they are due (made so in storage rather than waited for), all three go, in order.
      sql.exec("UPDATE outbox SET next_attempt_at = 0");
      await outbox.deliver(up.receivers);
      expect(up.got.a).toEqual([["a1", "a2", "a3"]]);
      expect(outbox.pending()).toEqual({});
    });
  });

  it("sends nothing twice when deliveries overlap (an await opens the input gate)", async () => {
    await withOutbox(async (outbox) => {
      for (const p of ["a1", "a2", "a3"]) outbox.enqueue("a", p);
      const got: string[] = [];
      const slow = async (batch: string[]) => {
        await sleep(20);
        got.push(...batch);
      };
      await Promise.all([
        outbox.deliver({ a: slow, b: slow }),
        outbox.deliver({ a: slow, b: slow }),
        outbox.deliver({ a: slow, b: slow }),
      ]);
      expect(got).toEqual(["a1", "a2", "a3"]);
      expect(outbox.pending()).toEqual({});
    });
  });
});

describe("an upload session's checkpoints while D1 refuses them", () => {
  /** The session's queued D1 checkpoints, read from its storage. */
  const d1Rows = (uploadId: string) =>
    runInDurableObject(sessionFor(env, uploadId), (_o, state) => rowsOf(state.storage.sql, "d1"));

  /**
   * Runs the session's alarm until its D1 checkpoint has been tried `attempts` times. The runtime may fire
   * the alarm on its own first, or be running it right now (then runDurableObjectAlarm finds nothing to
   * run): either way the attempt is made once, so wait for it to be recorded.
   */
  async function attempted(uploadId: string, attempts: number) {
    for (let i = 0; i < 100; i++) {
      await runDurableObjectAlarm(sessionFor(env, uploadId));
      const rows = await d1Rows(uploadId);
      if (rows.length > 0 && rows[0].attempts >= attempts) return rows[0];
      await sleep(20);
    }
    throw new Error(`the checkpoint was never tried ${attempts} times`);
  }

  /** Makes the queued checkpoints due now, as if their backoff had passed. */
  const makeDue = (uploadId: string, attempts?: number) =>
    runInDurableObject(sessionFor(env, uploadId), (_o, state) => {
      if (attempts === undefined) state.storage.sql.exec("UPDATE outbox SET next_attempt_at = 0");
      else state.storage.sql.exec("UPDATE outbox SET next_attempt_at = 0, attempts = ?", attempts);
    });

  it("retries from the alarm with exponential backoff capped at 5 minutes, then delivers once D1 is back", async () => {
    const uploadId = crypto.randomUUID();
    const userId = "outbox-backoff";
    const init: SessionInit = {
      uploadId,
      userId,
      fileId: crypto.randomUUID(),
      protocol: "native",
      filename: "b.bin",
      contentType: "application/octet-stream",
      // An empty file: the session needs no R2 multipart upload, only its D1 checkpoint.
      size: 0,
      partSize: 5 * MiB,
      partCount: 0,
      sha256: null,
      metadata: null,
      r2Key: `u/${userId}/b`,
      ttlSeconds: 3600,
    };
    // D1 refuses every upload checkpoint while the table is gone.
    await env.DB.exec("ALTER TABLE multipart_uploads RENAME TO multipart_uploads_offline");
    try {
      // The creation's checkpoint is due at once; its first attempt may be the runtime's own alarm.
      let before = Date.now();
      expect((await sessionFor(env, uploadId).open(init, testMeta)).ok).toBe(true);
      for (let attempts = 1; attempts <= 4; attempts++) {
        if (attempts > 1) {
          before = Date.now();
          await makeDue(uploadId);
        }
        const row = await attempted(uploadId, attempts);
        const after = Date.now();
        const backoff = 1000 * 2 ** (attempts - 1); // 1 s, 2 s, 4 s, 8 s
        expect(row.attempts).toBe(attempts);
        expect(row.last_error).toMatch(/multipart_uploads/);
        expect(row.next_attempt_at, `attempt ${attempts}`).toBeGreaterThanOrEqual(before + backoff);
        expect(row.next_attempt_at, `attempt ${attempts}`).toBeLessThanOrEqual(after + backoff * 1.2);
      }

      // However many attempts failed, the wait never exceeds five minutes (plus jitter).
      before = Date.now();
      await makeDue(uploadId, 11);
      const capped = await attempted(uploadId, 12);
      const after = Date.now();
      expect(capped.attempts).toBe(12);
      expect(capped.next_attempt_at).toBeGreaterThanOrEqual(before + 300_000);
      expect(capped.next_attempt_at).toBeLessThanOrEqual(after + 360_000);
      // The alarm set for that retry, run now, finds nothing due: the checkpoint is not tried early.
      expect(await runDurableObjectAlarm(sessionFor(env, uploadId))).toBe(true);
      expect(await d1Rows(uploadId)).toMatchObject([{ attempts: 12, next_attempt_at: capped.next_attempt_at }]);
    } finally {
      await env.DB.exec("ALTER TABLE multipart_uploads_offline RENAME TO multipart_uploads");
    }

    // D1 is back: the next attempt delivers the checkpoint, exactly once.
    await makeDue(uploadId);
    await drain(sessionFor(env, uploadId));
    expect(await d1Upload(uploadId)).toMatchObject({ status: "active", user_id: userId, total_size: 0, version: 1 });
    const audit = await env.DB.prepare("SELECT action FROM file_access_logs WHERE upload_id = ?").bind(uploadId).all();
    expect(audit.results).toEqual([{ action: "upload.create" }]);
  });
});
