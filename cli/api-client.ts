// The CLI's one way to talk to the server: JSON in and out, bearer auth, and the retry rules of the
// public API — a 429 waits for its Retry-After, a lost connection or a 5xx is retried with backoff when
// repeating the request is safe, a 401 asks the token source for a fresh token once.
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

const VERSION = (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string })
  .version;
export const USER_AGENT = `durable-uploads-cli/${VERSION}`;

/** An error answer of the API: `{"error":{"code","message","details?"}}` and its status. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details: unknown;
  readonly requestId: string | null;

  constructor(status: number, code: string, message: string, details: unknown, requestId: string | null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
    this.requestId = requestId;
  }
}

/** The server could not be reached (or the connection broke) and retrying did not help or was unsafe. */
export class NetworkError extends Error {
  constructor(message: string, cause: unknown) {
    super(message, { cause });
    this.name = "NetworkError";
  }
}

/** Supplies bearer tokens; `refresh` (optional) is asked once after a 401, e.g. when a token expired. */
export interface TokenSource {
  token(): Promise<string>;
  refresh?(): Promise<string>;
}

export type BodySource = Uint8Array | string | (() => ReadableStream<Uint8Array>);

export interface CallOptions {
  method?: string;
  /** Sent as the JSON body. */
  json?: unknown;
  /** A raw body; a function makes a fresh stream for each attempt (then `contentLength` is required). */
  body?: BodySource;
  contentLength?: number;
  headers?: Record<string, string>;
  /** Statuses handed back to the caller instead of thrown (e.g. 404 where "already gone" is fine). */
  accept?: number[];
  /**
   * Whether repeating the request is safe when its effect is unknown (the connection broke, a 5xx).
   * Creating an upload is not: a lost answer may hide a created upload. A 429 is always retried: a
   * refused request changes nothing.
   */
  idempotent?: boolean;
  signal?: AbortSignal;
  /** Called before each attempt, so a caller can reset what it counted for a failed one. */
  onAttempt?: (attempt: number) => void;
  /**
   * Let this request finish even when the client's signal fires (a part in flight when Ctrl-C comes):
   * it is not aborted, but neither retried afterwards.
   */
  drain?: boolean;
}

export interface RetryNotice {
  attempt: number;
  delayMs: number;
  reason: string;
}

export interface ApiClientOptions {
  baseUrl: string;
  auth?: TokenSource | string;
  signal?: AbortSignal;
  /** Attempts for lost connections and 5xx answers (429 waits have their own, larger allowance). */
  maxAttempts?: number;
  onRetry?: (notice: RetryNotice) => void;
}

/** `DURABLE_UPLOADS_DEBUG=1` logs every request with its status and time on stderr. */
const DEBUG = Boolean(process.env.DURABLE_UPLOADS_DEBUG);
const RETRYABLE_STATUS = new Set([500, 502, 503, 504]);
/** Longest wait honoured from a Retry-After; a server asking for more is treated as refusing. */
const MAX_RETRY_AFTER_S = 300;
const MAX_RATE_LIMIT_WAITS = 30;

/** Whether an error is the result of the caller's abort signal (Ctrl-C), not a failure. */
export function isAbort(err: unknown): boolean {
  return err instanceof Error && (err.name === "AbortError" || err.name === "TimeoutError");
}

/** A short description of why a fetch failed: undici hides the useful part in `cause`. */
function describeFetchError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause as { code?: string; message?: string } | undefined;
  return cause?.code ?? cause?.message ?? err.message;
}

/** Exponential backoff with jitter: 0.5 s, 1 s, 2 s, … capped at 15 s. */
function backoffMs(attempt: number): number {
  const base = Math.min(15_000, 500 * 2 ** (attempt - 1));
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

/** Reads an error answer; a body that is not the API's error shape still gives a usable error. */
export async function readApiError(res: Response): Promise<ApiError> {
  const requestId = res.headers.get("x-request-id");
  const text = await res.text().catch(() => "");
  try {
    const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown; details?: unknown } };
    if (parsed.error && typeof parsed.error.code === "string") {
      return new ApiError(
        res.status,
        parsed.error.code,
        typeof parsed.error.message === "string" ? parsed.error.message : parsed.error.code,
        parsed.error.details,
        requestId,
      );
    }
  } catch {
    // not JSON: fall through
  }
  const snippet = text.trim().slice(0, 200);
  return new ApiError(
    res.status,
    `http_${res.status}`,
    `HTTP ${res.status}${snippet ? `: ${snippet}` : ""}`,
    undefined,
    requestId,
  );
}

/** A client of one server with one set of credentials. */
export class ApiClient {
  readonly baseUrl: string;
  readonly #auth: TokenSource | undefined;
  readonly #signal: AbortSignal | undefined;
  readonly #maxAttempts: number;
  readonly #onRetry: ((notice: RetryNotice) => void) | undefined;

