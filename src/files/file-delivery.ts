/**
 * Serves a file's bytes from R2 for GET and HEAD: one implementation behind both
 * `GET|HEAD /v1/files/:id/content` and `GET|HEAD /v1/links/:id`, so a presigned link behaves exactly like
 * an authenticated download (validators, Range, conditionals, headers, audit).
 */
import type { Context } from "hono";
import { requestMeta, writeAuditLater } from "../audit/audit-middleware";
import type { AuditAction } from "../core/audit";
import type { AppEnv } from "../http/app-env";
import { formatEntityTag, formatHttpDate } from "../http/conditional";
import { contentDisposition } from "../http/content-disposition";
import { ApiError, notFound } from "../http/errors";
import { contentRange, planRead, unsatisfiedContentRange } from "../http/range";
import type { FileRow } from "./file-records";

/** How a successful delivery is recorded in the audit log. */
export interface DeliveryAudit {
  action: Extract<AuditAction, "file.download" | "file.link_download">;
  /** The owner of the file: the audit log is per user, and a link download is an access to their file. */
  userId: string;
  /** When the request started, for `durationMs`. */
  started: number;
  metadata?: Record<string, unknown>;
}

/** A media type safe to echo in `Content-Type`; anything else is served as opaque bytes. */
const MEDIA_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(\s*;[\x20-\x7e]*)?$/;

function safeContentType(mimeType: string): string {
  return MEDIA_TYPE.test(mimeType) ? mimeType : "application/octet-stream";
}

/**
 * Answers a GET or HEAD of `file` (a live row the caller may read). The R2 object, not the D1 row, is
 * the source of the validators and the length: they describe the bytes actually served.
 *
 * R2 is read twice at most: `head` for the validators (and the existence check every answer needs),
 * then `get` only when bytes are sent, with `etagMatches` so the bytes belong to the validators just
 * evaluated. Bodies are streamed from R2 into the response, never buffered.
 */
export async function deliverFile(c: Context<AppEnv>, file: FileRow, audit: DeliveryAudit): Promise<Response> {
  const object = await c.env.BUCKET.head(file.r2_key);
  // The row says live but the bytes are gone (a delete in progress): as gone as an unknown file.
  if (!object) throw notFound("File");

  const rep = { size: object.size, etag: object.etag, lastModified: object.uploaded.getTime() };
  const method = c.req.method;
  const plan = planRead(method, c.req.raw.headers, rep);
  const etag = formatEntityTag(object.etag);

  if (plan.status === 412) {
    throw new ApiError(
      412,
      "precondition_failed",
      "A precondition (If-Match or If-Unmodified-Since) did not hold",
      undefined,
      {
        ETag: etag,
      },
    );
  }
  if (plan.status === 416) {
    throw new ApiError(
      416,
      "range_not_satisfiable",
      "The requested range starts beyond the end of the file",
      { size: rep.size },
      {
        "Content-Range": unsatisfiedContentRange(rep.size),
        "Accept-Ranges": "bytes",
      },
    );
  }

  const meta = requestMeta(c);
  const record = (status: number, bytes: number, range?: string) =>
    writeAuditLater(c, [
      {
        id: crypto.randomUUID(),
        userId: audit.userId,
        action: audit.action,
        success: true,
        fileId: file.id,
        bytesTransferred: bytes,
        durationMs: Date.now() - audit.started,
        ipAddress: meta.ipAddress,
        userAgent: meta.userAgent,
        metadata: { ...audit.metadata, method, status, ...(range ? { range } : {}) },
        timestamp: Date.now(),
      },
    ]);

  if (plan.status === 304) {
    // RFC 9110 §15.4.5: a 304 carries the fields a 200 would have had among Content-Location, Date,
    // ETag, Vary, Cache-Control and Expires, and SHOULD NOT carry other representation metadata.
    record(304, 0);
    return new Response(null, { status: 304, headers: { ETag: etag, "Cache-Control": "private" } });
  }

  const headers = new Headers({
    ETag: etag,
    "Last-Modified": formatHttpDate(rep.lastModified),
    "Content-Type": safeContentType(file.mime_type),
    "Content-Disposition": contentDisposition(file.filename),
    "Accept-Ranges": "bytes",
    "Cache-Control": "private",
    // User-chosen content types must not be sniffed into something executable on this origin.
    "X-Content-Type-Options": "nosniff",
  });
  let length = rep.size;
  let range: string | undefined;
  if (plan.status === 206) {
    length = plan.end - plan.start + 1;
    range = contentRange(plan.start, plan.end, rep.size);
    headers.set("Content-Range", range);
  }
  headers.set("Content-Length", String(length));

  if (method === "HEAD") {
    record(plan.status, 0);
    return new Response(null, { status: plan.status, headers });
  }

  const body = await c.env.BUCKET.get(file.r2_key, {
    onlyIf: { etagMatches: object.etag },
    ...(plan.status === 206 ? { range: { offset: plan.start, length } } : {}),
  });
  if (!body) throw notFound("File");
  // `etagMatches` failed: the object was replaced between head and get. Keys are never reused, so this
  // means a concurrent rewrite; a retry will see one consistent version.
  if (!("body" in body))
    throw new ApiError(409, "file_changed", "The file changed while it was being read; retry the request");

  record(plan.status, length, range);
  return new Response(body.body, { status: plan.status, headers });
}
