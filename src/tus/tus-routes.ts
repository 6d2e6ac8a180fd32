/**
 * `/v1/tus`: the tus 1.0.0 resumable upload protocol (https://tus.io/protocols/resumable-upload) on the
 * same upload sessions as the native API. An upload created here is the same kind of session (same id
 * space: `GET /v1/uploads/:id` shows it), reserves quota the same way, is rate limited, expires and is
 * audited the same way, and completes through the same function into the same kind of file.
 *
 * Extensions: creation, creation-with-upload, creation-defer-length, expiration, checksum (sha1, sha256,
 * md5), termination. The requirements of the spec are quoted beside the code that obeys them.
 */
import { type Context, Hono } from "hono";
import { createMiddleware } from "hono/factory";
import { accountFor, sessionFor } from "../../objects/stubs";
import { auditAs, requestMeta } from "../audit/audit-middleware";
import { offerUploadToken } from "../auth/offer-upload-token";
import { requireUser } from "../auth/user-auth";
import { sanitizeFilename } from "../core/filename";
import type { Outcome } from "../core/outcome";
import { MAX_PLANNABLE_SIZE, planParts } from "../core/part-plan";
import type { AppEnv } from "../http/app-env";
import { formatHttpDate } from "../http/conditional";
import { ApiError, unwrap } from "../http/errors";
import { policyFromSettings } from "../settings/policy";
import { loadSettings } from "../settings/settings";
import { createUpload } from "../uploads/create-upload";
import { uploadIdOf } from "../uploads/upload-id";
import {
  CHECKSUM_ALGORITHMS,
  CreationHeaders,
  FILE_LOCATION_HEADER,
  fileFieldsOf,
  fileLocation,
  isOffsetOctetStream,
  PatchHeaders,
  parseUploadChecksum,
  parseUploadMetadata,
  TUS_EXTENSIONS,
  TUS_VERSION,
  tusHeaders,
  uploadLocation,
} from "./tus-protocol";
import type { TusBody } from "./tus-writer";
import { type Accepted, appendAt, outliveClient, settledStatus, unwrapLeased } from "./write-lease";

/**
 * "The `X-HTTP-Method-Override` request header MUST be a string which MUST be interpreted as the
 * request's method by the Server, if the header is presented. The actual method of the request MUST be
 * ignored."
 */
function methodOf(c: Context<AppEnv>): string {
  const override = c.req.header("X-HTTP-Method-Override")?.trim();
  return (override || c.req.method).toUpperCase();
}

/**
 * Version negotiation and the version header, around every tus request.
 *
 * "The `Tus-Resumable` header MUST be included in every request and response except for `OPTIONS`
 * requests." "If the version specified by the Client is not supported by the Server, it MUST respond with
 * the `412 Precondition Failed` status and MUST include the `Tus-Version` header into the response. In
 * addition, the Server MUST NOT process the request." A missing header is not a supported version.
 */
const tusVersion = createMiddleware<AppEnv>(async (c, next) => {
  const options = methodOf(c) === "OPTIONS";
  // Set before anything can fail, so error responses (rendered by onError from the context) carry it too.
  if (!options) c.header("Tus-Resumable", TUS_VERSION);
  if (!options && c.req.header("Tus-Resumable")?.trim() !== TUS_VERSION) {
    throw new ApiError(
      412,
      "unsupported_tus_version",
      `This server speaks tus ${TUS_VERSION}; send Tus-Resumable: ${TUS_VERSION}`,
      { supported: [TUS_VERSION], received: c.req.header("Tus-Resumable")?.slice(0, 32) ?? null },
      { "Tus-Version": TUS_VERSION },
    );
  }
  await next();
  if (!options) c.header("Tus-Resumable", TUS_VERSION);
});

/** Bearer token as for the native API; a discovery OPTIONS without a token is answered anonymously. */
const tusAuth = createMiddleware<AppEnv>(async (c, next) => {
  if (methodOf(c) === "OPTIONS" && !c.req.header("Authorization")) return next();
  return requireUser(c, next);
});

