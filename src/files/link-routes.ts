import { Hono } from "hono";
import { createMiddleware } from "hono/factory";
import { auditAs } from "../audit/audit-middleware";
import { admit } from "../auth/admission";
import type { AppEnv } from "../http/app-env";
import { ApiError, notFound } from "../http/errors";
import { deliverFile } from "./file-delivery";
import { findLiveFile } from "./file-records";
import { LINK_PARAMS, LinkRequest, linkVerifyingKey, verifyLink } from "./signed-links";

const linkInvalid = () => new ApiError(403, "link_invalid", "This link is not valid");

/**
 * `/v1/links`: downloads through presigned links (made by `POST /v1/files/:id/links`). No Authorization
 * header: the signed URL is the credential. GET and HEAD behave exactly like
 * `GET|HEAD /v1/files/:id/content`; every other method is 405.
 */
/**
 * Verifies the presigned link and makes the request act for the file's owner, who granted it: the
 * owner's rate limits then apply (a link is the owner's capability, so a flood of link downloads spends
 * the owner's request budget, never another user's), and refusals go to the owner's audit log.
 */
const verifiedLink = createMiddleware<AppEnv>(async (c, next) => {
  // A link that does not even parse is one this service never issued: the same 403 as a forged one,
  // so probing the format teaches nothing.
  const parsed = LinkRequest.safeParse({
    fileId: c.req.param("fileId"),
    owner: c.req.query(LINK_PARAMS.owner),
    expires: c.req.query(LINK_PARAMS.expires),
    kid: c.req.query(LINK_PARAMS.kid),
    signature: c.req.query(LINK_PARAMS.signature),
  });
  if (!parsed.success) throw linkInvalid();
  const { fileId, owner, expires, kid, signature } = parsed.data;
  // The signature first: nothing about the file, its owner or the clock is revealed to a forger. A kid
  // no longer configured (the key was rotated out) makes the link invalid like a wrong signature.
  const claims = { fileId, userId: owner, expiresAt: expires, scope: "GET" as const };
  const key = linkVerifyingKey(c.env, kid);
  if (!key || !(await verifyLink(key.secret, claims, signature))) throw linkInvalid();
  c.set("userId", owner);
  c.set("link", claims);
  auditAs(c, { action: "file.link_download", fileId });
  await next();
});

/**
 * `/v1/links`: downloads through presigned links (made by `POST /v1/files/:id/links`). No Authorization
 * header: the signed URL is the credential. GET and HEAD behave exactly like
 * `GET|HEAD /v1/files/:id/content`; every other method is 405.
 */
export const links = new Hono<AppEnv>()
  // GET|HEAD /v1/links/:fileId?owner=&expires=&signature= (Hono routes HEAD to GET handlers).
  .get("/:fileId", verifiedLink, admit, async (c) => {
    const started = Date.now();
    const { fileId, userId: owner, expiresAt: expires } = c.get("link");
    if (Date.now() >= expires * 1000) {
      throw new ApiError(403, "link_expired", "This link has expired", {
        expiredAt: new Date(expires * 1000).toISOString(),
      });
    }
    const file = await findLiveFile(c.env.DB, owner, fileId);
    if (!file) throw notFound("File");
    return deliverFile(c, file, {
      action: "file.link_download",
      userId: owner,
      started,
      metadata: { linkExpiresAt: new Date(expires * 1000).toISOString() },
    });
  })

  // Anything else on a link URL (PUT, POST, DELETE, PATCH, OPTIONS…): a link only ever reads.
  .all("/:fileId", () => {
    throw new ApiError(405, "method_not_allowed", "A link only supports GET and HEAD", undefined, {
      Allow: "GET, HEAD",
    });
  });
