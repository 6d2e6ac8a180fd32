/**
 * What the two front doors that append bytes under a write lease share: tus (`/v1/tus`) and the IETF
 * resumable-upload draft (`/v1/resumable`) write the same sessions through the same lease.
 */
import type { Context } from "hono";
import { sessionFor } from "../../objects/stubs";
import type { TusStatus } from "../../objects/upload-session/contract";
import { requestMeta } from "../audit/audit-middleware";
import type { FileRecord } from "../core/domain";
import type { Outcome } from "../core/outcome";
import type { AppEnv } from "../http/app-env";
import { ApiError } from "../http/errors";
import { policyFromSettings } from "../settings/policy";
import { loadSettings } from "../settings/settings";
import { completeUpload } from "../uploads/complete-upload";
import { EMPTY_BODY, type TusBody, writeTusBody } from "./tus-writer";

/** How long a write lease lasts without news from its holder (who renews it while it streams). */
const DEFAULT_LEASE_SECONDS = 30;

/** The lease length; `TUS_LEASE_SECONDS` (optional, not in wrangler.toml) shortens it for tests. */
export function leaseMsOf(env: Env): number {
  const raw = (env as { TUS_LEASE_SECONDS?: string }).TUS_LEASE_SECONDS;
  const seconds = raw === undefined ? NaN : Number(raw);
  return (Number.isFinite(seconds) && seconds > 0 && seconds <= 3600 ? seconds : DEFAULT_LEASE_SECONDS) * 1000;
}

/** An outcome's value, or its failure thrown; a 423 (another writer holds the lease) carries `Retry-After`. */
export function unwrapLeased<T>(outcome: Outcome<T>): T {
  if (outcome.ok) return outcome.value;
  const { status, code, message, details } = outcome.error;
  const retry = (details as { retryAfterSeconds?: number } | undefined)?.retryAfterSeconds;
  throw new ApiError(
    status,
    code,
    message,
    details,
    status === 423 && retry ? { "Retry-After": String(retry) } : undefined,
  );
}

/** Keeps a write going when the client disconnects, so it can record what arrived and give the lease back. */
export function outliveClient<T>(c: Context<AppEnv>, work: Promise<T>): Promise<T> {
  try {
    c.executionCtx.waitUntil(
      work.then(
        () => {},
        () => {},
      ),
    );
  } catch {
    // No execution context (app.request() in a test): the promise runs to completion anyway.
  }
  return work;
}

/** What a write under the lease achieved. */
export interface Accepted {
  offset: number;
  /** When the unfinished upload expires; null once it is a file. */
  expiresAt: number | null;
  file: FileRecord | null;
  /** The upload was complete before this request: it changed nothing. */
  wasComplete: boolean;
}

/**
 * Takes the lease at `offset`, streams the body, records it, and when the last byte is in, completes the
 * upload exactly as every front door does (shared `completeUpload`: assemble, ledger commit, files
 * row, audit). Also used with an empty body to finish an upload whose writer died after its last byte.
 */
export async function appendAt(c: Context<AppEnv>, uploadId: string, offset: number, body: TusBody): Promise<Accepted> {
  const env = c.env;
  const userId = c.get("userId");
  const meta = requestMeta(c);
  const leaseMs = leaseMsOf(env);
  const { settings } = await loadSettings(env);
  const session = sessionFor(env, uploadId);
  const grant = unwrapLeased(
    await session.tusBeginWrite(userId, {
      offset,
      contentLength: body.length,
      uploadLength: body.uploadLength,
      checksum: body.checksum !== null,
      policy: policyFromSettings(settings),
      leaseMs,
    }),
  );
  if (grant.kind === "done") return { offset: grant.offset, expiresAt: null, file: grant.file, wasComplete: true };
  let reached = grant.offset;
  if (grant.kind === "write") {
    const written = await writeTusBody(env, userId, uploadId, grant, body, leaseMs, meta);
    if (!written.completing) {
      return { offset: written.offset, expiresAt: written.expiresAt, file: null, wasComplete: false };
    }
    reached = written.offset;
  }
  try {
    const file = await completeUpload(env, uploadId, userId, meta);
    return { offset: reached, expiresAt: null, file, wasComplete: false };
  } catch (err) {
    await session.tusReleaseLease(userId, grant.token, null).catch(() => {});
    throw err;
  }
}

/**
 * Where a leased upload stands, as HEAD reports it. An upload whose last byte arrived but whose writer
 * died before completing it is completed first, so an offset equal to the length always comes with a file.
 */
export async function settledStatus(c: Context<AppEnv>, uploadId: string): Promise<TusStatus> {
  const session = sessionFor(c.env, uploadId);
  const userId = c.get("userId");
  const status = unwrapLeased(await session.tusStatus(userId));
  if (!status.needsFinish) return status;
  await outliveClient(c, appendAt(c, uploadId, status.offset, EMPTY_BODY));
  return unwrapLeased(await session.tusStatus(userId));
}
