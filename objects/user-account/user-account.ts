import type { RequestMeta } from "../../src/core/audit";
import type { FileRecord } from "../../src/core/domain";
import { type Outcome, ok } from "../../src/core/outcome";
import type { AccountPolicy } from "../../src/core/policy";
import { fileRowStatement } from "../shared/checkpoints";
import { runOnD1 } from "../shared/outbox";
import { runR2Jobs } from "../shared/r2-jobs";
import { SqliteObject } from "../shared/sqlite-object";
import { sessionFor } from "../stubs";
import type { LedgerView } from "../upload-session/contract";
import { admit } from "./admission";
import type { AccountView, ActiveUpload, Admission, LedgerMessage, ReserveRequest, Usage } from "./contract";
import {
  type AccountContext,
  type AccountTopics,
  adjustReservation,
  effectivePolicy,
  fileAuditStatement,
  ledgerChanged,
  reservationVerdict,
  reserve,
  scheduleAlarm,
  settle,
  usageOf,
} from "./ledger";
import { LedgerStore } from "./ledger-store";
import { fileNotFound } from "./refusals";
import { ACCOUNT_SCHEMA } from "./schema";

/**
 * One per user: serializes the user's quota ledger, rate limits and per-user overrides. Reservations are taken
 * when an upload is created and settled when it ends: committed into used bytes on completion, released
 * on abort, expiry or failure. Every grant is decided inside one synchronous step, so concurrent
 * requests can never both squeeze into the last free bytes.
 *
 * The methods here are the RPC surface; the ledger's decisions are in `ledger.ts`, the rate limits in
 * `admission.ts`, the SQL in `ledger-store.ts`. Every `await` is here.
 */
