/**
 * Secrets that come as a set, so one can be rotated without invalidating what the others signed.
 * No imports: scripts/token.ts (plain Node) reads the same format.
 *
 * Format: comma-separated entries, each `kid:secret`; the FIRST entry signs, every entry verifies.
 * `AUTH_SECRET` may also hold one entry without a kid (a bare secret): that is how a single secret from
 * before key ids keeps verifying tokens that carry no `kid`. A value without any `:` is read as one bare
 * secret whole, exactly as before key sets existed.
 *
 *     AUTH_SECRET=9fT2…                      one secret, tokens carry no kid (the old form)
 *     AUTH_SECRET=k2:Qx81…,9fT2…             k2 signs; k2 and kid-less tokens verify
 *     AUTH_SECRET=k3:Zz0a…,k2:Qx81…          k3 signs; k3 and k2 verify
 *     LINK_SIGNING_KEYS=l2:…,l1:…            the same for download links (kids required)
 */

/** A key id: what a token's `kid` header or a link's `kid` parameter names. */
export const KID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

/** One secret of a set; `kid` is null for the bare (kid-less) secret. */
export interface SecretKey {
  kid: string | null;
  secret: string;
}

/** A parsed set: `signing` is the entry that signs new tokens or links (the first). */
export interface KeySet {
  keys: SecretKey[];
  signing: SecretKey;
  /** The secret for `kid` (`null`: the bare secret), or undefined when the set has none. */
  find(kid: string | null): SecretKey | undefined;
}

const cache = new Map<string, KeySet>();

/**
 * Parses a key set (see the module comment). Throws an Error naming `name` (never the secret) when the
 * value is malformed: empty entries or secrets, a bad or repeated kid, more than one bare secret, or a
 * bare secret where `allowBare` is false. Parsed sets are cached per value.
 */
export function parseKeySet(name: string, value: string, allowBare: boolean): KeySet {
  const cacheKey = `${allowBare ? 1 : 0}\n${name}\n${value}`;
  const cached = cache.get(cacheKey);
  if (cached) return cached;
  const fail = (why: string): never => {
    throw new Error(`${name} is malformed: ${why}`);
  };
  const trimmed = value.trim();
  if (!trimmed) fail("it is empty");
  const keys: SecretKey[] = [];
  if (!trimmed.includes(":")) {
    if (!allowBare) fail("each entry must be kid:secret");
    keys.push({ kid: null, secret: trimmed });
  } else {
    for (const raw of trimmed.split(",")) {
      const entry = raw.trim();
      const colon = entry.indexOf(":");
      const kid = colon < 0 ? null : entry.slice(0, colon);
      const secret = colon < 0 ? entry : entry.slice(colon + 1);
      if (!secret) fail("an entry has an empty secret");
      if (kid === null && !allowBare) fail("each entry must be kid:secret");
      if (kid !== null && !KID_PATTERN.test(kid)) fail("a kid must be 1-64 characters of A-Z a-z 0-9 . _ -");
      if (keys.some((k) => k.kid === kid)) fail(kid === null ? "more than one entry without a kid" : "a kid repeats");
      keys.push({ kid, secret });
    }
  }
  const set: KeySet = { keys, signing: keys[0], find: (kid) => keys.find((k) => k.kid === kid) };
  cache.set(cacheKey, set);
  return set;
}
