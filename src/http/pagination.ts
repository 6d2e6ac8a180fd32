/**
 * Keyset pagination over `(time, id)` in descending order, with opaque cursors. A cursor names the last
 * row a page returned, and the next page starts strictly after it, so rows inserted meanwhile (newer
 * ones, at the front) never shift, repeat or hide rows of later pages, unlike OFFSET.
 */
import { z } from "zod";
import { invalidRequest } from "./errors";

/** The sort key of a row: its time (epoch ms) and its id as the tie-breaker. */
export interface PageKey {
  time: number;
  id: string;
}

/** Which listing a cursor belongs to, so a cursor of one listing is refused by another. */
export type CursorKind = "files" | "audit" | "uploads";

const CursorPayload = z.tuple([
  z.enum(["files", "audit", "uploads"]),
  z.number().int().min(0),
  z.string().min(1).max(256),
]);

/** Encodes a page key as an opaque cursor: base64url of a small JSON tuple. Clients must not parse it. */
export function encodeCursor(kind: CursorKind, key: PageKey): string {
  const bytes = new TextEncoder().encode(JSON.stringify([kind, key.time, key.id]));
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * Decodes a cursor made by {@link encodeCursor} for `kind`. Anything else (not base64url, not the
 * expected JSON, another listing's cursor) is a client error: 400 `invalid_request`.
 */
export function decodeCursor(kind: CursorKind, cursor: string): PageKey {
  const bad = () =>
    invalidRequest("The cursor is invalid; pass back a nextCursor from this listing unchanged", [
      { path: "cursor", message: "invalid cursor" },
    ]);
  if (!/^[A-Za-z0-9_-]{1,1024}$/.test(cursor)) throw bad();
  let payload: unknown;
  try {
    const binary = atob(cursor.replace(/-/g, "+").replace(/_/g, "/"));
    payload = JSON.parse(
      new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(
        Uint8Array.from(binary, (c) => c.charCodeAt(0)),
      ),
    );
  } catch {
    throw bad();
  }
  const parsed = CursorPayload.safeParse(payload);
  if (!parsed.success || parsed.data[0] !== kind) throw bad();
  return { time: parsed.data[1], id: parsed.data[2] };
}

/** An optional query parameter where an empty value (`?limit=`) means "not given", as many clients send it. */
export const optionalParam = <T extends z.ZodType>(schema: T) =>
  z.preprocess((v) => (v === "" ? undefined : v), schema.optional());

/** A page size from the query string: digits only, so `1e2` or `10.0` are refused, not guessed. */
export const limitParam = (fallback: number, max: number) =>
  optionalParam(
    z
      .string()
      .regex(/^\d{1,7}$/, `must be a whole number from 1 to ${max}`)
      .transform(Number)
      .pipe(z.number().int().min(1, "must be at least 1").max(max, `must be at most ${max}`)),
  ).transform((v) => v ?? fallback);

/** `limit`: a whole number 1..1000, default 100. */
export const Limit = limitParam(100, 1000);

/** `cursor`: an opaque string from a previous page (decoded by the route with its kind). */
export const Cursor = optionalParam(z.string().max(1024));

/**
 * Cuts one page from rows fetched with `LIMIT limit + 1`: the extra row tells whether a next page exists
 * without a COUNT, and the cursor names the last row returned.
 */
export function pageOf<Row>(kind: CursorKind, rows: Row[], limit: number, keyOf: (row: Row) => PageKey) {
  const items = rows.slice(0, limit);
  const more = rows.length > limit;
  const nextCursor = more && items.length > 0 ? encodeCursor(kind, keyOf(items[items.length - 1])) : null;
  return { items, nextCursor };
}
