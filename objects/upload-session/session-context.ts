/**
 * What every step of the session writes to: its SQLite rows (through the store), its outbox and its one
 * alarm. A step changes state and queues the messages it owes in one synchronous run, so both happen or
 * neither does.
 */
import type { Outcome } from "../../src/core/outcome";
import type { SqlStatement } from "../../src/core/sql";
import type { Outbox, Topic } from "../shared/outbox";
import type { R2Job } from "../shared/r2-jobs";
import type { LedgerMessage } from "../user-account/contract";
import type { SessionStore } from "./session-store";

/** The session's outbox topics: D1 checkpoints (one batch per message), ledger settlements, R2 clean-up. */
export type SessionTopics = { d1: SqlStatement[]; ledger: LedgerMessage; r2: R2Job };

/** The session's storage, outbox and alarm, as the steps of `native-upload.ts` and `tus-upload.ts` take them. */
export interface SessionContext {
  store: SessionStore;
  outbox: Outbox<SessionTopics>;
  /** Sets the object's one alarm to fire at `at` (epoch ms). */
  setAlarm(at: number): void;
}

/**
 * What a step answers, and the outbox topics to deliver before the answer goes out (none: answer at once).
 * Delivering opens the input gate, so it is the last thing a step does.
 */
export interface Answer<T> {
  outcome: Outcome<T>;
  deliver: readonly Topic<SessionTopics>[];
}

/** An answer that waits for `deliver` (when given) to be delivered first. */
export function answer<T>(outcome: Outcome<T>, deliver: readonly Topic<SessionTopics>[] = []): Answer<T> {
  return { outcome, deliver };
}

/** Arms the single alarm for the earliest due job: outbox delivery or the session's expiry. */
export function scheduleAlarm(cx: SessionContext): void {
  const session = cx.store.load();
  const due = [cx.outbox.nextDueAt()];
  if (session && (session.status === "active" || session.status === "completing")) due.push(session.expiresAt);
  const times = due.filter((t): t is number => t !== null);
  if (times.length > 0) cx.setAlarm(Math.min(...times));
}

/** Queues the deletion of a tail object that is no longer (or never was) part of the upload. */
export function discardTail(cx: SessionContext, key: string): void {
  cx.outbox.enqueue("r2", { op: "delete", key });
  scheduleAlarm(cx);
}
