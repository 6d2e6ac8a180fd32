import { accountFor, sessionFor } from "../../objects/stubs";
import type { RequestMeta } from "../core/audit";
import type { SessionInit, SessionView } from "../core/domain";
import type { AccountPolicy } from "../core/policy";
import { unwrap } from "../http/errors";

/**
 * Creates an upload, whichever front door it came through: the user's account reserves the bytes
 * (deciding size, type, quota and concurrency with the user's own limits), then the session opens its
 * R2 multipart upload. If opening fails the reservation is released here; if this Worker dies between
 * the two steps, the account's own reconciliation releases it. Refusals are thrown as ApiErrors.
 */
export async function createUpload(
  env: Env,
  init: Omit<SessionInit, "r2Key">,
  policy: AccountPolicy,
  meta: RequestMeta,
): Promise<SessionView> {
  const { userId, uploadId } = init;
  const account = accountFor(env, userId);
  unwrap(
    await account.reserve({
      userId,
      uploadId,
      fileId: init.fileId,
      filename: init.filename,
      bytes: init.size,
      contentType: init.contentType,
      policy,
    }),
  );
  try {
    // The storage key is the server's, never the client's: no traversal, no collisions.
    return unwrap(await sessionFor(env, uploadId).open({ ...init, r2Key: `u/${userId}/${init.fileId}` }, meta));
  } catch (err) {
    await account.settle({ userId, uploadId, kind: "release", reason: "open_failed" });
    throw err;
  }
}
