import { zValidator } from "@hono/zod-validator";
import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { every } from "hono/combine";
import { createMiddleware } from "hono/factory";
import { HTTPException } from "hono/http-exception";
import type { z } from "zod";
import type { AppEnv } from "./app-env";
import { ApiError, invalidRequest, zodDetails } from "./errors";

/** The largest JSON body any route takes: requests here are a few hundred bytes of fields. */
export const MAX_JSON_BODY_BYTES = 64 * 1024;

const JSON_MEDIA_TYPE = /^application\/([\w.-]+\+)?json$/i;

/** Whether the request carries a body at all (RFC 9112 §6.3: a length, or a transfer coding). */
function hasBody(c: Context): boolean {
  const length = c.req.header("Content-Length");
  return (length !== undefined && length.trim() !== "0") || c.req.header("Transfer-Encoding") !== undefined;
}

/**
 * A body that is there must say it is JSON: anything else is refused with 415 before a byte is read
 * (RFC 9110 §15.5.16), rather than read and guessed at. No body at all validates as `{}`, so routes
 * whose fields are all optional take an empty request.
 */
const requireJsonMediaType = createMiddleware<AppEnv>(async (c, next) => {
  if (hasBody(c)) {
    const mediaType = (c.req.header("Content-Type") ?? "").split(";")[0].trim();
    if (!JSON_MEDIA_TYPE.test(mediaType)) {
      throw new ApiError(415, "unsupported_media_type", "The body must be application/json", {
        contentType: mediaType || null,
      });
    }
  }
  await next();
});

/**
 * Caps what is read: a declared Content-Length over the cap is refused before reading, and a body without
 * one (chunked) is counted as it streams and cut off at the cap, so no request makes the Worker buffer
 * more than {@link MAX_JSON_BODY_BYTES}.
 */
const capJsonBody = bodyLimit({
  maxSize: MAX_JSON_BODY_BYTES,
  onError: () => {
    throw new ApiError(413, "payload_too_large", `JSON bodies are limited to ${MAX_JSON_BODY_BYTES} bytes`, {
      maxBytes: MAX_JSON_BODY_BYTES,
    });
  },
});

/**
 * The one JSON body reader: media type checked, size capped, then parsed and validated by `schema`;
 * the handler reads the typed result with `c.req.valid("json")`. Malformed JSON and schema failures
 * answer `400 invalid_request` with the issues in `details`.
 */
export function jsonBody<T extends z.ZodType>(schema: T) {
  const validate = zValidator("json", schema, (result) => {
    if (!result.success)
      throw invalidRequest("The request body is invalid", zodDetails(result.error as unknown as z.ZodError));
  });
  const read = every(capJsonBody, validate as MiddlewareHandler);
  const reader = createMiddleware<AppEnv>(async (c, next) => {
    let handled = false;
    try {
      await read(c, async () => {
        handled = true;
        await next();
      });
    } catch (err) {
      // A body that breaks while it is read (malformed chunked framing, a client gone mid-body) is the
      // request's fault, not the server's: 400, not 500. Errors from the handler itself pass through.
      if (handled || err instanceof ApiError || err instanceof HTTPException) throw err;
      throw invalidRequest("The request body could not be read", { cause: String(err).slice(0, 200) });
    }
  });
  return every(requireJsonMediaType, reader) as typeof validate;
}