export class UserAccount extends SqliteObject<AccountTopics> {
  readonly #cx: AccountContext;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env, ACCOUNT_SCHEMA);
    this.#cx = {
      store: new LedgerStore(this.sql),
      outbox: this.outbox,
      setAlarm: (at) => void ctx.storage.setAlarm(at),
    };
  }

  /** The user's ledger. */
  async usage(userId: string, policy: AccountPolicy): Promise<Usage> {
    this.#cx.store.bind(userId);
    return usageOf(this.#cx.store, policy);
  }

  /**
   * Reserves `bytes` for a new upload if, and only if, they fit: `used + reserved + bytes ≤ limit`.
   * Retrying with the same upload id returns the same grant.
   */
  async reserve(req: ReserveRequest): Promise<Outcome<Usage>> {
    this.#cx.store.bind(req.userId);
    return reserve(this.#cx, req);
  }

  /**
   * Decides whether one request may proceed under the user's rate limits (GCRA: no timers, exact under
   * concurrency because this object serializes its callers): one request unit, plus `bytes` of the byte
   * budget for a request that carries upload data. A refused request spends nothing.
   */
  async admit(req: { userId: string; policy: AccountPolicy; bytes: number }): Promise<Admission> {
    this.#cx.store.bind(req.userId);
    return admit(this.#cx.store, effectivePolicy(this.#cx.store, req.policy), req.bytes, Date.now());
  }

  /** Sets or (with null) removes this user's overrides of the service policy. */
  async setOverrides(
    userId: string,
    patch: { [K in keyof AccountPolicy]?: AccountPolicy[K] | null },
    policy: AccountPolicy,
  ): Promise<AccountView> {
    this.#cx.store.bind(userId);
    for (const [key, value] of Object.entries(patch)) {
      if (value === undefined) continue;
      if (value === null) this.#cx.store.removeOverride(key);
      else this.#cx.store.setOverride(key, value);
    }
    // The limit is part of the ledger's checkpoint: record the change.
    ledgerChanged(this.#cx, effectivePolicy(this.#cx.store, policy));
    return this.adminView(userId, policy);
  }

  /** The user's effective limits (service policy with overrides) and ledger: what a client may still send. */
  async limits(userId: string, policy: AccountPolicy): Promise<{ limits: AccountPolicy; usage: Usage }> {
    this.#cx.store.bind(userId);
    return { limits: effectivePolicy(this.#cx.store, policy), usage: usageOf(this.#cx.store, policy) };
  }

  /** Everything an operator needs about this user: ledger, effective limits, overrides, active uploads. */
  async adminView(userId: string, policy: AccountPolicy): Promise<AccountView> {
    this.#cx.store.bind(userId);
    return {
      userId,
      usage: usageOf(this.#cx.store, policy),
      limits: effectivePolicy(this.#cx.store, policy),
      overrides: this.#cx.store.overrides(),
      activeUploads: await this.listActiveUploads({ userId, limit: 100 }),
    };
  }

  /**
   * Resizes a held reservation to `bytes` (a tus upload with a deferred length reserves as its length
   * becomes known). Growing is granted only if the new total still fits the quota; shrinking always is.
   */
  async adjustReservation(req: {
    userId: string;
    uploadId: string;
    bytes: number;
    policy: AccountPolicy;
  }): Promise<Outcome<Usage>> {
    this.#cx.store.bind(req.userId);
    return adjustReservation(this.#cx, req);
  }

  /** Applies an upload session's final word on its reservation. Idempotent: a repeat changes nothing. */
  async settle(msg: LedgerMessage, policy?: AccountPolicy): Promise<Outcome<Usage>> {
    this.#cx.store.bind(msg.userId);
    settle(this.#cx, msg);
    return ok(usageOf(this.#cx.store, policy ?? null));
  }

  /**
   * Removes a completed file: its bytes go back to the ledger at once, and its R2 object and D1 row are
   * cleaned up through the outbox (tried right away, retried until done). Unknown or already removed → 404.
   */
  async removeFile(req: { userId: string; fileId: string; meta: RequestMeta }): Promise<Outcome<{ file: FileRecord }>> {
    this.#cx.store.bind(req.userId);
    const file = this.#cx.store.liveFile(req.fileId);
    if (!file) return fileNotFound();
    const now = Date.now();
    this.#cx.store.removeFile(req.fileId, now);
    const version = ledgerChanged(this.#cx, null, now);
    this.outbox.enqueue("r2", { op: "delete", key: file.r2Key });
    this.outbox.enqueue("d1", [
      // A later ledger version than the commit's, so the deletion wins in D1 whatever order they land in.
      fileRowStatement(file, { deletedAt: now, updatedAt: now, version }),
      fileAuditStatement(file, "file.delete", req.meta, now),
    ]);
    await this.#deliver();
    return ok({ file });
  }

  /** The user's uploads that still hold a reservation (active or completing), newest first. */
  async listActiveUploads(req: {
    userId: string;
    limit: number;
    after?: { createdAt: number; uploadId: string };
  }): Promise<ActiveUpload[]> {
    this.#cx.store.bind(req.userId);
    return this.#cx.store.held(req.limit, req.after ?? { createdAt: Number.MAX_SAFE_INTEGER, uploadId: "" });
  }

  /** Test and operator view of what is still waiting in the outbox. */
  async pendingCheckpoints(): Promise<Record<string, number>> {
    return this.outbox.pending();
  }

  /**
   * One alarm for every due job: ask after reservations whose session may be gone (so a Worker that died
   * between reserving and opening the session cannot leak quota), then deliver the outbox. Idempotent.
   */
  override async alarm(): Promise<void> {
    await this.#reconcileReservations();
    await this.#deliver();
  }

  async #reconcileReservations(): Promise<void> {
    const now = Date.now();
    const due = this.#cx.store.dueChecks(now);
    const userId = this.#cx.store.userId();
    for (const uploadId of due) {
      let view: LedgerView;
      try {
        view = await sessionFor(this.env, uploadId).ledgerView();
      } catch {
        this.#cx.store.checkAgainAt(uploadId, now + 60_000);
        continue;
      }
      // The await above let other requests in: act only on what is still held.
      if (!this.#cx.store.isHeld(uploadId)) continue;
      const verdict = reservationVerdict(userId, uploadId, view, now);
      if (verdict.kind === "settle") settle(this.#cx, verdict.message);
      else this.#cx.store.checkAgainAt(uploadId, verdict.at);
    }
    scheduleAlarm(this.#cx);
  }

  async #deliver(): Promise<void> {
    await this.outbox.deliver({
      d1: (batches) => runOnD1(this.env.DB, batches.flat()),
      r2: (jobs) => runR2Jobs(this.env.BUCKET, jobs),
    });
    scheduleAlarm(this.#cx);
  }
}
