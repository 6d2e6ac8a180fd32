// Typed calls of the public HTTP API (docs/api.md, docs/files-api.md, docs/admin-api.md). Nothing here
// knows about the server's internals: only routes, bodies and answers.
import type { ApiClient } from "./api-client.ts";

export interface FileInfo {
  id: string;
  filename: string;
  size: number;
  contentType: string;
  sha256?: string;
  etag: string | null;
  createdAt: string;
  metadata: Record<string, string>;
}

export interface Usage {
  usedBytes: number;
  reservedBytes: number;
  limitBytes: number;
  fileCount: number;
  activeUploads: number;
}

export interface CreatedUpload {
  uploadId: string;
  filename: string;
  size: number;
  partSize: number;
  partCount: number;
  expiresAt: string;
  status: string;
}

export type UploadStatus = "active" | "completing" | "completed" | "aborted" | "expired" | "failed";

export interface UploadView {
  uploadId: string;
  status: UploadStatus;
  filename: string;
  contentType: string;
  size: number;
  partSize: number;
  partCount: number;
  sha256?: string;
  metadata?: Record<string, string>;
  missingParts: number[];
  bytesReceived: number;
  expiresAt: string;
  createdAt: string;
  file?: FileInfo;
}

export interface ActiveUpload {
  uploadId: string;
  filename: string;
  size: number;
  createdAt: string;
}

export interface UserLimits {
  quotaBytes: number;
  maxFileSizeBytes: number;
  allowedContentTypes: string[];
  requestsPerSecond: number;
  burst: number;
  bytesPerMinute: number;
  maxActiveUploads: number;
}

export interface AdminUserView {
  userId: string;
  usage: Usage;
  limits: UserLimits;
}

export interface NewUpload {
  filename: string;
  size: number;
  contentType?: string;
  sha256?: string;
  metadata?: Record<string, string>;
}

const id = (value: string) => encodeURIComponent(value);

/** The caller's usage and quota. */
export function getUsage(api: ApiClient): Promise<Usage> {
  return api.json<Usage>("/v1/usage");
}

/** Every file of the caller, page after page (newest first). */
export async function* listFiles(api: ApiClient, options: { prefix?: string; pageSize?: number } = {}) {
  let cursor: string | null = null;
  do {
    const query = new URLSearchParams({ limit: String(options.pageSize ?? 1000) });
    if (options.prefix !== undefined) query.set("prefix", options.prefix);
    if (cursor) query.set("cursor", cursor);
    const page: { files: FileInfo[]; nextCursor: string | null } = await api.json(`/v1/files?${query}`);
    yield* page.files;
    cursor = page.nextCursor;
  } while (cursor);
}

/** One file, or null when the server does not know it (unknown, deleted or another user's). */
export async function getFile(api: ApiClient, fileId: string): Promise<FileInfo | null> {
  const res = await api.call(`/v1/files/${id(fileId)}`, { accept: [404] });
  if (res.status !== 404) return (await res.json()) as FileInfo;
  await res.body?.cancel();
  return null;
}

/** Deletes a file; false when it was already gone. */
export async function deleteFile(api: ApiClient, fileId: string): Promise<boolean> {
  const res = await api.call(`/v1/files/${id(fileId)}`, { method: "DELETE", accept: [404] });
  await res.body?.cancel();
  return res.status !== 404;
}

/** A presigned download URL for one of the caller's files, valid `expiresIn` seconds. */
export function createLink(api: ApiClient, fileId: string, expiresIn: number) {
  return api.json<{ url: string; expiresAt: string }>(`/v1/files/${id(fileId)}/links`, {
    method: "POST",
    json: { expiresIn },
  });
}

/**
 * Creates an upload. Not retried after a lost connection (the upload may exist): callers look for it
 * among their active uploads before creating again.
 */
export function createUpload(api: ApiClient, upload: NewUpload): Promise<CreatedUpload> {
  return api.json<CreatedUpload>("/v1/uploads", { method: "POST", json: upload, idempotent: false });
}

/** An upload's state, or null when the server does not know it. */
export async function getUpload(api: ApiClient, uploadId: string): Promise<UploadView | null> {
  const res = await api.call(`/v1/uploads/${id(uploadId)}`, { accept: [404] });
  if (res.status !== 404) return (await res.json()) as UploadView;
  await res.body?.cancel();
  return null;
}

/** The caller's uploads that still hold a reservation (active or completing). */
export async function* listActiveUploads(api: ApiClient) {
  let cursor: string | null = null;
  do {
    const query = new URLSearchParams({ limit: "1000" });
    if (cursor) query.set("cursor", cursor);
    const page: { uploads: ActiveUpload[]; nextCursor: string | null } = await api.json(`/v1/uploads?${query}`);
    yield* page.uploads;
    cursor = page.nextCursor;
  } while (cursor);
}

/**
 * Completes an upload. A completed upload answers the same file again, but a second call while the
 * first is still assembling would assemble again: so a lost answer is not retried here (the caller
 * waits for the upload to leave `completing`; see multipart-upload.ts).
 */
export async function completeUpload(api: ApiClient, uploadId: string): Promise<FileInfo> {
  const { file } = await api.json<{ file: FileInfo }>(`/v1/uploads/${id(uploadId)}/complete`, {
    method: "POST",
    idempotent: false,
  });
  return file;
}

/** Aborts an upload. Returns what happened: aborted (or already), gone, or already completed. */
export async function abortUpload(api: ApiClient, uploadId: string): Promise<"aborted" | "gone" | "completed"> {
  const res = await api.call(`/v1/uploads/${id(uploadId)}`, { method: "DELETE", accept: [404, 409, 410] });
  await res.body?.cancel();
  if (res.status === 409) return "completed";
  return res.status === 404 || res.status === 410 ? "gone" : "aborted";
}

/** Operator: a user's usage and effective limits. */
export function getAdminUser(admin: ApiClient, userId: string): Promise<AdminUserView> {
  return admin.json<AdminUserView>(`/v1/admin/users/${id(userId)}`);
}

/** Operator: a short-lived token to act as the user through the public API (audited server-side). */
export function mintUserToken(admin: ApiClient, userId: string, ttlSeconds: number, actor?: string) {
  return admin.json<{ token: string; expiresAt: string }>(`/v1/admin/users/${id(userId)}/tokens`, {
    method: "POST",
    json: { ttlSeconds },
    headers: actor ? { "X-Admin-Actor": actor } : {},
  });
}
