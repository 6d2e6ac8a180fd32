import { sessionFor } from "../../objects/stubs";
import type { RequestMeta } from "../core/audit";
import type { FileRecord } from "../core/domain";
import { ApiError, unwrap } from "../http/errors";
import { assembleObject, PartsRejected, sha256OfObject } from "./r2-parts";

/**
 * Completes an upload, whichever front door it came through (native `POST /v1/uploads/:id/complete`, or
 * the tus PATCH that brings the last byte): the session moves to completing and hands over its parts,
 * the Worker assembles them in R2 and verifies a declared SHA-256 by reading the object back through a
 * digest, then the session records the file and commits the reservation in the ledger (files row and
 * audit event through its outbox). Safe to call again: a completed upload returns the same file.
 * Refusals are thrown as ApiErrors.
 *
 * A completion that fails between the two steps (R2 refuses or fails to assemble, the read-back fails,
 * the session does not answer) hands the upload back before the error goes out: it is active again, so
 * the client can complete again, re-send a part, or abort, which releases the reservation at once
 * (issue 17). When R2 rejects the parts themselves, they are all missing again (409 parts_missing lists
 * them; a tus upload's offset is 0). If this Worker dies instead, the session's alarm resolves the
 * completion within its window.
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
  try {
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
    return unwrap(await session.finishCompletion(userId, { etag, checksum, attempt: step.attempt }, meta));
  } catch (err) {
    // Hand the completion back. The session ignores this when the upload already left `completing` (a
    // refusal of finishCompletion, such as a checksum mismatch, settled it) or another completion began;
    // if another request completed it meanwhile, its file is the answer.
    const rejected = err instanceof PartsRejected;
    const back = await session.abandonCompletion(userId, step.attempt, rejected).catch(() => null);
    if (back?.ok && back.value.file) return back.value.file;
    if (rejected && back?.ok && back.value.status === "active") {
      // The parts are forgotten: say what to do, as any completion with parts missing does.
      throw new ApiError(
        409,
        "parts_missing",
        "Storage does not hold the parts as recorded: they are missing again; send them, then complete",
        { missingParts: back.value.missingParts, cause: err.details },
      );
    }
    throw err;
  }
}
