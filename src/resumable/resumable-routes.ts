/**
 * Longer than the ~400-line guide: one sub-app with its handlers inline (the house style for routes), and
 * each of the draft's four methods quotes the MUSTs it obeys beside the code; splitting would scatter them.
 *
 * `/v1/resumable`: "Resumable Uploads for HTTP" (draft-ietf-httpbis-resumable-upload, interop versions 8 and
 * 6) on the same upload sessions as the native API and tus. An upload created here is a tus session inside
 * (same state machine, same lease, same tail segments, same id space: `GET /v1/uploads/:id` and `/v1/tus/:id`
 * see it too), so it reserves quota, is rate limited, expires, is audited and completes exactly like the
 * others, into the same kind of file. What differs is the wire: `Upload-Complete` says when the client is
 * done, `Upload-Limit` says what the server takes, `application/partial-upload` labels appends, and errors
 * are problem details (see resumable-problems.ts).
 *
 * No `104 (Upload Resumption Supported)`: a Worker cannot send interim responses (workerd issue 757). A
 * client learns the upload's URI from the final response of the creation request, so the flow that resumes
 * is "careful upload creation" (§12.2): an empty `Upload-Complete: ?0` creation, then appends. An optimistic
 * creation (the whole representation with `Upload-Complete: ?1`) works, but an interrupted one cannot be
 * resumed: the client never saw the URI (its whole parts stay until the upload expires and is cleaned up).
 *
 * The draft's requirements are quoted beside the code that obeys them; docs/resumable.md lists each with its
 * test. Section numbers are those of draft -12.
 */
import { type Context, Hono } from "hono";
import { createMiddleware } from "hono/factory";
import { accountFor, sessionFor } from "../../objects/stubs";
import type { TusWriteGrant } from "../../objects/upload-session/contract";
import { auditAs, requestMeta } from "../audit/audit-middleware";
import { offerUploadToken } from "../auth/offer-upload-token";
import { requireUser } from "../auth/user-auth";
import type { FileRecord } from "../core/domain";
import { sanitizeFilename } from "../core/filename";
import type { Outcome } from "../core/outcome";
import { MAX_PLANNABLE_SIZE, planParts } from "../core/part-plan";
import type { AccountPolicy } from "../core/policy";
import { publicFile } from "../files/file-records";
import type { AppEnv } from "../http/app-env";
import { parseContentDigest } from "../http/content-digest";
import { ApiError, unwrap } from "../http/errors";
import { policyFromSettings } from "../settings/policy";
import { loadSettings } from "../settings/settings";
import type { ExpectedChecksum } from "../tus/tus-protocol";
import { fileFieldsOf, parseUploadMetadata } from "../tus/tus-protocol";
import type { TusBody } from "../tus/tus-writer";
import { type Accepted, appendAt, leaseMsOf, outliveClient, settledStatus, unwrapLeased } from "../tus/write-lease";
import { createUpload } from "../uploads/create-upload";
import { uploadIdOf } from "../uploads/upload-id";
import { renderProblem } from "./resumable-problems";
import {
  AppendHeaders,
  CreationHeaders,
  draftHeaders,
  FILE_LOCATION_HEADER,
  fileLocation,
  filenameOfDisposition,
  interopVersionOf,
  isPartialUpload,
  MAX_APPEND_SIZE,
  PARTIAL_UPLOAD,
  representationType,
  reprSha256,
  secondsUntil,
  uploadLimitHeader,
  uploadLocation,
} from "./resumable-protocol";

const inconsistentLength = (message: string, details?: unknown) =>
  new ApiError(400, "inconsistent_upload_length", message, details);

/**
 * §4.1.4 `max-append-size`, and the 100 MB edge cap behind it: a body over it is refused before a byte is
 * read. §4.1.4: "A server responding with a 413 Content Too Large status code as a result of its upload
 * limits MUST include the Upload-Limit header in this response" (the problem renderer adds it).
 */
function checkAppendSize(bytes: number): void {
  if (bytes > MAX_APPEND_SIZE) {
    throw new ApiError(413, "payload_too_large", `One request carries at most ${MAX_APPEND_SIZE} bytes`, {
      contentLength: bytes,
      maxAppendSize: MAX_APPEND_SIZE,
    });
  }
}

