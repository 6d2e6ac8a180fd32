/**
 * The public keys of an existing identity provider, read from its JWKS URL (RFC 7517 §5) and cached in
 * the isolate. The cache lives as long as the response's `Cache-Control: max-age` says (clamped to
 * 1 minute – 1 day; 10 minutes without one). A token naming a `kid` the cached set lacks triggers one
 * refresh — the provider may have rotated — but at most one per {@link REFRESH_COOLDOWN_MS} per isolate,
 * so a flood of tokens with made-up kids cannot turn into a flood of requests to the provider. When the
 * provider is down, a stale set keeps verifying the kids it has.
 */
import { createLocalJWKSet, errors, type JWTVerifyGetKey } from "jose";

const DEFAULT_MAX_AGE_MS = 10 * 60_000;
const MIN_MAX_AGE_MS = 60_000;
const MAX_MAX_AGE_MS = 24 * 3_600_000;
/** Fewest milliseconds between two fetches of one key set (after a failure, too). */
export const REFRESH_COOLDOWN_MS = 30_000;
const FETCH_TIMEOUT_MS = 5_000;

/** The key set could not be fetched (and no cached copy has the key): the caller answers 503. */
export class JwksUnavailable extends Error {}

interface CachedSet {
  lookup: ReturnType<typeof createLocalJWKSet> | null;
  fetchedAt: number;
  maxAgeMs: number;
  lastAttempt: number;
  inflight: Promise<void> | null;
}

const sets = new Map<string, CachedSet>();

/** `max-age` of a Cache-Control value in milliseconds, clamped; `no-store`/`no-cache` → the minimum. */
export function cacheLifetimeMs(cacheControl: string | null): number {
  if (!cacheControl) return DEFAULT_MAX_AGE_MS;
  if (/(^|,)\s*(no-store|no-cache)\s*(,|$)/i.test(cacheControl)) return MIN_MAX_AGE_MS;
  const maxAge = /(?:^|,)\s*max-age\s*=\s*"?(\d{1,10})"?\s*(?:,|$)/i.exec(cacheControl)?.[1];
  if (maxAge === undefined) return DEFAULT_MAX_AGE_MS;
  return Math.min(MAX_MAX_AGE_MS, Math.max(MIN_MAX_AGE_MS, Number(maxAge) * 1000));
}

/** Fetches the set once; concurrent callers share one request. */
function refresh(url: string, entry: CachedSet): Promise<void> {
  entry.inflight ??= (async () => {
    entry.lastAttempt = Date.now();
    let res: Response;
    try {
      res = await fetch(url, {
        headers: { Accept: "application/jwk-set+json, application/json" },
        redirect: "manual",
        signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
      });
    } catch (err) {
      throw new JwksUnavailable(`The JWKS could not be fetched: ${(err as Error).message}`);
    }
    if (res.status !== 200) {
      await res.body?.cancel();
      throw new JwksUnavailable(`The JWKS answered ${res.status}`);
    }
    let lookup: ReturnType<typeof createLocalJWKSet>;
    try {
      lookup = createLocalJWKSet(await res.json());
    } catch {
      throw new JwksUnavailable("The JWKS is not a JSON Web Key Set");
    }
    entry.lookup = lookup;
    entry.fetchedAt = Date.now();
    entry.maxAgeMs = cacheLifetimeMs(res.headers.get("Cache-Control"));
  })().finally(() => {
    entry.inflight = null;
  });
  return entry.inflight;
}

const coolingDown = (entry: CachedSet) => Date.now() - entry.lastAttempt < REFRESH_COOLDOWN_MS;

/**
 * A key resolver for `jose.jwtVerify` that picks the key by the token's `kid`/`alg` from the set at
 * `url`. Throws {@link JwksUnavailable} when no usable set can be had, jose's `JWKSNoMatchingKey` when
 * the set (refreshed if allowed) has no such key.
 */
export function jwksResolver(url: string): JWTVerifyGetKey {
  return async (header, token) => {
    let entry = sets.get(url);
    if (!entry) {
      entry = { lookup: null, fetchedAt: 0, maxAgeMs: 0, lastAttempt: 0, inflight: null };
      sets.set(url, entry);
    }
    const stale = Date.now() - entry.fetchedAt >= entry.maxAgeMs;
    if (stale && (entry.inflight || !coolingDown(entry))) {
      // A stale copy keeps serving while the provider is unreachable; only no copy at all is fatal.
      await refresh(url, entry).catch((err) => {
        if (!entry.lookup) throw err;
      });
    }
    const lookup = entry.lookup;
    if (!lookup) throw new JwksUnavailable("The JWKS could not be fetched recently; retry shortly");
    try {
      return await lookup(header, token);
    } catch (err) {
      // An unknown kid may be a key the provider has just rotated in: refresh once, if not done lately.
      if (!(err instanceof errors.JWKSNoMatchingKey) || coolingDown(entry)) throw err;
      await refresh(url, entry);
      return (entry.lookup ?? lookup)(header, token);
    }
  };
}
