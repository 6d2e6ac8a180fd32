// Helpers of the resumable-upload draft tests (test/http/resumable-*.test.ts): a raw client for
// `/v1/resumable` over the Worker's real fetch handler (or an app with some vars overridden).
import type { Reply } from "./http";
import { worker } from "./tus";

export type Api = (path: string, init?: RequestInit & { token?: string }) => Promise<Reply>;

export const PROBLEM = {
  mismatchingOffset: "https://iana.org/assignments/http-problem-types#mismatching-upload-offset",
  completedUpload: "https://iana.org/assignments/http-problem-types#completed-upload",
  inconsistentLength: "https://iana.org/assignments/http-problem-types#inconsistent-upload-length",
};

/** An `Upload-Limit` response field as a map (Integers only, which is all the server sends). */
export function limitsOf(reply: Reply): Record<string, number> {
  const field = reply.headers.get("Upload-Limit");
  if (field === null) throw new Error(`no Upload-Limit (status ${reply.status})`);
  return Object.fromEntries(
    field.split(",").map((member) => {
      const [key, value] = member.trim().split("=");
      return [key, Number(value)];
    }),
  );
}

export interface CreateOptions {
  /** `Upload-Complete`: false (`?0`, the default) or true (`?1`). */
  complete?: boolean;
  /** `Upload-Length`; omitted when undefined. */
  length?: number;
  body?: Uint8Array;
  headers?: Record<string, string>;
  method?: "POST" | "PUT";
}

/** A draft client of one user and one interop version (8, the latest, by default). */
export function draftClient(token: string, version = 8, api: Api = worker) {
  const versioned = (headers: Record<string, string> = {}) => ({
    "Upload-Draft-Interop-Version": String(version),
    ...headers,
  });
  return {
    async create(opts: CreateOptions = {}): Promise<Reply & { uploadId: string | null }> {
      const headers: Record<string, string> = { "Upload-Complete": opts.complete ? "?1" : "?0" };
      if (opts.length !== undefined) headers["Upload-Length"] = String(opts.length);
      if (opts.body) headers["Content-Length"] = String(opts.body.length);
      const reply = await api("/v1/resumable", {
        method: opts.method ?? "POST",
        token,
        headers: versioned({ ...headers, ...opts.headers }),
        body: opts.body,
      });
      const location = reply.headers.get("Location");
      return { ...reply, uploadId: location ? location.split("/").pop()! : null };
    },
    append(
      uploadId: string,
      offset: number,
      bytes: Uint8Array | ReadableStream<Uint8Array>,
      complete: boolean,
      headers: Record<string, string> = {},
      length?: number,
    ): Promise<Reply> {
      return api(`/v1/resumable/${uploadId}`, {
        method: "PATCH",
        token,
        headers: versioned({
          "Content-Type": "application/partial-upload",
          "Upload-Offset": String(offset),
          "Upload-Complete": complete ? "?1" : "?0",
          "Content-Length": String(length ?? (bytes as Uint8Array).length),
          ...headers,
        }),
        body: bytes,
        ...(bytes instanceof ReadableStream ? { duplex: "half" } : {}),
      } as RequestInit & { token: string });
    },
    head(uploadId: string, headers: Record<string, string> = {}): Promise<Reply> {
      return api(`/v1/resumable/${uploadId}`, { method: "HEAD", token, headers: versioned(headers) });
    },
    cancel(uploadId: string): Promise<Reply> {
      return api(`/v1/resumable/${uploadId}`, { method: "DELETE", token, headers: versioned() });
    },
  };
}