/**
 * §10.2: "If the client knows the integrity digest of the content from an upload creation or upload
 * appending request, it can include the `Content-Digest` header field in the request … If the digests don't
 * match the server SHOULD consider the transfer failed, not append the content to the upload resource". The
 * tus writer verifies a digest over the whole body before it records any of it; `name` only labels the
 * tus error, which this front door rewrites as `digest_mismatch`.
 */
function contentChecksum(header: string | undefined): ExpectedChecksum | null {
  const digest = parseContentDigest(header);
  return digest ? { name: "sha256", digest: digest.algorithm, bytes: digest.bytes } : null;
}

/** A body without Content-Length cannot be cut into parts as it streams (the same rule as tus). */
function bodyLength(c: Context<AppEnv>, contentLength: number | undefined): number {
  if (c.req.raw.body && contentLength === undefined) {
    throw new ApiError(411, "length_required", "Content needs a Content-Length");
  }
  return contentLength ?? 0;
}

/** The user's largest possible upload now: their file size limit (with overrides), capped by the quota left. */
async function effectiveMaxSize(env: Env, userId: string, policy: AccountPolicy): Promise<number> {
  const view = await accountFor(env, userId).limits(userId, policy);
  const free = view.usage.limitBytes - view.usage.usedBytes - view.usage.reservedBytes;
  return Math.max(0, Math.min(view.limits.maxFileSizeBytes, MAX_PLANNABLE_SIZE, free));
}

/**
 * The largest length an upload of unknown length may reach: the user's file size limit, as the session
 * recorded it at creation (the same formula; it differs only if an operator changed the limit since).
 */
async function deferredMaxSize(env: Env, userId: string): Promise<number> {
  const policy = policyFromSettings((await loadSettings(env)).settings);
  const { limits } = await accountFor(env, userId).limits(userId, policy);
  return Math.min(limits.maxFileSizeBytes, MAX_PLANNABLE_SIZE);
}

/**
 * Turns a refused append into the draft's terms. Only refusals about offsets and lengths need a second
 * look at the upload (one more RPC, on the error path only):
 *
 * - §4.4.2 "If the upload is already complete, the server MUST NOT modify the upload resource and MUST
 *   reject the request … If the client attempted to append a non-zero length document, the server MUST
 *   treat this as an inconsistent length failure" (`completed-upload` for an empty one);
 * - §4.4.2 "If the `Upload-Offset` request header field value does not match the current offset, the server
 *   MUST reject the request with a `409 (Conflict)` status code. The response MUST include the correct
 *   offset in the `Upload-Offset` header field";
 * - §4.4.2 "If the length is known, the server MUST prevent the offset from exceeding the upload length by
 *   rejecting the request once the offset exceeds the length, marking the upload resource invalid and
 *   rejecting any further interaction with it": no byte past the length is ever accepted (the session
 *   checks before the body is read), and the upload is then terminated (410 afterwards);
 * - §4.1.3 "If multiple requests include indicators, their indicated values MUST match": any other length
 *   disagreement is `inconsistent-upload-length`.
 */
