// Helpers of the tus tests (test/http/tus-*.test.ts): a raw tus client over the Worker's real fetch
// handler, or over an app with some vars overridden (`callWithVars`).
import { env } from "cloudflare:test";
import { callJson, type Reply, type TestInit } from "./http";

export type Api = (path: string, init?: TestInit) => Promise<Reply>;

/** Through `exports.default.fetch`: routing, middleware, real bindings. */
export const worker: Api = callJson;

export const TUS_HEADERS = { "Tus-Resumable": "1.0.0" };

/** `Upload-Metadata` from a string map. */
export function metadataHeader(values: Record<string, string>): string {
  const b64 = (s: string) => btoa(String.fromCharCode(...new TextEncoder().encode(s)));
  return Object.entries(values)
    .map(([k, v]) => (v === "" ? k : `${k} ${b64(v)}`))
    .join(",");
}

/** Base64 digest of bytes with a Web Crypto algorithm (MD5 works in workerd). */
export async function digestB64(algorithm: string, bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest(algorithm, bytes));
  return btoa(String.fromCharCode(...digest));
}

export interface CreateOptions {
  length?: number;
  defer?: boolean;
  metadata?: Record<string, string>;
  body?: Uint8Array;
  headers?: Record<string, string>;
}

/** A tus client for one user. */
export function tusClient(token: string, api: Api = worker) {
  return {
    async create(opts: CreateOptions = {}): Promise<Reply & { uploadId: string | null }> {
      const headers: Record<string, string> = { ...TUS_HEADERS };
      if (opts.defer) headers["Upload-Defer-Length"] = "1";
      else headers["Upload-Length"] = String(opts.length ?? opts.body?.length ?? 0);
      if (opts.metadata) headers["Upload-Metadata"] = metadataHeader(opts.metadata);
      if (opts.body) {
        headers["Content-Type"] = "application/offset+octet-stream";
        headers["Content-Length"] = String(opts.body.length);
      }
      const reply = await api("/v1/tus", {
        method: "POST",
        token,
        headers: { ...headers, ...opts.headers },
        body: opts.body,
      });
      const location = reply.headers.get("Location");
      return { ...reply, uploadId: location ? location.split("/").pop()! : null };
    },
    patch(
      uploadId: string,
      offset: number,
      bytes: Uint8Array | ReadableStream<Uint8Array>,
      headers: Record<string, string> = {},
      length?: number,
    ): Promise<Reply> {
      return api(`/v1/tus/${uploadId}`, {
        method: "PATCH",
        token,
        headers: {
          ...TUS_HEADERS,
          "Content-Type": "application/offset+octet-stream",
          "Upload-Offset": String(offset),
          "Content-Length": String(length ?? (bytes as Uint8Array).length),
          ...headers,
        },
        body: bytes,
        ...(bytes instanceof ReadableStream ? { duplex: "half" } : {}),
      } as RequestInit & { token: string });
    },
    head(uploadId: string, headers: Record<string, string> = {}): Promise<Reply> {
      return api(`/v1/tus/${uploadId}`, { method: "HEAD", token, headers: { ...TUS_HEADERS, ...headers } });
    },
    delete(uploadId: string): Promise<Reply> {
      return api(`/v1/tus/${uploadId}`, { method: "DELETE", token, headers: TUS_HEADERS });
    },
  };
}

/** The stored object of a completed file, as bytes. */
export async function storedBytes(userId: string, fileId: string): Promise<Uint8Array> {
  const object = await env.BUCKET.get(`u/${userId}/${fileId}`);
  if (!object) throw new Error(`no object for file ${fileId}`);
  return new Uint8Array(await object.arrayBuffer());
}

/** The file id named by an `Upload-File-Location` header. */
export function fileIdOf(reply: Reply): string {
  const location = reply.headers.get("Upload-File-Location");
  if (!location) throw new Error(`no Upload-File-Location (status ${reply.status}: ${JSON.stringify(reply.body)})`);
  return location.split("/").pop()!;
}
