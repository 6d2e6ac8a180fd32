import type { z } from "zod";
import { ApiError } from "./errors";

/** Encodes a keyset position as an opaque, URL-safe cursor. */
export function encodeCursor(position: unknown): string {
  const bytes = new TextEncoder().encode(JSON.stringify(position));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Decodes a cursor made by {@link encodeCursor} and checks its shape; anything else is a 400. */
export function decodeCursor<T>(cursor: string, schema: z.ZodType<T>): T {
  try {
    const base64 = cursor.replace(/-/g, "+").replace(/_/g, "/");
    const json = new TextDecoder().decode(Uint8Array.from(atob(base64), (ch) => ch.charCodeAt(0)));
    return schema.parse(JSON.parse(json));
  } catch {
    throw new ApiError(400, "invalid_request", "The cursor is not valid", { cursor });
  }
}