async function appendRefusal(
  c: Context<AppEnv>,
  uploadId: string,
  err: unknown,
  offset: number,
  bytes: number,
): Promise<unknown> {
  if (!(err instanceof ApiError)) return err;
  const userId = c.get("userId");
  const session = sessionFor(c.env, uploadId);
  switch (err.code) {
    case "checksum_mismatch":
      // The tus writer's 460: the content does not match its Content-Digest.
      if (err.status === 460) {
        return new ApiError(
          400,
          "digest_mismatch",
          "The content does not match its Content-Digest; none of it was kept",
        );
      }
      // The completion's 422: the whole representation arrived but does not match its Repr-Digest, so the
      // upload failed. §4.4.2: the response to the request that transferred the last of it "MUST include the
      // `Upload-Complete` header field with a true value, allowing clients to identify whether a response,
      // in particular error responses, is related to the resumable upload itself or the processing of the
      // uploaded representation": resuming would not help.
      c.header("Upload-Complete", "?1");
      return err;
    case "tail_missing":
      // §4.1.1: "If the server loses any part of the state, it MUST deactivate the upload resource and reject
      // further interaction with it." Bytes the offset covered are gone from storage: the upload cannot be
      // finished any more, so it is terminated (410 afterwards) and its quota given back.
      await session.tusTerminate(userId, requestMeta(c)).catch(() => {});
      return err;
    case "file_too_large":
    case "quota_exceeded": {
      const maxSize = await deferredMaxSize(c.env, userId).catch(() => undefined);
      return new ApiError(err.status, err.code, err.message, err.details, {
        ...err.headers,
        "Upload-Limit": uploadLimitHeader({ maxSize }),
      });
    }
    case "offset_mismatch":
    case "exceeds_upload_length":
    case "upload_length_mismatch":
    case "upload_length_too_small": {
      const now = unwrapLeased(await session.tusStatus(userId));
      if (now.file) {
        const headers = { [FILE_LOCATION_HEADER]: fileLocation(now.file.id) };
        if (bytes > 0) {
          return new ApiError(
            400,
            "inconsistent_upload_length",
            "The upload is complete: no more content fits",
            { uploadLength: now.length, contentLength: bytes },
            headers,
          );
        }
        return new ApiError(400, "upload_completed", "The upload is already complete", undefined, headers);
      }
      if (err.code === "offset_mismatch") {
        return new ApiError(
          409,
          "offset_mismatch",
          "Upload-Offset does not match the upload's offset",
          { offset: now.offset, providedOffset: offset },
          { "Upload-Offset": String(now.offset) },
        );
      }
      if (now.status === "active" && now.length !== null && offset + bytes > now.length) {
        await session.tusTerminate(userId, requestMeta(c)).catch(() => {});
        return inconsistentLength("The content runs past the upload's length; the upload was deactivated", {
          uploadLength: now.length,
          offset,
          contentLength: bytes,
        });
      }
      return inconsistentLength(err.message, err.details);
    }
    default:
      return err;
  }
}

/**
 * Version check and authentication. Appendix B: clients "MUST send a header field
 * `Upload-Draft-Interop-Version`"; without a version this server speaks nothing is processed (400). The
 * bearer token is the native API's; a discovery OPTIONS without one is answered anonymously.
 */
const gate = createMiddleware<AppEnv>(async (c, next) => {
  if (c.req.method === "OPTIONS") {
    if (!c.req.header("Authorization")) return next();
    return requireUser(c, next);
  }
  interopVersionOf(c);
  return requireUser(c, next);
});

/**
 * OPTIONS. §4.1.4: "When responding to an `OPTIONS` request, if the resource that is the target of the
 * request supports the creation of a resumable upload resource, the server MUST include the `Accept-Patch`
 * header field in the response … The value of the `Accept-Patch` header field MUST include the full
 * `application/partial-upload` media type … The `Upload-Limit` header field SHOULD be included in the
 * response to an `OPTIONS` request if limits apply" (draft -05: MUST). With a token, `max-size` is the
 * caller's largest possible upload now; without, the service's file size limit.
 */
async function options(c: Context<AppEnv>, allow: string) {
  const { settings } = await loadSettings(c.env);
  let maxSize = Math.min(settings.maxFileSizeBytes, MAX_PLANNABLE_SIZE);
  const userId = c.get("userId");
  if (userId) maxSize = await effectiveMaxSize(c.env, userId, policyFromSettings(settings));
  c.header("Accept-Patch", PARTIAL_UPLOAD);
  c.header("Upload-Limit", uploadLimitHeader({ maxSize }));
  c.header("Allow", allow);
  return c.body(null, 204);
}

/**
 * Upload creation (§4.2), by POST or PUT to `/v1/resumable`. Quota is reserved exactly as for the native
 * API and tus: the account decides size, type, quota and concurrency with the user's own limits. A known
 * length (`Upload-Length`, or `Content-Length` with `Upload-Complete: ?1`) is reserved whole now; an unknown
 * one reserves 0 and grows before each append's bytes are accepted, as tus's deferred length does.
 */
