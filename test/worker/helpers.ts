import { env } from "cloudflare:test";
import { exports } from "cloudflare:workers";
import { sign } from "hono/jwt";

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