  constructor(options: ApiClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    const auth = options.auth;
    this.#auth = typeof auth === "string" ? { token: async () => auth } : auth;
    this.#signal = options.signal;
    this.#maxAttempts = options.maxAttempts ?? 10;
    this.#onRetry = options.onRetry;
  }

  /** A client for the same server with other credentials (e.g. one user of a migration). */
  withAuth(auth: TokenSource | string): ApiClient {
    return new ApiClient({
      baseUrl: this.baseUrl,
      auth,
      signal: this.#signal,
      maxAttempts: this.#maxAttempts,
      onRetry: this.#onRetry,
    });
  }

  /**
   * Sends one request, retrying as the rules above allow. Answers with a 2xx (or an accepted status)
   * are returned with their body unread; any other is thrown as an ApiError.
   */
  async call(path: string, options: CallOptions = {}): Promise<Response> {
    const clientSignal = options.drain ? undefined : this.#signal;
    const signals = [clientSignal, options.signal].filter((s): s is AbortSignal => s !== undefined);
    const signal = signals.length > 1 ? AbortSignal.any(signals) : signals[0];
    // Once stopping, a drained request gets no further attempt.
    const stopping = () => Boolean(this.#signal?.aborted);
    const idempotent = options.idempotent ?? true;
    let failures = 0;
    let rateLimitWaits = 0;
    let refreshed = false;
    for (let attempt = 1; ; attempt++) {
      signal?.throwIfAborted();
      options.onAttempt?.(attempt);
      let res: Response;
      try {
        const started = performance.now();
        res = await fetch(`${this.baseUrl}${path}`, await this.#init(options, signal));
        if (DEBUG) {
          const ms = (performance.now() - started).toFixed(0);
          process.stderr.write(
            `debug: ${options.method ?? "GET"} ${path} → ${res.status} in ${ms} ms (attempt ${attempt})\n`,
          );
        }
      } catch (err) {
        if (signal?.aborted) throw signal.reason ?? err;
        failures++;
        const reason = describeFetchError(err);
        if (stopping()) throw this.#signal?.reason ?? err;
        if (!idempotent || failures >= this.#maxAttempts) {
          throw new NetworkError(`cannot reach ${this.baseUrl} (${reason})`, err);
        }
        await this.#wait(backoffMs(failures), attempt, `connection failed (${reason})`, signal);
        continue;
      }
      if (res.ok || options.accept?.includes(res.status)) return res;
      const error = await readApiError(res);
      if (stopping()) throw error;
      if (res.status === 401 && this.#auth?.refresh && !refreshed) {
        refreshed = true;
        await this.#auth.refresh();
        continue;
      }
      if (res.status === 429) {
        const retryAfter = Number(res.headers.get("retry-after"));
        // Without Retry-After a rate refusal cannot be cured by waiting; too many active uploads can.
        const waitable =
          error.code === "too_many_active_uploads" || (retryAfter > 0 && retryAfter <= MAX_RETRY_AFTER_S);
        if (waitable && ++rateLimitWaits <= MAX_RATE_LIMIT_WAITS) {
          const delay =
            retryAfter > 0 ? retryAfter * 1000 + Math.round(Math.random() * 250) : backoffMs(rateLimitWaits);
          await this.#wait(delay, attempt, `${error.code} (429)`, signal);
          continue;
        }
      } else if (RETRYABLE_STATUS.has(res.status) && idempotent && ++failures < this.#maxAttempts) {
        await this.#wait(backoffMs(failures), attempt, `${error.code} (${res.status})`, signal);
        continue;
      }
      throw error;
    }
  }

  /** `call` and parse the JSON answer. */
  async json<T>(path: string, options: CallOptions = {}): Promise<T> {
    const res = await this.call(path, options);
    return (await res.json()) as T;
  }

  async #init(options: CallOptions, signal: AbortSignal | undefined): Promise<RequestInit> {
    const headers: Record<string, string> = { "User-Agent": USER_AGENT, ...options.headers };
    if (this.#auth) headers.Authorization = `Bearer ${await this.#auth.token()}`;
    const init: RequestInit & { duplex?: "half" } = { method: options.method ?? "GET", headers, signal };
    if (options.json !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.json);
    } else if (typeof options.body === "function") {
      if (options.contentLength === undefined) throw new Error("a streamed body needs contentLength");
      // The server requires Content-Length on parts; undici sends a stream with the length it is given.
      headers["Content-Length"] = String(options.contentLength);
      init.body = options.body();
      init.duplex = "half";
    } else if (options.body !== undefined) {
      init.body = options.body as BodyInit;
    }
    return init;
  }

  async #wait(delayMs: number, attempt: number, reason: string, signal: AbortSignal | undefined): Promise<void> {
    this.#onRetry?.({ attempt, delayMs, reason });
    await sleep(delayMs, undefined, { signal });
  }
}