async function create(c: Context<AppEnv>) {
  interopVersionOf(c);
  auditAs(c, { action: "upload.create" });
  const h = CreationHeaders.parse(draftHeaders(c));
  const complete = h["upload-complete"];
  // §4.2.1: "A client can start a resumable upload from any request that can carry content by including the
  // `Upload-Complete` header field": without it (or with a malformed one, which is ignored) this is no
  // resumable upload, and this endpoint takes nothing else.
  if (complete === undefined) {
    throw new ApiError(400, "invalid_request", "Create a resumable upload with Upload-Complete: ?0 or ?1", [
      { path: "upload-complete", message: "must be the structured boolean ?0 or ?1" },
    ]);
  }
  const bytes = bodyLength(c, h["content-length"]);
  checkAppendSize(bytes);
  // §4.1.3: "If the request includes the `Upload-Complete` field value set to true and a valid
  // `Content-Length` header field, the request content is the remaining representation data. The length is
  // then the sum of the current offset and the `Content-Length` header field value." "If indicators (1) and
  // (2) are both present in the same request, their indicated lengths MUST match."
  const declared = h["upload-length"];
  const implied = complete ? bytes : undefined;
  if (declared !== undefined && implied !== undefined && declared !== implied) {
    throw inconsistentLength("Upload-Length does not match the Content-Length of a complete upload", {
      uploadLength: declared,
      contentLength: bytes,
    });
  }
  if (declared !== undefined && bytes > declared) {
    throw inconsistentLength("The content runs past Upload-Length", { uploadLength: declared, contentLength: bytes });
  }
  // §4.2.2: "The server MUST record the length according to {{upload-length}} if the `Upload-Length` or
  // `Upload-Complete: ?1` header fields are included in the request."
  const length = declared ?? implied ?? null;

  // The file's name and type: §4.2.1 Content-Disposition and Content-Type, else tus-style Upload-Metadata
  // (`filename`, `filetype`), which tus-js-client sends in every protocol. §13: "metadata MUST be validated
  // and/or sanitized if the server takes its values into consideration for processing or storing".
  const metadata = parseUploadMetadata(h["upload-metadata"]);
  const fromMetadata = fileFieldsOf(metadata);
  const filename = sanitizeFilename(filenameOfDisposition(h["content-disposition"]) ?? fromMetadata.filename ?? "");
  const contentType = representationType(h["content-type"]) ?? fromMetadata.contentType;
  const sha256 = reprSha256(h["repr-digest"]);
  const checksum = contentChecksum(h["content-digest"]);

  const env = c.env;
  const userId = c.get("userId");
  const { settings } = await loadSettings(env);
  const policy = policyFromSettings(settings);
  const uploadId = crypto.randomUUID();
  const fileId = crypto.randomUUID();
  auditAs(c, { action: "upload.create", uploadId, fileId });
  let maxLength: number;
  let session: Awaited<ReturnType<typeof createUpload>>;
  try {
    let plan: { partSize: number; partCount: number };
    if (length === null) {
      // Unknown length: plan equal parts for the largest file the user may upload (≤ 10,000 parts).
      maxLength = await deferredMaxSize(env, userId);
      plan = { partSize: unwrap(planParts(maxLength, settings.partSizeBytes)).partSize, partCount: 0 };
    } else {
      maxLength = length;
      plan = unwrap(planParts(length, settings.partSizeBytes));
    }
    session = await createUpload(
      env,
      {
        uploadId,
        userId,
        fileId,
        filename,
        contentType,
        size: length ?? 0,
        partSize: plan.partSize,
        partCount: plan.partCount,
        sha256,
        metadata: fromMetadata.metadata,
        // The session's state machine is tus's (the lease, the tail, completion at the last byte): the
        // D1 row says `tus` for an upload made here too (docs/resumable.md).
        protocol: "tus",
        ttlSeconds: settings.uploadTtlSeconds,
        tus: { lengthDeferred: length === null, metadataHeader: metadata?.header ?? null, maxLength },
      },
      policy,
      requestMeta(c),
    );
  } catch (err) {
    // §4.1.4: a 413 "as a result of its upload limits MUST include the Upload-Limit header": the largest
    // upload this user could create now.
    if (err instanceof ApiError && err.status === 413) {
      const maxSize = await effectiveMaxSize(env, userId, policy).catch(() => undefined);
      throw new ApiError(err.status, err.code, err.message, err.details, {
        ...err.headers,
        "Upload-Limit": uploadLimitHeader({ maxSize }),
      });
    }
    throw err;
  }

  // §4.2.2: "If the `Upload-Complete` header field is set to false … the server MUST include the `Location`
  // response header field pointing to the upload resource and MUST include the `Upload-Limit` header field
  // with the corresponding limits if existing. Servers are RECOMMENDED to use the `201 (Created)` status
  // code." Set before the content is read, so a failure below still tells the client where to resume.
  c.header("Location", uploadLocation(uploadId));
  c.header("Upload-Limit", uploadLimitHeader({ maxSize: maxLength, maxAge: secondsUntil(session.expiresAt) }));
  await offerUploadToken(c, uploadId);

  let accepted: Accepted = { offset: 0, expiresAt: session.expiresAt, file: null, wasComplete: false };
  // Content, a complete upload, or an empty one (every byte of it is here): write it like an append at 0.
  if (bytes > 0 || complete || length === 0) {
    const body: TusBody = { stream: bytes > 0 ? c.req.raw.body : null, length: bytes, uploadLength: null, checksum };
    try {
      accepted = await outliveClient(c, appendAt(c, uploadId, 0, body));
    } catch (err) {
      throw await appendRefusal(c, uploadId, err, 0, bytes);
    }
  }
  c.header("Upload-Offset", String(accepted.offset));
  if (accepted.file) return completed(c, accepted.file, maxLength, 201);
  c.header("Upload-Complete", "?0");
  // Accepted parts slide the expiry: max-age as it stands after the content.
  const expiresAt = accepted.expiresAt ?? session.expiresAt;
  c.header("Upload-Limit", uploadLimitHeader({ maxSize: maxLength, maxAge: secondsUntil(expiresAt) }));
  return c.body(null, 201);
}

