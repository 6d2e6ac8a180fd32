/**
 * The vocabulary of "Resumable Uploads for HTTP" (draft-ietf-httpbis-resumable-upload; section numbers are
 * those of draft -12, July 2026): interop versions, fields, limits, problem types, and the parsing of every
 * request field with zod on top of the Structured Field parsers. The quoted requirements are the draft's;
 * the code next to each quote is what obeys it. docs/resumable.md maps each requirement to its test.
 */
import type { Context } from "hono";
import { z } from "zod";
import { MEDIA_TYPE } from "../core/media-type";
import { MAX_PART_SIZE } from "../core/part-plan";
import type { AppEnv } from "../http/app-env";
import { ApiError } from "../http/errors";
import { parseBooleanItem, parseDictionary, parseIntegerItem, serializeIntegerDictionary } from "./structured-fields";

/**
 * Interop versions this server speaks (`Upload-Draft-Interop-Version`, Appendix B: "Client implementations
 * of draft versions of the protocol MUST send a header field `Upload-Draft-Interop-Version` with the interop
 * version as its value to its requests"). 8 is the interop version of drafts -09 to -12 ("The current
 * interop version is 8"); 6 is that of drafts -04 and -05, which tus-js-client 4 speaks as
 * `protocol: "ietf-draft-05"`. Versions 3 to 5 and 7 differ in ways this server does not implement
 * (`Upload-Incomplete`, `expires` instead of `max-age`, …): they are refused like any unknown version.
 */
export const INTEROP_VERSIONS = {
  8: "draft-ietf-httpbis-resumable-upload-09 to -12",
  6: "draft-ietf-httpbis-resumable-upload-04 and -05",
} as const;
export type InteropVersion = 6 | 8;
export const LATEST_INTEROP_VERSION: InteropVersion = 8;
export const SUPPORTED_INTEROP_VERSIONS = [8, 6] as const;

/** §6: "The `application/partial-upload` media type describes a contiguous block from the representation data". */
export const PARTIAL_UPLOAD = "application/partial-upload";

/** The header that names a completed upload's file, as on the tus endpoint (README.md, docs/tus.md). */
export const FILE_LOCATION_HEADER = "Upload-File-Location";
export const fileLocation = (fileId: string) => `/v1/files/${fileId}`;
export const uploadLocation = (uploadId: string) => `/v1/resumable/${uploadId}`;

/**
 * §4.1.4 `max-append-size`: "a maximum size counted in bytes for the request content in a single upload
 * append or upload creation request". Cloudflare's edge refuses request bodies over 100 MB before the
 * Worker sees them; the largest body this service takes anywhere is one part, 95 MiB, for the same reason
 * (`MAX_PART_SIZE`). An append is cut into R2 parts as it streams, so no other bound applies.
 */
export const MAX_APPEND_SIZE = MAX_PART_SIZE;

/** §7: the problem types the draft registers, with their titles (§14.4) and recommended statuses. */
export const PROBLEM_TYPES = {
  mismatchingOffset: {
    type: "https://iana.org/assignments/http-problem-types#mismatching-upload-offset",
    title: "Mismatching Upload Offset",
  },
  completedUpload: {
    type: "https://iana.org/assignments/http-problem-types#completed-upload",
    title: "Upload Is Completed",
  },
  inconsistentLength: {
    type: "https://iana.org/assignments/http-problem-types#inconsistent-upload-length",
    title: "Inconsistent Upload Length Values",
  },
} as const;

/**
 * The limits of an upload resource (§4.1.4), serialised as `Upload-Limit`, a Dictionary of Integers.
 * `min-append-size` is never sent: the server takes appends of any size (bytes that do not fill a part wait
 * in a tail segment, see docs/tus.md), and since -12 applies that limit to creation requests too, sending it
 * would forbid the empty creation request that lets a client learn the upload's URI without 104.
 */
export interface UploadLimits {
  /** Largest representation, in bytes. */
  maxSize?: number;
  /** Remaining lifetime of the upload resource, in seconds from now. */
  maxAge?: number;
}

