import type { Context } from "hono";
import type { AppEnv } from "../http/app-env";
import { issueUploadToken } from "./tokens";
import { prefersUploadToken, UPLOAD_TOKEN_HEADER, UPLOAD_TOKEN_PREFERENCE } from "./upload-scope";

/**
 * On a tus or resumable creation sent with `Prefer: upload-token`, puts the new upload's token in the
 * `Upload-Token` response header and says so with `Preference-Applied` (RFC 7240 §3: "indicates which
 * preferences were honored by the server"). A creation made with an upload token cannot happen: the
 * collection routes refuse those.
 */
export async function offerUploadToken(c: Context<AppEnv>, uploadId: string): Promise<void> {
  if (!prefersUploadToken(c.req.header("Prefer"))) return;
  const { token } = await issueUploadToken(c.env, c.get("userId"), uploadId);
  c.header(UPLOAD_TOKEN_HEADER, token);
  c.header("Preference-Applied", UPLOAD_TOKEN_PREFERENCE);
}
