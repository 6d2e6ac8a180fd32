// Helpers of the tests that go through the Worker's HTTP surface (test/http), and the data they seed.
import { env } from "cloudflare:test";
import { exports } from "cloudflare:workers";
import { sign } from "hono/jwt";
import { createApp } from "../../src/http/app";

export const MiB = 1024 * 1024;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A request as the tests write it: a bearer token and a JSON body may come as options. */
export type TestInit = RequestInit & { token?: string; json?: unknown };

/** A response read whole: status, headers and the body parsed as JSON (null when empty). */
export interface Reply<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

/** A user token signed with the test AUTH_SECRET; `ttlSeconds` may be negative to make an expired one. */
export async function tokenFor(userId: string, ttlSeconds = 3600): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return sign({ sub: userId, iat: now, exp: now + ttlSeconds }, env.AUTH_SECRET, "HS256");
}

/** The `Authorization` header of the operator (ADMIN_TOKEN), with any other headers. */
export function adminHeaders(extra: Record<string, string> = {}): Record<string, string> {
  return { Authorization: `Bearer ${env.ADMIN_TOKEN}`, ...extra };
}

/** The token as an `Authorization` header and the JSON body, when given, applied to the request. */
function requestInit(init: TestInit): RequestInit {
  const headers = new Headers(init.headers);
  if (init.token) headers.set("Authorization", `Bearer ${init.token}`);
  let body = init.body;
  if (init.json !== undefined) {
    headers.set("Content-Type", "application/json");
    body = JSON.stringify(init.json);
  }
  return { ...init, headers, body };
}

async function readReply<T>(res: Response): Promise<Reply<T>> {
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : null) as T, headers: res.headers };
}

/** Sends a request through the Worker's real fetch handler (routing, middleware, bindings). */
export function call(path: string, init: TestInit = {}): Promise<Response> {
  return exports.default.fetch(new Request(`https://uploads.test${path}`, requestInit(init)));
}

/** Sends a request through the Worker's fetch handler and reads the reply as JSON. */
export async function callJson<T = any>(path: string, init: TestInit = {}): Promise<Reply<T>> {
  return readReply<T>(await call(path, init));
}

/** The Worker app with some vars overridden (same real bindings): for limits a test needs small. */
export function callWithVars(vars: Partial<Record<keyof Env, string>>) {
  const app = createApp();
  const patched = { ...env, ...vars } as Env;
  return async (path: string, init: TestInit = {}): Promise<Reply> =>
    readReply(await app.request(`https://uploads.test${path}`, requestInit(init), patched));
}

/** Random bytes of any length (getRandomValues fills at most 64 KiB a call). */
export function randomBytes(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i += 65536) crypto.getRandomValues(bytes.subarray(i, Math.min(length, i + 65536)));
  return bytes;
}

/** Whether two byte arrays hold the same bytes. */
export const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.from(a).equals(Buffer.from(b));

/**
 * A request body that sends `head`, then waits until `send()` to send `rest` and end, or until `drop()` to
 * fail as a dropped connection would: for a test that needs a request to be mid-body.
 */
export function gatedBody(head: Uint8Array, rest: Uint8Array) {
  let open!: (how: "send" | "drop") => void;
  const gate = new Promise<"send" | "drop">((r) => (open = r));
  let sentHead = false;
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!sentHead) {
        sentHead = true;
        controller.enqueue(head);
        return;
      }
      if ((await gate) === "drop") controller.error(new Error("connection dropped"));
      else {
        controller.enqueue(rest);
        controller.close();
      }
    },
  });
  return { stream, send: () => open("send"), drop: () => open("drop") };
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

/**
 * Polls a D1 query until `enough` says its rows are all there, and returns the last rows read: the Worker
 * and the objects' outboxes write some rows after the response, so a test must wait for them.
 */
export async function eventualRows(
  query: string,
  binds: unknown[],
  enough: (rows: any[]) => boolean = (rows) => rows.length > 0,
): Promise<any[]> {
  let rows: any[] = [];
  for (let attempt = 0; attempt < 60; attempt++) {
    rows = (
      await env.DB.prepare(query)
        .bind(...binds)
        .all()
    ).results;
    if (enough(rows)) return rows;
    await sleep(50);
  }
  return rows;
}

/** Polls D1 for a user's audit rows matching `where`. */
export function auditRows(userId: string, where: string, ...binds: unknown[]): Promise<any[]> {
  return eventualRows(`SELECT * FROM file_access_logs WHERE user_id = ? AND ${where} ORDER BY timestamp`, [
    userId,
    ...binds,
  ]);
}