/**
 * The response to the request that completed the upload. §4.4.2: "the server SHOULD generate the response
 * that matches what the resource, that was targeted by the initial upload creation, would have generated if
 * it had processed the entire representation in the initial request. However, the response MUST include the
 * `Upload-Complete` header field with a true value". The file, as `POST /v1/uploads/:id/complete` answers
 * it, named by `Upload-File-Location` as on the tus endpoint.
 */
function completed(c: Context<AppEnv>, file: FileRecord, maxSize: number, status: 200 | 201) {
  c.header("Upload-Complete", "?1");
  c.header(FILE_LOCATION_HEADER, fileLocation(file.id));
  c.header("Upload-Limit", uploadLimitHeader({ maxSize }));
  return c.json({ file: publicFile(file) }, status);
}

/**
 * Offset retrieval (§4.3). §4.3.2: "A successful response to a `HEAD` request against an upload resource
 * MUST include the offset in the `Upload-Offset` header field, MUST include the completeness state in the
 * `Upload-Complete` header field, MUST include the length in the `Upload-Length` header field, unless the
 * client has not supplied one …, MUST indicate the limits in the `Upload-Limit` header field, and SHOULD
 * include the `Cache-Control` header field with the value `no-store`". Unknown, another user's → 404;
 * cancelled, expired, failed → 410.
 */
async function head(c: Context<AppEnv>) {
  interopVersionOf(c);
  c.header("Cache-Control", "no-store");
  const uploadId = uploadIdOf(c);
  auditAs(c, { action: "upload.read", uploadId });
  const userId = c.get("userId");
  const status = await settledStatus(c, uploadId);
  if (!status.file && !status.needsFinish) await noWriterAt(c, uploadId, status.offset);
  c.header("Upload-Offset", String(status.offset));
  c.header("Upload-Complete", status.file ? "?1" : "?0");
  if (status.length !== null) c.header("Upload-Length", String(status.length));
  const maxSize = status.length ?? (await deferredMaxSize(c.env, userId));
  c.header(
    "Upload-Limit",
    uploadLimitHeader({ maxSize, maxAge: status.file ? undefined : secondsUntil(status.expiresAt) }),
  );
  if (status.file) c.header(FILE_LOCATION_HEADER, fileLocation(status.file.id));
  return c.body(null, 204);
}

