/**
 * The vocabulary of the tus resumable upload protocol, version 1.0.0
 * (https://tus.io/protocols/resumable-upload): versions, extensions, headers and their parsing. The
 * quoted requirements are the spec's; the code next to each quote is what obeys it.
 */
import type { Context } from "hono";
import { z } from "zod";
import { MEDIA_TYPE } from "../core/media-type";
import type { AppEnv } from "../http/app-env";
import { ApiError } from "../http/errors";

export const TUS_VERSION = "1.0.0";

/**
 * "The `Tus-Extension` response header MUST be a comma-separated list of the extensions supported by the
 * Server." Concatenation is not offered: it is not implemented.
 */
export const TUS_EXTENSIONS = [
  "creation",
  "creation-with-upload",
  "creation-defer-length",
  "expiration",
  "checksum",
  "termination",
];

/**
 * Checksum algorithms by their tus names (lower case, "MUST only consist of ASCII characters with the
 * modification that uppercase characters are excluded"), with the Workers `DigestStream` name and the
 * digest length. "The Server MUST support at least the SHA1 checksum algorithm identified by `sha1`."
 */
export const CHECKSUM_ALGORITHMS = {
  sha1: { digest: "SHA-1", bytes: 20 },
  sha256: { digest: "SHA-256", bytes: 32 },
  md5: { digest: "MD5", bytes: 16 },
} as const;
export type ChecksumName = keyof typeof CHECKSUM_ALGORITHMS;

/** "All `PATCH` requests MUST use `Content-Type: application/offset+octet-stream`". */
export const OFFSET_OCTET_STREAM = "application/offset+octet-stream";

/** tus 1.0.0 §Checksum: the status for "the checksums mismatch". Not in HTTP's registry, hence the cast. */
export const CHECKSUM_MISMATCH = 460;

/** The header that names a completed upload's file (documented in README.md and docs/tus.md). */
export const FILE_LOCATION_HEADER = "Upload-File-Location";

export const fileLocation = (fileId: string) => `/v1/files/${fileId}`;
export const uploadLocation = (uploadId: string) => `/v1/tus/${uploadId}`;

/** "The value of the `Upload-Expires` header MUST be in RFC 7231 datetime format." */

/** Longest `Upload-Metadata` header accepted at creation. */
const MAX_METADATA_HEADER = 4096;
/** File metadata (the keys not used for the file's name and type) is a small string map, as for the native API. */
const MAX_FILE_METADATA_BYTES = 2048;

/**
 * "The `Upload-Offset` request and response header indicates a byte offset within a resource. The value
 * MUST be a non-negative integer." So must `Upload-Length` and, for our purposes, `Content-Length`.
 */
const NonNegativeInteger = z
  .string()
  .trim()
  .regex(/^\d{1,16}$/, "must be a non-negative integer")
  .transform(Number)
  .refine(Number.isSafeInteger, "is too large");

/** Whether a Content-Type is `application/offset+octet-stream` (parameters and case ignored). */
export function isOffsetOctetStream(contentType: string | undefined): boolean {
  return contentType?.split(";")[0].trim().toLowerCase() === OFFSET_OCTET_STREAM;
}

/** The request headers the tus routes read, lower-cased, for zod. */
export function tusHeaders(c: Context<AppEnv>) {
  return {
    "upload-length": c.req.header("Upload-Length"),
    "upload-defer-length": c.req.header("Upload-Defer-Length"),
    "upload-offset": c.req.header("Upload-Offset"),
    "upload-metadata": c.req.header("Upload-Metadata"),
    "upload-checksum": c.req.header("Upload-Checksum"),
    "upload-concat": c.req.header("Upload-Concat"),
    "content-length": c.req.header("Content-Length"),
    "content-type": c.req.header("Content-Type"),
  };
}

/** POST (creation, optionally with a body). */
export const CreationHeaders = z
  .object({
    "upload-length": NonNegativeInteger.optional(),
    // "If the `Upload-Defer-Length` header contains any other value than `1` the server should return a
    // `400 Bad Request` status."
    "upload-defer-length": z.literal("1", { error: "must be 1" }).optional(),
    "upload-metadata": z
      .string()
      .max(MAX_METADATA_HEADER, `must be at most ${MAX_METADATA_HEADER} characters`)
      .optional(),
    "upload-checksum": z.string().optional(),
    "upload-concat": z.undefined({ error: "concatenation is not supported" }),
    "content-length": NonNegativeInteger.optional(),
    "content-type": z.string().optional(),
  })
  // "The request MUST include one of the following headers: a) `Upload-Length` … b) `Upload-Defer-Length: 1`"
  .refine((h) => (h["upload-length"] === undefined) !== (h["upload-defer-length"] === undefined), {
    message: "send exactly one of Upload-Length and Upload-Defer-Length: 1",
    path: ["upload-length"],
  });
export type CreationHeaders = z.output<typeof CreationHeaders>;

/** PATCH. */
export const PatchHeaders = z.object({
  "upload-offset": NonNegativeInteger,
  // "Once it is known the Client MUST set the `Upload-Length` header in the next `PATCH` request."
  "upload-length": NonNegativeInteger.optional(),
  "upload-checksum": z.string().optional(),
  "content-length": NonNegativeInteger.optional(),
  "content-type": z.string().optional(),
});
export type PatchHeaders = z.output<typeof PatchHeaders>;