export function uploadLimitHeader(limits: UploadLimits): string {
  const members: [string, number][] = [];
  if (limits.maxSize !== undefined) members.push(["max-size", limits.maxSize]);
  members.push(["max-append-size", MAX_APPEND_SIZE]);
  if (limits.maxAge !== undefined) members.push(["max-age", Math.max(0, limits.maxAge)]);
  return serializeIntegerDictionary(members);
}

/** Seconds left until `expiresAt` (epoch ms), rounded down: the `max-age` limit. */
export const secondsUntil = (expiresAt: number, now = Date.now()) => Math.max(0, Math.floor((expiresAt - now) / 1000));

/** Whether a Content-Type is `application/partial-upload` (parameters and case ignored). */
export function isPartialUpload(contentType: string | undefined): boolean {
  return contentType?.split(";")[0].trim().toLowerCase() === PARTIAL_UPLOAD;
}

/**
 * An Item field whose value is a non-negative Integer (`Upload-Offset`, `Upload-Length`, §4.1.1, §4.1.3):
 * "Its value is a non-negative Integer … Other values MUST cause the entire header field to be ignored."
 * So a malformed value reads as absent, not as an error.
 */
const SfNonNegativeInteger = z
  .string()
  .optional()
  .transform((raw) => {
    const n = parseIntegerItem(raw);
    return n !== null && n >= 0 ? n : undefined;
  });

/**
 * `Upload-Complete` (§4.1.2): "Its value is a Boolean … Other values MUST cause the entire header field to
 * be ignored."
 */
const SfBoolean = z
  .string()
  .optional()
  .transform((raw) => parseBooleanItem(raw) ?? undefined);

/** `Content-Length` as HTTP defines it (a plain decimal, not a Structured Field). */
const ContentLength = z
  .string()
  .trim()
  .regex(/^\d{1,16}$/, "must be a non-negative integer")
  .transform(Number)
  .refine(Number.isSafeInteger, "is too large")
  .optional();

/** The request fields the routes read, lower-cased, for zod. */
export function draftHeaders(c: Context<AppEnv>) {
  return {
    "upload-draft-interop-version": c.req.header("Upload-Draft-Interop-Version"),
    "upload-complete": c.req.header("Upload-Complete"),
    "upload-offset": c.req.header("Upload-Offset"),
    "upload-length": c.req.header("Upload-Length"),
    "upload-metadata": c.req.header("Upload-Metadata"),
    "content-length": c.req.header("Content-Length"),
    "content-type": c.req.header("Content-Type"),
    "content-disposition": c.req.header("Content-Disposition"),
    "content-digest": c.req.header("Content-Digest"),
    "repr-digest": c.req.header("Repr-Digest"),
  };
}

/**
 * The interop version of a request. Appendix B makes the field mandatory on every request of a draft
 * client; a request without it, or with a version this server does not speak, is refused before anything
 * else happens (a clear 400 listing the versions it does speak).
 */
export const VersionHeader = z.object({
  "upload-draft-interop-version": z
    .string()
    .optional()
    .transform((raw, ctx): InteropVersion => {
      const n = parseIntegerItem(raw);
      if (n === 6 || n === 8) return n;
      ctx.addIssue({ code: "custom", message: "unsupported interop version" });
      return z.NEVER;
    }),
});

export function interopVersionOf(c: Context<AppEnv>): InteropVersion {
  const raw = c.req.header("Upload-Draft-Interop-Version");
  const parsed = VersionHeader.safeParse({ "upload-draft-interop-version": raw });
  if (parsed.success) return parsed.data["upload-draft-interop-version"];
  throw new ApiError(
    400,
    "unsupported_interop_version",
    raw === undefined
      ? `Send Upload-Draft-Interop-Version: ${LATEST_INTEROP_VERSION} (or 6 for draft -05 clients)`
      : `Upload-Draft-Interop-Version ${raw.slice(0, 32)} is not spoken here; send ${LATEST_INTEROP_VERSION} or 6`,
    { supported: SUPPORTED_INTEROP_VERSIONS, received: raw?.slice(0, 32) ?? null },
  );
}