/**
 * §4.6: "the server MUST NOT send outdated information in responses when retrieving the offset. This
 * means that the offset sent by the server MUST be accepted in a subsequent request to append
 * representation data if no other request to append representation data or cancel was received in the
 * meantime." A request still streaming (its client thinks it failed) would move the offset after HEAD
 * answered, so HEAD takes the write lease for an instant: if another request holds it, HEAD answers 423
 * with `Retry-After` instead of an offset that is about to change (the draft's "simpler approach": "only
 * processes a new request … once all previous requests have been processed"). A writer whose client went
 * away gives the lease back as soon as its body breaks off.
 */
async function noWriterAt(c: Context<AppEnv>, uploadId: string, offset: number): Promise<void> {
  const userId = c.get("userId");
  const session = sessionFor(c.env, uploadId);
  const { settings } = await loadSettings(c.env);
  const probe = (await session.tusBeginWrite(userId, {
    offset,
    contentLength: 0,
    uploadLength: null,
    checksum: false,
    policy: policyFromSettings(settings),
    leaseMs: leaseMsOf(c.env),
  })) as Outcome<TusWriteGrant>;
  if (!probe.ok && probe.error.code === "offset_mismatch") {
    // A writer recorded bytes between the two reads: it is still writing.
    throw new ApiError(423, "upload_locked", "Another request is writing this upload; retry shortly", undefined, {
      "Retry-After": "1",
    });
  }
  const grant: TusWriteGrant = unwrapLeased(probe);
  if (grant.kind !== "done") await session.tusReleaseLease(userId, grant.token, null);
}

/**
 * Upload append (§4.4): PATCH with `application/partial-upload`. The tus PATCH with other fields: the same
 * lease, offset check, part cutting and completion.
 */
async function append(c: Context<AppEnv>) {
  interopVersionOf(c);
  const uploadId = uploadIdOf(c);
  auditAs(c, { action: "upload.part", uploadId });
  const h = AppendHeaders.parse(draftHeaders(c));
  const complete = h["upload-complete"];
  // Draft -05 §4.4.2: "If the `Upload-Complete` request header field is set to false … Any response,
  // successful or not, MUST then include the `Upload-Complete` header field with a false value." Set first,
  // so every error response carries it too (-12 asks nothing of errors here; the field does no harm).
  if (complete === false) c.header("Upload-Complete", "?0");
  // §4.4.2: "A server applies a `PATCH` request with the `application/partial-upload` media type … by
  // appending the patch document in the request content." Another patch format is not one this resource
  // takes: RFC 5789 §2.2, 415 with `Accept-Patch`.
  if (!isPartialUpload(h["content-type"])) {
    throw new ApiError(415, "unsupported_media_type", `Append with Content-Type: ${PARTIAL_UPLOAD}`, undefined, {
      "Accept-Patch": PARTIAL_UPLOAD,
    });
  }
  // §4.4.1: "The request MUST include the `Upload-Complete` header field." "The client MUST indicate the
  // offset of the request content inside the representation data by including the `Upload-Offset` header
  // field." A malformed value is ignored (§4.1.1, §4.1.2), which leaves it missing.
  const missing = [
    ...(complete === undefined
      ? [{ path: "upload-complete", message: "must be the structured boolean ?0 or ?1" }]
      : []),
    ...(h["upload-offset"] === undefined
      ? [{ path: "upload-offset", message: "must be a non-negative structured integer" }]
      : []),
  ];
  if (complete === undefined || h["upload-offset"] === undefined) {
    throw new ApiError(400, "invalid_request", "An append needs Upload-Complete and Upload-Offset", missing);
  }
  const offset = h["upload-offset"];
  const bytes = bodyLength(c, h["content-length"]);
  checkAppendSize(bytes);
  // §4.1.3: with `Upload-Complete: ?1` the length is offset + Content-Length; "If indicators (1) and (2) are
  // both present in the same request, their indicated lengths MUST match."
  const declared = h["upload-length"];
  if (complete && declared !== undefined && declared !== offset + bytes) {
    throw inconsistentLength("Upload-Length does not match Upload-Offset + Content-Length of the last append", {
      uploadLength: declared,
      offset,
      contentLength: bytes,
    });
  }
  if (declared !== undefined && offset + bytes > declared) {
    throw inconsistentLength("The content runs past Upload-Length", {
      uploadLength: declared,
      offset,
      contentLength: bytes,
    });
  }
  // §4.4.2: "The server MUST record the length according to {{upload-length}} if the `Upload-Length` or
  // `Upload-Complete` header fields are included in the request." The session records a length once and
  // refuses any other (tus 1.0.0's rule too).
  const body: TusBody = {
    stream: bytes > 0 ? c.req.raw.body : null,
    length: bytes,
    uploadLength: complete ? offset + bytes : (declared ?? null),
    checksum: contentChecksum(h["content-digest"]),
  };
  let accepted: Accepted;
  try {
    accepted = await outliveClient(c, appendAt(c, uploadId, offset, body));
  } catch (err) {
    throw await appendRefusal(c, uploadId, err, offset, bytes);
  }
  if (accepted.wasComplete && accepted.file) {
    // §4.4.2: an empty append to a complete upload: "The server can use the problem type … completed-upload".
    throw new ApiError(400, "upload_completed", "The upload is already complete", undefined, {
      [FILE_LOCATION_HEADER]: fileLocation(accepted.file.id),
    });
  }
  c.header("Upload-Offset", String(accepted.offset));
  if (accepted.file) return completed(c, accepted.file, accepted.file.size, 200);
  // §4.4.2: "If the `Upload-Complete` request header field is set to false … the server acknowledges the
  // appended data by sending a `2xx (Successful)` response with the `Upload-Complete` header field set to false."
  c.header("Upload-Complete", "?0");
  return c.body(null, 204);
}

