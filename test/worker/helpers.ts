import { env, runDurableObjectAlarm } from "cloudflare:test";
import { exports } from "cloudflare:workers";
import { sign } from "hono/jwt";
import type { AccountPolicy } from "../../src/core/policy";
import { createApp } from "../../src/http/app";

/** A user token signed with the test AUTH_SECRET; `ttlSeconds` may be negative to make an expired one. */
export async function tokenFor(userId: string, ttlSeconds = 3600): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return sign({ sub: userId, iat: now, exp: now + ttlSeconds }, env.AUTH_SECRET, "HS256");
}

/** Sends a request through the Worker's real fetch handler (routing, middleware, bindings). */
export function call(path: string, init: RequestInit & { token?: string } = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (init.token) headers.set("Authorization", `Bearer ${init.token}`);
  return exports.default.fetch(new Request(`https://uploads.test${path}`, { ...init, headers }));
}

/** Sends a JSON request as `userId` and returns status and parsed body. */
export async function callJson<T = any>(
  path: string,
  init: RequestInit & { token?: string; json?: unknown } = {},
): Promise<{ status: number; body: T; headers: Headers }> {
  const headers = new Headers(init.headers);
  let body = init.body;
  if (init.json !== undefined) {
    headers.set("Content-Type", "application/json");
    body = JSON.stringify(init.json);
  }
  const res = await call(path, { ...init, headers, body });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : null) as T, headers: res.headers };
}

/** Random bytes of any length (getRandomValues fills at most 64 KiB a call). */
export function randomBytes(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i += 65536) crypto.getRandomValues(bytes.subarray(i, Math.min(length, i + 65536)));
  return bytes;
}

/** The Worker app with some vars overridden (same real bindings): for limits a test needs small. */
export function callWithVars(vars: Partial<Record<keyof Env, string>>) {
  const app = createApp();
  const patched = { ...env, ...vars } as Env;
  return async (path: string, init: RequestInit & { token?: string; json?: unknown } = {}) => {
    const headers = new Headers(init.headers);
    if (init.token) headers.set("Authorization", `Bearer ${init.token}`);
    let body = init.body;
    if (init.json !== undefined) {
      headers.set("Content-Type", "application/json");
      body = JSON.stringify(init.json);
    }
    const res = await app.request(`https://uploads.test${path}`, { ...init, headers, body }, patched);
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : null) as any, headers: res.headers };
  };
}

/** Lowercase hex SHA-256 of bytes. */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Uploads one part with an exact Content-Length. */
export function putPart(
  uploadId: string,
  n: number,
  bytes: Uint8Array,
  token: string,
  headers: Record<string, string> = {},
) {
  return callJson(`/v1/uploads/${uploadId}/parts/${n}`, {
    method: "PUT",
    token,
    body: bytes,
    headers: { "Content-Length": String(bytes.length), ...headers },
  });
}

/** Creates an upload, sends every part and completes it; returns the create response and the file. */
export async function uploadWhole(token: string, bytes: Uint8Array, extra: Record<string, unknown> = {}) {
  const created = await callJson("/v1/uploads", {
    method: "POST",
    token,
    json: { filename: "f.bin", size: bytes.length, ...extra },
  });
  if (created.status !== 201) throw new Error(`create failed: ${JSON.stringify(created.body)}`);
  const { uploadId, partSize, partCount } = created.body;
  for (let n = 1; n <= partCount; n++) {
    const res = await putPart(uploadId, n, bytes.subarray((n - 1) * partSize, n * partSize), token);
    if (res.status !== 200) throw new Error(`part ${n} failed: ${JSON.stringify(res.body)}`);
  }
  const completed = await callJson(`/v1/uploads/${uploadId}/complete`, { method: "POST", token });
  return { uploadId, created: created.body, completed };
}

/**
 * Runs an object's alarm until its outbox is empty (its own alarm may be running at the same moment, in
 * which case runDurableObjectAlarm finds nothing to run: wait for it).
 */
export async function drain(stub: { pendingCheckpoints(): Promise<Record<string, number>> }): Promise<void> {
  for (let i = 0; i < 100; i++) {
    await runDurableObjectAlarm(stub as unknown as DurableObjectStub);
    if (Object.keys(await stub.pendingCheckpoints()).length === 0) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`outbox not drained: ${JSON.stringify(await stub.pendingCheckpoints())}`);
}

/** A generous account policy with some limits set, for calling the account object directly. */
export function testPolicy(limits: Partial<AccountPolicy>): AccountPolicy {
  return {
    quotaBytes: 1024 ** 3,
    maxFileSizeBytes: 1024 ** 3,
    allowedContentTypes: ["*/*"],
    requestsPerSecond: 1000,
    burst: 1000,
    bytesPerMinute: 1024 ** 3,
    maxActiveUploads: 100,
    ...limits,
  };
}

/** A file as a completed upload leaves it: an R2 object and its `files` row. */
export interface SeededFile {
  id: string;
  key: string;
  etag: string;
  size: number;
  lastModified: string;
  bytes: Uint8Array;
}

/** Puts an object into R2 and its `files` row into D1 directly, the way a completed upload leaves them. */
export async function seedFile(
  userId: string,
  opts: { body?: Uint8Array; filename?: string; mimeType?: string; status?: "active" | "deleted" } = {},
): Promise<SeededFile> {
  const id = crypto.randomUUID();
  const key = `u/${userId}/${id}`;
  const bytes = opts.body ?? randomBytes(1000);
  const object = (await env.BUCKET.put(key, bytes))!; // null only with onlyIf, which is not used
  const now = Date.now();
  await env.DB.prepare(
    `INSERT INTO files (id, user_id, upload_id, filename, r2_key, mime_type, file_size, checksum, etag, metadata,
                        status, deleted_at, created_at, updated_at, version)
     VALUES (?, ?, NULL, ?, ?, ?, ?, NULL, ?, NULL, ?, NULL, ?, ?, 1)`,
  )
    .bind(
      id,
      userId,
      opts.filename ?? "data.bin",
      key,
      opts.mimeType ?? "application/octet-stream",
      object.size,
      object.etag,
      opts.status ?? "active",
      now,
      now,
    )
    .run();
  return { id, key, etag: object.etag, size: object.size, lastModified: object.uploaded.toUTCString(), bytes };
}

/** Polls D1 for a user's audit rows matching `where` (the Worker writes some after the response). */
export async function auditRows(userId: string, where: string, ...binds: unknown[]): Promise<any[]> {
  for (let attempt = 0; attempt < 60; attempt++) {
    const { results } = await env.DB.prepare(
      `SELECT * FROM file_access_logs WHERE user_id = ? AND ${where} ORDER BY timestamp`,
    )
      .bind(userId, ...binds)
      .all();
    if (results.length > 0) return results;
    await new Promise((r) => setTimeout(r, 50));
  }
  return [];
}
