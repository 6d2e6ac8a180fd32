import { Hono } from "hono";
import { z } from "zod";
import { accountFor, sessionFor } from "../../objects/stubs";
import { auditAs, auditing, requestMeta } from "../audit/audit-middleware";
import { issueUploadToken } from "../auth/tokens";
import { requireUser } from "../auth/user-auth";
import type { SessionView } from "../core/domain";
import { sanitizeFilename } from "../core/filename";
import { MEDIA_TYPE } from "../core/media-type";
import { planParts } from "../core/part-plan";
import { publicFile } from "../files/file-records";
import type { AppEnv } from "../http/app-env";
import { parseContentDigest } from "../http/content-digest";
import { ApiError, unwrap } from "../http/errors";
import { jsonBody } from "../http/json-body";
import { Cursor, decodeCursor, Limit, pageOf } from "../http/pagination";
import { policyFromSettings } from "../settings/policy";
import { loadSettings } from "../settings/settings";
import { completeUpload } from "./complete-upload";
import { createUpload } from "./create-upload";
import { writePart } from "./r2-parts";
import { uploadIdOf } from "./upload-id";

/** Client metadata is a small string map: at most 2 KiB as JSON. */
const MAX_METADATA_BYTES = 2048;

const CreateUpload = z
  .object({
    filename: z.string().min(1).max(1024),
    size: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
    contentType: z.string().max(255).regex(MEDIA_TYPE, "must be a media type such as image/png").optional(),
    sha256: z
      .string()
      .regex(/^[0-9a-fA-F]{64}$/, "must be 64 hex digits")
      .transform((s) => s.toLowerCase())
      .optional(),
    metadata: z
      .record(z.string().min(1).max(128), z.string())
      .refine(
        (m) => new TextEncoder().encode(JSON.stringify(m)).length <= MAX_METADATA_BYTES,
        `must be at most ${MAX_METADATA_BYTES} bytes as JSON`,
      )
      .optional(),
    // true: the answer carries an upload token for this upload alone (docs/auth.md), to hand to a browser.
    uploadToken: z.boolean().optional(),
  })
  .strict();

/** Part numbers as written in the path; the range check against the session's plan is the session's. */
const PartNumber = z
  .string()
  .regex(/^\d{1,6}$/, "must be a whole number")
  .transform(Number);
const ListQuery = z.object({ cursor: Cursor, limit: Limit });

const iso = (ms: number) => new Date(ms).toISOString();

/** The public shape of a session: everything a client needs to resume. */
function sessionJson(s: SessionView) {
  return {
    uploadId: s.uploadId,
    status: s.status,
    filename: s.filename,
    contentType: s.contentType,
    size: s.size,
    partSize: s.partSize,
    partCount: s.partCount,
    ...(s.sha256 ? { sha256: s.sha256 } : {}),
    ...(s.metadata ? { metadata: s.metadata } : {}),
    parts: s.parts,
    missingParts: s.missingParts,
    bytesReceived: s.bytesReceived,
    expiresAt: iso(s.expiresAt),
    createdAt: iso(s.createdAt),
    ...(s.file ? { file: publicFile(s.file) } : {}),
  };
}

/**
 * `/v1/uploads`: resumable multipart uploads. The Worker streams bytes straight to R2; the user's account
 * object decides quota, the upload's session object records parts and owns expiry.
 */