/**
 * OPTIONS: "A successful response indicated by the `204 No Content` or `200 OK` status MUST contain the
 * `Tus-Version` header. It MAY include the `Tus-Extension` and `Tus-Max-Size` headers." With the checksum
 * extension, "The `Tus-Checksum-Algorithm` header MUST be included in the response to an `OPTIONS`
 * request." `Tus-Max-Size` is the caller's effective maximum when a token is sent (the user's file size
 * limit, capped by the quota left), the service's otherwise.
 */
async function options(c: Context<AppEnv>) {
  const { settings } = await loadSettings(c.env);
  let maxSize = Math.min(settings.maxFileSizeBytes, MAX_PLANNABLE_SIZE);
  const userId = c.get("userId");
  if (userId) {
    const view = await accountFor(c.env, userId).limits(userId, policyFromSettings(settings));
    const free = view.usage.limitBytes - view.usage.usedBytes - view.usage.reservedBytes;
    maxSize = Math.max(0, Math.min(view.limits.maxFileSizeBytes, MAX_PLANNABLE_SIZE, free));
  }
  c.header("Tus-Version", TUS_VERSION);
  c.header("Tus-Extension", TUS_EXTENSIONS.join(","));
  c.header("Tus-Max-Size", String(maxSize));
  c.header("Tus-Checksum-Algorithm", Object.keys(CHECKSUM_ALGORITHMS).join(","));
  return c.body(null, 204);
}

/** The body of a creation or PATCH request. A body without a Content-Length cannot be cut into parts. */
function bodyOf(
  c: Context<AppEnv>,
  h: { "content-length"?: number; "upload-checksum"?: string },
  uploadLength: number | null,
): TusBody {
  const stream = c.req.raw.body;
  const length = h["content-length"];
  if (stream && length === undefined) {
    throw new ApiError(411, "length_required", "A body needs a Content-Length");
  }
  return {
    stream: length ? stream : null,
    length: length ?? 0,
    uploadLength,
    checksum: parseUploadChecksum(h["upload-checksum"]),
  };
}

/** Response headers after bytes were accepted. */
function acceptedHeaders(c: Context<AppEnv>, accepted: Accepted): void {
  c.header("Upload-Offset", String(accepted.offset));
  // "This header MUST be included in every `PATCH` response if the upload is going to expire."
  if (accepted.expiresAt !== null) c.header("Upload-Expires", formatHttpDate(accepted.expiresAt));
  if (accepted.file) c.header(FILE_LOCATION_HEADER, fileLocation(accepted.file.id));
}

/**
 * POST (creation, with an optional body). Quota is reserved exactly as for the native API: the account
 * decides size, type, quota and concurrency with the user's own limits. A deferred length reserves 0 now
 * and grows the reservation before each PATCH's bytes are accepted.
 */
