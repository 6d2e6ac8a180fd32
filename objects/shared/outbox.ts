/**
 * A durable outbox inside a Durable Object's SQLite storage.
 *
 * A state change and the messages it owes the outside world (D1 checkpoints, ledger messages to another
 * object, R2 clean-up) are written in the same synchronous step, so either both happen or neither does.
 * Delivery happens later (from the alarm, or right away when the caller wants it), at least once, in
 * order per topic, with exponential backoff when a receiver is down. Receivers must be idempotent.
 */

import type { SqlStatement } from "../../src/core/sql";

/** Delivers a batch of payloads of one topic; throws to have the whole batch retried later. */
export type Deliver<P> = (payloads: P[]) => Promise<void>;

/** One receiver per topic, each taking the payloads its topic carries. */
export type Receivers<Topics> = { [K in keyof Topics]: Deliver<Topics[K]> };

/** A topic of the outbox: a key of its topic map. */
export type Topic<Topics> = keyof Topics & string;

/** Schema step that creates the outbox table (include it in the object's schema steps). */
export const OUTBOX_SCHEMA = `
  CREATE TABLE outbox (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    topic            TEXT NOT NULL,
    payload          TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    last_error       TEXT,
    created_at       INTEGER NOT NULL
  );
  CREATE INDEX outbox_topic_due ON outbox (topic, next_attempt_at, seq);
`;

const BATCH_SIZE = 50;
const BASE_BACKOFF_MS = 1_000;
const MAX_BACKOFF_MS = 5 * 60_000;
/** A receiver that neither answers nor fails within this long counts as failed for this attempt. */
const DELIVERY_TIMEOUT_MS = 15_000;

/**
 * The outbox of one object. `Topics` maps each topic to the payload its messages carry, e.g.
 * `{ d1: SqlStatement[]; r2: R2Job }`: `enqueue` takes and the receivers get exactly that type.
 */
export class Outbox<Topics extends Record<string, unknown>> {
  #delivering: Promise<void> | null = null;

  constructor(private readonly sql: SqlStorage) {}

  /** Queues a message; call it in the same synchronous step as the state change it reports. */
  enqueue<K extends Topic<Topics>>(topic: K, payload: Topics[K], now = Date.now()): void {
    this.sql.exec(
      "INSERT INTO outbox (topic, payload, next_attempt_at, created_at) VALUES (?, ?, ?, ?)",
      topic,
      JSON.stringify(payload),
      now,
      now,
    );
  }

  /** When the earliest pending message is due, or null when the outbox is empty. */
  nextDueAt(): number | null {
    const row = this.sql.exec<{ due: number | null }>("SELECT MIN(next_attempt_at) AS due FROM outbox").one();
    return row.due ?? null;
  }

  /** Messages still waiting, by topic (for diagnostics and tests). */
  pending(): Record<string, number> {
    const rows = this.sql
      .exec<{ topic: string; n: number }>("SELECT topic, COUNT(*) AS n FROM outbox GROUP BY topic")
      .toArray();
    return Object.fromEntries(rows.map((r) => [r.topic, r.n]));
  }

  /**
   * Delivers every due message of `topics` (every topic of `receivers` when omitted), topic by topic in
   * that order, in order within each. A failing topic is retried later with backoff and does not hold up
   * the others. Never throws. Concurrent calls share one delivery run, because an `await` here opens the
   * input gate and a second run would send the same batch twice.
   */
  async deliver(
    receivers: Receivers<Topics>,
    topics: readonly Topic<Topics>[] = topicsOf(receivers),
    now = Date.now(),
  ): Promise<void> {
    while (this.#delivering) await this.#delivering;
    this.#delivering = this.#deliverAll(receivers, topics, now).finally(() => (this.#delivering = null));
    return this.#delivering;
  }

  async #deliverAll(receivers: Receivers<Topics>, topics: readonly Topic<Topics>[], now: number): Promise<void> {
    for (const topic of topics) await this.#deliverTopic(topic, receivers[topic], now);
  }

  async #deliverTopic<K extends Topic<Topics>>(topic: K, deliver: Deliver<Topics[K]>, now: number): Promise<void> {
    for (;;) {
      const rows = this.sql
        .exec<{ seq: number; payload: string; attempts: number }>(
          "SELECT seq, payload, attempts FROM outbox WHERE topic = ? AND next_attempt_at <= ? ORDER BY seq LIMIT ?",
          topic,
          now,
          BATCH_SIZE,
        )
        .toArray();
      if (rows.length === 0) break;
      // Keep order within a topic: if an earlier message of this topic is still backing off, wait for it.
      const earlier = this.sql
        .exec<{ n: number }>(
          "SELECT COUNT(*) AS n FROM outbox WHERE topic = ? AND seq < ? AND next_attempt_at > ?",
          topic,
          rows[0].seq,
          now,
        )
        .one().n;
      if (earlier > 0) break;
      const seqs = rows.map((r) => r.seq);
      const inList = `(${seqs.map(() => "?").join(",")})`;
      try {
        // The one place stored JSON becomes a payload type: `enqueue` only ever wrote a `Topics[K]` here.
        const payloads = rows.map((r) => JSON.parse(r.payload) as Topics[K]);
        await withTimeout(deliver(payloads), DELIVERY_TIMEOUT_MS);
        this.sql.exec(`DELETE FROM outbox WHERE seq IN ${inList}`, ...seqs);
      } catch (err) {
        const attempts = rows[0].attempts + 1;
        const backoff = Math.min(MAX_BACKOFF_MS, BASE_BACKOFF_MS * 2 ** (attempts - 1));
        const jitter = Math.floor(Math.random() * backoff * 0.2);
        this.sql.exec(
          `UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE seq IN ${inList}`,
          attempts,
          Date.now() + backoff + jitter,
          String(err instanceof Error ? err.message : err).slice(0, 500),
          ...seqs,
        );
        console.warn(
          JSON.stringify({ level: "warn", msg: "outbox delivery failed", topic, attempts, error: String(err) }),
        );
        break;
      }
    }
  }
}

/** The topics of a receiver map, in the order its keys were written. */
function topicsOf<Topics>(receivers: Receivers<Topics>): Topic<Topics>[] {
  return Object.keys(receivers).filter((k): k is Topic<Topics> => k in receivers);
}

async function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs statements queued for D1 as one batch (a single transaction), so a checkpoint lands whole. */
export async function runOnD1(db: D1Database, statements: SqlStatement[]): Promise<void> {
  if (statements.length === 0) return;
  await db.batch(statements.map((s) => db.prepare(s.sql).bind(...s.params)));
}
