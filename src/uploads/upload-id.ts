import type { Context } from "hono";
import { z } from "zod";
import type { AppEnv } from "../http/app-env";
import { ApiError } from "../http/errors";

/** Upload ids are UUIDs the server made; anything else cannot name an upload. */
const UploadId = z.uuid();

/**
 * The upload id of the path (`:id`), for the native and the tus routes alike. A malformed id names no
 * upload, so it answers 404 `upload_not_found`, the same as an unknown or another user's upload.
 */
export function uploadIdOf(c: Context<AppEnv>): string {
  const parsed = UploadId.safeParse(c.req.param("id"));
  if (!parsed.success) throw new ApiError(404, "upload_not_found", "Upload not found");
  return parsed.data;
}