export const uploads = new Hono<AppEnv>()
  .use(requireUser)

  // Create: reserve the bytes in the ledger first, then open the session. If opening fails the
  // reservation is released here; if this Worker dies in between, the ledger's own check releases it.
  .post("/", auditing("upload.create"), jsonBody(CreateUpload), async (c) => {
    const input = c.req.valid("json");
    const { settings } = await loadSettings(c.env);
    const userId = c.get("userId");
    const contentType = input.contentType ?? "application/octet-stream";
    const plan = unwrap(planParts(input.size, settings.partSizeBytes));
    const uploadId = crypto.randomUUID();
    const fileId = crypto.randomUUID();
    const filename = sanitizeFilename(input.filename);
    auditAs(c, { action: "upload.create", uploadId, fileId });
    const session = await createUpload(
      c.env,
      {
        uploadId,
        userId,
        fileId,
        filename,
        contentType,
        size: input.size,
        partSize: plan.partSize,
        partCount: plan.partCount,
        sha256: input.sha256 ?? null,
        metadata: input.metadata ?? null,
        protocol: "native",
        ttlSeconds: settings.uploadTtlSeconds,
      },
      policyFromSettings(settings),
      requestMeta(c),
    );
    c.header("Location", `/v1/uploads/${uploadId}`);
    return c.json(
      {
        uploadId,
        filename: session.filename,
        size: session.size,
        partSize: session.partSize,
        partCount: session.partCount,
        expiresAt: iso(session.expiresAt),
        status: session.status,
        ...(input.uploadToken ? { uploadToken: await issueUploadToken(c.env, userId, uploadId) } : {}),
      },
      201,
    );
  })

  // The caller's uploads still holding a reservation, newest first: what to resume after a restart.
  .get("/", async (c) => {
    const query = ListQuery.parse(c.req.query());
    const after = query.cursor !== undefined ? decodeCursor("uploads", query.cursor) : undefined;
    const userId = c.get("userId");
    const rows = await accountFor(c.env, userId).listActiveUploads({
      userId,
      limit: query.limit + 1,
      after: after ? { createdAt: after.time, uploadId: after.id } : undefined,
    });
    const page = pageOf("uploads", rows, query.limit, (u) => ({ time: u.createdAt, id: u.uploadId }));
    return c.json({
      uploads: page.items.map((u) => ({
        uploadId: u.uploadId,
        filename: u.filename,
        size: u.size,
        createdAt: iso(u.createdAt),
      })),
      nextCursor: page.nextCursor,
    });
  })

  .get("/:id", async (c) => {
    const uploadId = uploadIdOf(c);
    auditAs(c, { action: "upload.read", uploadId });
    return c.json(sessionJson(unwrap(await sessionFor(c.env, uploadId).view(c.get("userId")))));
  })

  // One part, streamed from the request straight into R2. The session checks the part against its plan
  // before a byte moves, and records it (with its ETag) only after R2 has it and the digest matched.
  //
  // R2 replaces part n as soon as this write reaches uploadPart, before the digest is known, so from the
  // ticket on the session counts n as missing (authorizePart forgets an earlier record of it), and any
  // failure after the ticket tells the session so (forgetPart) before answering: a re-send that fails
  // leaves the part missing, never recorded with the ETag of bytes R2 no longer has (issue 17). If this
  // Worker dies before it can say so, the part stays missing all the same.
  .put("/:id/parts/:n", async (c) => {
    const uploadId = uploadIdOf(c);
    auditAs(c, { action: "upload.part", uploadId });
    const partNumber = PartNumber.parse(c.req.param("n"));
    const lengthHeader = c.req.header("Content-Length");
    if (lengthHeader === undefined || !/^\d+$/.test(lengthHeader)) {
      throw new ApiError(411, "length_required", "Content-Length is required and must be the part's exact size");
    }
    const digest = parseContentDigest(c.req.header("Content-Digest"));
    const userId = c.get("userId");
    const session = sessionFor(c.env, uploadId);
    const ticket = unwrap(await session.authorizePart(userId, partNumber, Number(lengthHeader)));
    const body = c.req.raw.body ?? new ReadableStream<Uint8Array>({ start: (controller) => controller.close() });
    try {
      const written = await writePart(c.env.BUCKET, ticket, partNumber, body, digest).catch(async (err) => {
        // A write that fails because a completion or an abort ended the upload meanwhile (R2 dropped the
        // multipart upload under the stream) is not the client's short body: say what happened.
        const now = await session.view(userId);
        if (now.ok && now.value.status !== "active") {
          throw new ApiError(409, "upload_not_active", `The upload is ${now.value.status}`, {
            status: now.value.status,
          });
        }
        throw err;
      });
      if (written.digestMatched === false) {
        // RFC 9530 §2: the digest covers the content; a mismatch means the part is not what was sent. Its
        // bytes reached R2 all the same (the digest is known only once they have streamed through).
        throw new ApiError(
          400,
          "digest_mismatch",
          "The part does not match its Content-Digest; it was not recorded, and the part is missing until sent again",
          { partNumber },
        );
      }
      const part = { partNumber, size: ticket.expectedSize, etag: written.etag };
      return c.json(unwrap(await session.recordPart(userId, part, requestMeta(c), ticket.attempt)));
    } catch (err) {
      // Whatever failed after the ticket (the body, R2, the digest, the record itself), R2 may now hold
      // this write's bytes as part n: the part must be missing. Best effort: if this call fails too, the
      // part is missing already since authorizePart.
      await session.forgetPart(userId, partNumber).catch(() => {});
      throw err;
    }
  })

  // Complete: assemble in R2, verify the declared SHA-256 by reading the object back through a digest,
  // then let the session commit the reservation. Calling it again returns the same file.
  .post("/:id/complete", async (c) => {
    const uploadId = uploadIdOf(c);
    auditAs(c, { action: "upload.complete", uploadId });
    const file = await completeUpload(c.env, uploadId, c.get("userId"), requestMeta(c));
    return c.json({ file: publicFile(file) });
  })

  .delete("/:id", async (c) => {
    const uploadId = uploadIdOf(c);
    auditAs(c, { action: "upload.abort", uploadId });
    unwrap(await sessionFor(c.env, uploadId).abort(c.get("userId"), requestMeta(c)));
    return c.body(null, 204);
  });
