import { Hono } from "hono";
import { auditAs } from "../audit/audit-middleware";
import type { AppEnv } from "../http/app-env";
import { ApiError, notFound } from "../http/errors";
import { deliverFile } from "./file-delivery";
import { findLiveFile } from "./file-records";
import { LINK_PARAMS, LinkRequest, verifyLink } from "./signed-links";

const linkInvalid = () => new ApiError(403, "link_invalid", "This link is not valid");

/**
 * `/v1/links`: downloads through presigned links (made by `POST /v1/files/:id/links`). No Authorization
 * header: the signed URL is the credential. GET and HEAD behave exactly like
 * `GET|HEAD /v1/files/:id/content`; every other method is 405.
 */
export const links = new Hono<AppEnv>()
  // GET|HEAD /v1/links/:fileId?owner=&expires=&signature= (Hono routes HEAD to GET handlers).
  .get("/:fileId", async (c) => {
    const started = Date.now();
    // A link that does not even parse is one this service never issued: the same 403 as a forged one,
    // so probing the format teaches nothing.
    const parsed = LinkRequest.safeParse({
      fileId: c.req.param("fileId"),
      owner: c.req.query(LINK_PARAMS.owner),
      expires: c.req.query(LINK_PARAMS.expires),
      signature: c.req.query(LINK_PARAMS.signature),
    });
    if (!parsed.success) throw linkInvalid();
    const { fileId, owner, expires, signature } = parsed.data;

    // The signature first: nothing about the file, its owner or the clock is revealed to a forger.
    const claims = { fileId, userId: owner, expiresAt: expires, scope: "GET" as const };
    if (!(await verifyLink(c.env.AUTH_SECRET, claims, signature))) throw linkInvalid();

    // From here the request acts for the owner, who granted it: refusals (expired, deleted, 412, 416)
    // and the download itself go to the owner's audit log.
    c.set("userId", owner);
    auditAs(c, { action: "file.link_download", fileId });

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