async function create(c: Context<AppEnv>) {
  auditAs(c, { action: "upload.create" });
  const h = CreationHeaders.parse(tusHeaders(c));
  const { settings } = await loadSettings(c.env);
  const policy = policyFromSettings(settings);
  const userId = c.get("userId");
  const length = h["upload-length"] ?? null;
  const metadata = parseUploadMetadata(h["upload-metadata"]);
  const fields = fileFieldsOf(metadata);
  const hasBody = (h["content-length"] ?? 0) > 0;
  // creation-with-upload: "The Client MUST include the `Content-Type: application/offset+octet-stream` header."
  if (hasBody && !isOffsetOctetStream(h["content-type"])) {
    throw new ApiError(
      415,
      "unsupported_media_type",
      "A creation body must be sent as application/offset+octet-stream",
    );
  }
  const body = bodyOf(c, h, null);
  // "If the length of the upload exceeds the maximum … the Server MUST respond with the `413 Request
  // Entity Too Large` status." The account checks the user's own maximum when it reserves; bytes past
  // the declared length are refused here.
  if (length !== null && body.length > length) {
    throw new ApiError(413, "exceeds_upload_length", "The body runs past Upload-Length", {
      contentLength: body.length,
      uploadLength: length,
    });
  }
  const account = accountFor(c.env, userId);
  let maxLength = length ?? 0;
  let plan: { partSize: number; partCount: number };
  if (length === null) {
    // A deferred length may grow to the user's file size limit: plan equal parts for that, so the upload
    // never needs more than 10,000 of them.
    const { limits } = await account.limits(userId, policy);
    maxLength = Math.min(limits.maxFileSizeBytes, MAX_PLANNABLE_SIZE);
    plan = { partSize: unwrap(planParts(maxLength, settings.partSizeBytes)).partSize, partCount: 0 };
  } else {
    plan = unwrap(planParts(length, settings.partSizeBytes));
  }
  const uploadId = crypto.randomUUID();
  const fileId = crypto.randomUUID();
  const filename = sanitizeFilename(fields.filename ?? "");
  auditAs(c, { action: "upload.create", uploadId, fileId });
  const session = await createUpload(
    c.env,
    {
      uploadId,
      userId,
      fileId,
      filename,
      contentType: fields.contentType,
      size: length ?? 0,
      partSize: plan.partSize,
      partCount: plan.partCount,
      sha256: null,
      metadata: fields.metadata,
      protocol: "tus",
      ttlSeconds: settings.uploadTtlSeconds,
      tus: { lengthDeferred: length === null, metadataHeader: metadata?.header ?? null, maxLength },
    },
    policy,
    requestMeta(c),
  );
  // "The Server MUST acknowledge a successful upload creation with the `201 Created` status. The Server
  // MUST set the `Location` header to the URL of the created resource. This URL MAY be absolute or
  // relative." "If the expiration is known at the creation, the `Upload-Expires` header MUST be included
  // in the response to the initial `POST` request."
  const location = { Location: uploadLocation(uploadId), "Upload-Expires": formatHttpDate(session.expiresAt) };
  for (const [name, value] of Object.entries(location)) c.header(name, value);
  await offerUploadToken(c, uploadId);
  // A body, or an empty upload (complete at once): write it like a PATCH at offset 0. "The Server SHOULD
  // accept as many bytes as possible and MUST include the `Upload-Offset` header in the response".
  if (body.length > 0 || length === 0) {
    let accepted: Accepted;
    try {
      accepted = await outliveClient(c, appendAt(c, uploadId, 0, body));
    } catch (err) {
      // The upload exists: tell the client where, so it can resume from HEAD.
      if (err instanceof ApiError)
        throw new ApiError(err.status, err.code, err.message, err.details, { ...err.headers, ...location });
      throw err;
    }
    acceptedHeaders(c, accepted);
  }
  return c.body(null, 201);
}

/**
 * HEAD: "The Server MUST always include the `Upload-Offset` header in the response for a `HEAD` request,
 * even if the offset is `0`, or the upload is already considered completed. If the size of the upload is
 * known, the Server MUST include the `Upload-Length` header in the response. If the resource is not
 * found, the Server SHOULD return either the `404 Not Found`, `410 Gone` or `403 Forbidden` status
 * without the `Upload-Offset` header." "The Server MUST prevent the client and/or proxies from caching
 * the response by adding the `Cache-Control: no-store` header to the response."
 */
