import { sessionFor } from "../../objects/stubs";
import type { RequestMeta } from "../core/audit";
import type { FileRecord } from "../core/domain";
import { unwrap } from "../http/errors";
import { assembleObject, sha256OfObject } from "./r2-parts";

/**
 * Completes an upload, whichever front door it came through (native `POST /v1/uploads/:id/complete`, or
 * the tus PATCH that brings the last byte): the session moves to completing and hands over its parts,
 * the Worker assembles them in R2 and verifies a declared SHA-256 by reading the object back through a
 * digest, then the session records the file and commits the reservation in the ledger (files row and
 * audit event through its outbox). Safe to call again: a completed upload returns the same file.
 * Refusals are thrown as ApiErrors.
 */
export async function completeUpload(
  env: Env,
  uploadId: string,
  userId: string,
  meta: RequestMeta,
): Promise<FileRecord> {
  const session = sessionFor(env, uploadId);
  const step = unwrap(await session.beginCompletion(userId));
  if (step.kind === "done") return step.file;
  const { etag } = await assembleObject(env.BUCKET, step);
  let checksum: "verified" | "not_declared" | { mismatch: string } = "not_declared";
  if (step.sha256) {
    const actual = await sha256OfObject(env.BUCKET, step.r2Key);
    if (actual === step.sha256) checksum = "verified";
    else {
      // Never keep bytes the client did not mean: delete before the session releases the quota.
      await env.BUCKET.delete(step.r2Key);
      checksum = { mismatch: actual };
    }
  }
  return unwrap(await session.finishCompletion(userId, { etag, checksum }, meta));
}