/** An `Upload-Checksum` to verify the body against. */
export interface ExpectedChecksum {
  name: ChecksumName;
  /** The Workers `DigestStream` algorithm. */
  digest: string;
  bytes: Uint8Array;
}

/**
 * "The `Upload-Checksum` request header … MUST consist of the name of the used checksum algorithm and the
 * Base64 encoded checksum separated by a space." An algorithm this server does not support → 400 ("400
 * Bad Request if the checksum algorithm is not supported by the server"); a malformed header → 400.
 */
export function parseUploadChecksum(header: string | undefined): ExpectedChecksum | null {
  if (header === undefined) return null;
  const m = /^\s*([!-~]+) ([A-Za-z0-9+/]+={0,2})\s*$/.exec(header);
  if (!m) throw new ApiError(400, "invalid_checksum", "Upload-Checksum must be `<algorithm> <base64 digest>`");
  const name = m[1];
  if (!Object.hasOwn(CHECKSUM_ALGORITHMS, name)) {
    throw new ApiError(
      400,
      "unsupported_checksum_algorithm",
      `Checksum algorithm ${name.slice(0, 32)} is not supported`,
      {
        supported: Object.keys(CHECKSUM_ALGORITHMS),
      },
    );
  }
  const algorithm = CHECKSUM_ALGORITHMS[name as ChecksumName];
  const bytes = decodeBase64(m[2]);
  if (!bytes || bytes.length !== algorithm.bytes) {
    throw new ApiError(400, "invalid_checksum", `A ${name} checksum is ${algorithm.bytes} bytes, Base64-encoded`);
  }
  return { name: name as ChecksumName, digest: algorithm.digest, bytes };
}

/** Parsed `Upload-Metadata`: the header as sent (validated) and its decoded values. */
export interface UploadMetadata {
  header: string;
  values: Map<string, string>;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** Keys: printable ASCII without space or comma, 1–128 characters (metadata keys of the native API are ≤ 128). */
const METADATA_KEY = /^[!-+\--~]{1,128}$/;

/**
 * "The `Upload-Metadata` request and response header MUST consist of one or more comma-separated
 * key-value pairs. The key and value MUST be separated by a space. The key MUST NOT contain spaces and
 * commas and MUST NOT be empty. The key SHOULD be ASCII encoded and the value MUST be Base64 encoded. All
 * keys MUST be unique. The value MAY be empty. In these cases, the space … MAY be left out."
 *
 * Anything else is refused with 400, so the header echoed on HEAD is only ever printable ASCII: "Servers
 * SHOULD carefully validate metadata values or sanitize them before using them as header values to avoid
 * header smuggling."
 */
export function parseUploadMetadata(header: string | undefined): UploadMetadata | null {
  if (header === undefined || header.trim() === "") return null;
  const values = new Map<string, string>();
  for (const pair of header.split(",")) {
    const fields = pair.trim().split(" ");
    if (fields.length > 2) throw invalidMetadata("a key and its value are separated by one space");
    const [key, value = ""] = fields;
    if (!METADATA_KEY.test(key))
      throw invalidMetadata("keys are 1-128 printable ASCII characters without spaces or commas");
    if (values.has(key)) throw invalidMetadata(`key ${key} appears twice`);
    const bytes = decodeBase64(value);
    if (!bytes) throw invalidMetadata(`the value of ${key} is not Base64`);
    values.set(key, new TextDecoder().decode(bytes));
  }
  return { header: header.trim(), values };
}

function invalidMetadata(why: string): ApiError {
  return new ApiError(400, "invalid_metadata", `Upload-Metadata is malformed: ${why}`);
}

/** What a tus creation takes from the metadata: `filename`, `filetype`/`contentType`, and the rest as file metadata. */
export interface FileFields {
  filename: string | null;
  contentType: string;
  metadata: Record<string, string> | null;
}

export function fileFieldsOf(meta: UploadMetadata | null): FileFields {
  const values = new Map(meta?.values ?? []);
  const filename = values.get("filename") || null;
  // Browsers report an unknown type as "": that is no type.
  const contentType = values.get("filetype") || values.get("contentType") || "application/octet-stream";
  for (const key of ["filename", "filetype", "contentType"]) values.delete(key);
  if (!MEDIA_TYPE.test(contentType)) {
    throw new ApiError(400, "invalid_metadata", "filetype must be a media type such as image/png", {
      contentType: contentType.slice(0, 255),
    });
  }
  const metadata = values.size > 0 ? Object.fromEntries(values) : null;
  if (metadata && new TextEncoder().encode(JSON.stringify(metadata)).length > MAX_FILE_METADATA_BYTES) {
    throw new ApiError(
      400,
      "invalid_metadata",
      `File metadata must be at most ${MAX_FILE_METADATA_BYTES} bytes as JSON`,
    );
  }
  return { filename, contentType, metadata };
}

function decodeBase64(value: string): Uint8Array | null {
  if (!BASE64.test(value)) return null;
  try {
    return Uint8Array.from(atob(value), (ch) => ch.charCodeAt(0));
  } catch {
    return null;
  }
}