/**
 * Upload cancellation (§4.5). §4.5.2: "Upon receiving a `DELETE` request, the server SHOULD deactivate the
 * upload resource." An unfinished upload is aborted like any other (reservation released, multipart upload
 * and tail objects removed; a request still writing loses its lease and records nothing more). A completed
 * upload's resource is deactivated and its file kept: the file is the result of processing the upload, and
 * `DELETE /v1/files/{id}` deletes it. Afterwards the upload answers 410.
 */
async function cancel(c: Context<AppEnv>) {
  interopVersionOf(c);
  const uploadId = uploadIdOf(c);
  auditAs(c, { action: "upload.abort", uploadId });
  unwrapLeased(await sessionFor(c.env, uploadId).tusTerminate(c.get("userId"), requestMeta(c)));
  return c.body(null, 204);
}

function notAllowed(allow: string): never {
  throw new ApiError(405, "method_not_allowed", `Allowed methods: ${allow}`, undefined, { Allow: allow });
}

const COLLECTION_METHODS = "OPTIONS, POST, PUT";
const UPLOAD_METHODS = "OPTIONS, HEAD, PATCH, DELETE";

/** `/v1/resumable` (with or without a trailing slash): discovery and creation. */
function collection(c: Context<AppEnv>) {
  switch (c.req.method) {
    case "OPTIONS":
      return options(c, COLLECTION_METHODS);
    // §4.2.1: "all request methods that allow content are possible, such as `POST`, `PUT`, and `PATCH`";
    // a PATCH is taken as an append, to an upload resource.
    case "POST":
    case "PUT":
      return create(c);
    default:
      return notAllowed(COLLECTION_METHODS);
  }
}

export const resumable = new Hono<AppEnv>()
  .use(gate)
  .all("/", collection)
  .all("/:id{[^/]*}", (c) => {
    if (c.req.param("id") === "") return collection(c);
    switch (c.req.method) {
      case "OPTIONS":
        return options(c, UPLOAD_METHODS);
      case "HEAD":
        return head(c);
      case "PATCH":
        return append(c);
      case "DELETE":
        return cancel(c);
      default:
        return notAllowed(UPLOAD_METHODS);
    }
  })
  .all("*", () => {
    throw new ApiError(404, "route_not_found", "No such route");
  })
  .onError(renderProblem);