async function head(c: Context<AppEnv>) {
  c.header("Cache-Control", "no-store");
  const uploadId = uploadIdOf(c);
  auditAs(c, { action: "upload.read", uploadId });
  const status = await settledStatus(c, uploadId);
  c.header("Upload-Offset", String(status.offset));
  // "As long as the length of the upload is not known, the Server MUST set `Upload-Defer-Length: 1` in
  // all responses to `HEAD` requests."
  if (status.length === null) c.header("Upload-Defer-Length", "1");
  else c.header("Upload-Length", String(status.length));
  // "If an upload contains additional metadata, responses to `HEAD` requests MUST include the
  // `Upload-Metadata` header and its value as specified by the Client during the creation."
  if (status.metadata) c.header("Upload-Metadata", status.metadata);
  if (status.file) c.header(FILE_LOCATION_HEADER, fileLocation(status.file.id));
  else c.header("Upload-Expires", formatHttpDate(status.expiresAt));
  return c.body(null, 200);
}

/**
 * PATCH: "All `PATCH` requests MUST use `Content-Type: application/offset+octet-stream`, otherwise the
 * server SHOULD return a `415 Unsupported Media Type` status." "The Server MUST acknowledge successful
 * `PATCH` requests with the `204 No Content` status. It MUST include the `Upload-Offset` header containing
 * the new offset." Offset mismatch → 409, checksum → 460/400, past the length → 413 (see the session).
 */
async function patch(c: Context<AppEnv>) {
  const uploadId = uploadIdOf(c);
  auditAs(c, { action: "upload.part", uploadId });
  if (!isOffsetOctetStream(c.req.header("Content-Type"))) {
    throw new ApiError(415, "unsupported_media_type", `A PATCH body must be sent as application/offset+octet-stream`);
  }
  const h = PatchHeaders.parse(tusHeaders(c));
  const body = bodyOf(c, h, h["upload-length"] ?? null);
  acceptedHeaders(c, await outliveClient(c, appendAt(c, uploadId, h["upload-offset"], body)));
  return c.body(null, 204);
}

/**
 * DELETE (termination): "When receiving a `DELETE` request for an existing upload the Server SHOULD free
 * associated resources and MUST respond with the `204 No Content` status confirming that the upload was
 * terminated. For all future requests to this URL, the Server SHOULD respond with the `404 Not Found` or
 * `410 Gone` status." An unfinished upload is aborted (reservation released, multipart upload and tail
 * objects removed); a completed one's file is deleted through the ledger, as `DELETE /v1/files/:id` does.
 */
async function terminate(c: Context<AppEnv>) {
  const uploadId = uploadIdOf(c);
  auditAs(c, { action: "upload.abort", uploadId });
  const userId = c.get("userId");
  const meta = requestMeta(c);
  const ended = unwrapLeased(await sessionFor(c.env, uploadId).tusTerminate(userId, meta));
  if (ended.kind === "file") {
    const removed = (await accountFor(c.env, userId).removeFile({
      userId,
      fileId: ended.fileId,
      meta,
    })) as Outcome<unknown>;
    if (!removed.ok && removed.error.status !== 404) throw ApiError.from(removed.error);
  }
  return c.body(null, 204);
}

/** `/v1/tus`: discovery and creation. */
function collection(c: Context<AppEnv>) {
  switch (methodOf(c)) {
    case "OPTIONS":
      return options(c);
    case "POST":
      return create(c);
    default:
      return notAllowed("OPTIONS, POST");
  }
}

function notAllowed(allow: string): never {
  throw new ApiError(405, "method_not_allowed", `Allowed methods: ${allow}`, undefined, { Allow: allow });
}

export const tus = new Hono<AppEnv>()
  .use(tusVersion)
  .use(tusAuth)
  // Routed by the effective method, so X-HTTP-Method-Override reaches the right handler.
  .all("/", collection)
  // `/v1/tus/` (a trailing slash, as many tus endpoints are configured) is the collection too.
  .all("/:id{[^/]*}", (c) => {
    if (c.req.param("id") === "") return collection(c);
    switch (methodOf(c)) {
      case "OPTIONS":
        return options(c);
      case "HEAD":
      case "GET":
        return head(c);
      case "PATCH":
        return patch(c);
      case "DELETE":
        return terminate(c);
      default:
        return notAllowed("OPTIONS, HEAD, PATCH, DELETE");
    }
  });