/** Upload creation (§4.2): any method with content that carries `Upload-Complete`. */
export const CreationHeaders = z.object({
  "upload-complete": SfBoolean,
  "upload-length": SfNonNegativeInteger,
  "upload-metadata": z.string().max(4096, "must be at most 4096 characters").optional(),
  "content-length": ContentLength,
  "content-type": z.string().optional(),
  "content-disposition": z.string().max(2048, "must be at most 2048 characters").optional(),
  "content-digest": z.string().optional(),
  "repr-digest": z.string().optional(),
});
export type CreationHeaders = z.output<typeof CreationHeaders>;

/** Upload append (§4.4): PATCH with `application/partial-upload`. */
export const AppendHeaders = z.object({
  "upload-complete": SfBoolean,
  "upload-offset": SfNonNegativeInteger,
  "upload-length": SfNonNegativeInteger,
  "content-length": ContentLength,
  "content-type": z.string().optional(),
  "content-digest": z.string().optional(),
});
export type AppendHeaders = z.output<typeof AppendHeaders>;

/**
 * The media type of the representation at creation (§4.2.1: "The `Content-Type` header field indicates the
 * media type of the representation"). `application/partial-upload` (which tus-js-client sends with a
 * creation body) labels a block, not the representation, so it names no type; nor does an absent field.
 */
export function representationType(contentType: string | undefined): string | null {
  if (contentType === undefined || contentType.trim() === "" || isPartialUpload(contentType)) return null;
  const value = contentType.trim();
  if (!MEDIA_TYPE.test(value)) {
    throw new ApiError(400, "invalid_request", "Content-Type must be a media type such as image/png", {
      contentType: value.slice(0, 255),
    });
  }
  return value;
}

/**
 * The filename of `Content-Disposition` (§4.2.1: "The `Content-Disposition` header field can be used to
 * transmit a filename. For this purpose, the `inline` disposition type is RECOMMENDED"). RFC 6266 §4.3:
 * "when both 'filename' and 'filename*' are present … recipients SHOULD pick 'filename*'". `filename*` is
 * RFC 8187 (`UTF-8''percent-encoded`); `filename` a token or quoted-string. Null when there is none; the
 * name is cleaned by `sanitizeFilename` before it is stored, like every client-chosen name.
 */
export function filenameOfDisposition(header: string | undefined): string | null {
  if (header === undefined) return null;
  const params = new Map<string, string>();
  const re = /;\s*([A-Za-z0-9!#$&+\-.^_`|~*]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)/g;
  for (const m of header.matchAll(re)) {
    const name = m[1].toLowerCase();
    if (params.has(name)) continue;
    const raw = m[2];
    params.set(name, raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, "$1") : raw);
  }
  const extended = params.get("filename*");
  if (extended !== undefined) {
    const m = /^UTF-8'[A-Za-z0-9-]*'(.*)$/i.exec(extended);
    if (m) {
      try {
        const name = decodeURIComponent(m[1]);
        if (name !== "") return name;
      } catch {
        // A malformed encoding: fall back to `filename`.
      }
    }
  }
  const plain = params.get("filename");
  return plain ? plain : null;
}

/**
 * `Repr-Digest` (§10.1, RFC 9530): "If the client knows the integrity digest of the entire representation
 * data before creating an upload resource, it can include the `Repr-Digest` header field". The service
 * verifies a whole file's SHA-256 on completion (as `sha256` does for the native API), so the `sha-256`
 * member is kept as lowercase hex; other algorithms are ignored (RFC 9530 §2: "a recipient MAY ignore any
 * or all digests"); a malformed field is ignored too, as a Structured Field.
 */
export function reprSha256(header: string | undefined): string | null {
  const member = parseDictionary(header)?.get("sha-256");
  if (!member || !("value" in member) || member.value.type !== "bytes") return null;
  const bytes = member.value.value;
  if (bytes.length !== 32) {
    throw new ApiError(400, "invalid_request", "Repr-Digest sha-256 must be 32 bytes");
  }
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
