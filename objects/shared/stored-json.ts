/**
 * Parsers for the JSON the objects keep in their SQLite columns (a completed upload's file record, an
 * upload's metadata). The objects wrote it themselves, so a value that does not parse is corruption:
 * they throw rather than hand a half-formed record to a caller.
 */
import type { FileRecord } from "../../src/core/domain";

/** Parses a stored `FileRecord`; throws when the JSON is not one. */
export function parseFileRecord(json: string): FileRecord {
  const value: unknown = JSON.parse(json);
  if (!isFileRecord(value)) throw new Error("stored file record is malformed");
  return value;
}

/** Parses stored upload metadata (string values by name), or null for none; throws when it is not that. */
export function parseMetadata(json: string | null): Record<string, string> | null {
  if (json === null) return null;
  const value: unknown = JSON.parse(json);
  if (!isStringRecord(value)) throw new Error("stored upload metadata is malformed");
  return value;
}

function isFileRecord(v: unknown): v is FileRecord {
  if (!isObject(v)) return false;
  return (
    typeof v.id === "string" &&
    typeof v.userId === "string" &&
    typeof v.uploadId === "string" &&
    typeof v.filename === "string" &&
    typeof v.size === "number" &&
    typeof v.contentType === "string" &&
    (v.sha256 === null || typeof v.sha256 === "string") &&
    typeof v.etag === "string" &&
    typeof v.r2Key === "string" &&
    (v.metadata === null || isStringRecord(v.metadata)) &&
    typeof v.createdAt === "number"
  );
}

function isStringRecord(v: unknown): v is Record<string, string> {
  return isObject(v) && Object.values(v).every((x) => typeof x === "string");
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
