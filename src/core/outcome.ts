import type { ErrorCode } from "./error-codes";

/**
 * The HTTP statuses the service answers errors with. A number union rather than the web framework's
 * type, so the Durable Objects can build failures without loading the framework. 460 is tus's
 * "Checksum Mismatch" (tus 1.0.0 §Checksum).
 */
export type ErrorStatus =
  | 400
  | 401
  | 403
  | 404
  | 405
  | 409
  | 410
  | 411
  | 412
  | 413
  | 415
  | 416
  | 422
  | 423
  | 428
  | 429
  | 460
  | 500
  | 502
  | 503;

/** The JSON body of every error response: `{"error":{"code","message","details?"}}`. */
export interface ErrorBody {
  code: ErrorCode;
  message: string;
  details?: unknown;
}

/**
 * Durable Object RPC methods return outcomes instead of throwing: a thrown error loses its class and
 * fields on the way back over RPC, a returned object does not.
 */
export interface Failure extends ErrorBody {
  status: ErrorStatus;
}

export type Refusal = { ok: false; error: Failure };
export type Outcome<T> = { ok: true; value: T } | Refusal;

export const ok = <T>(value: T): Outcome<T> => ({ ok: true, value });

export const fail = (status: ErrorStatus, code: ErrorCode, message: string, details?: unknown): Refusal => ({
  ok: false,
  error: details === undefined ? { status, code, message } : { status, code, message, details },
});
