/**
 * Presigned download links: a URL that lets whoever holds it read one file until it expires, without a
 * bearer token. The URL carries the file id (path), owner user id, expiry and an HMAC-SHA-256 signature
 * over all of them plus the method scope. The key is derived with HKDF from an entry of
 * `LINK_SIGNING_KEYS` (named by the link's `kid` parameter), so rotating the auth secret leaves links
 * alone, and two link keys at once keep old links valid until the old key is removed. Without
 * `LINK_SIGNING_KEYS`, links carry no kid and the key is derived from `AUTH_SECRET` (the old form, still
 * verified so links made before link keys existed keep working); the HKDF `info` keeps a link signature
 * from ever being confused with (or used to forge) a token signed by the same secret.
 */
import { z } from "zod";
import { KID_PATTERN, parseKeySet, type SecretKey } from "../auth/key-set";
import { authKeys, UserId } from "../auth/tokens";
import { FileId } from "./file-records";

/** Longest lifetime a link may be created with: 7 days. */
export const MAX_LINK_TTL_SECONDS = 604_800;

/** HKDF `info`: names what the derived key is for, so keys for other purposes derived later differ. */
const HKDF_INFO = "durable-uploads/v1 presigned download link HMAC-SHA-256 key";
/** HKDF salt: fixed and public (RFC 5869 §3.1 allows that); domain separation comes from `info`. */
const HKDF_SALT = "durable-uploads/v1 link salt";

/**
 * The method scope a link is signed for. HEAD is GET without content (RFC 9110 §9.3.2), so both verify
 * against the "GET" scope; any scope for writes would have to be signed under a different value, so a
 * download link can never authorize one.
 */
export type LinkScope = "GET";

/** The fields a link binds. `expiresAt` is epoch seconds. */
export interface LinkClaims {
  fileId: string;
  userId: string;
  expiresAt: number;
  scope: LinkScope;
}

const encoder = new TextEncoder();
const keys = new Map<string, Promise<CryptoKey>>();

/**
 * The HMAC key for links, derived from `secret` with HKDF-SHA-256 (Web Crypto) and cached per isolate:
 * derivation costs a few Web Crypto round trips and the secret rarely changes.
 */
export function linkKey(secret: string): Promise<CryptoKey> {
  // HKDF accepts empty input keying material; a missing secret must fail loudly instead of signing with it.
  if (!secret) return Promise.reject(new Error("The link signing secret is not configured"));
  let key = keys.get(secret);
  if (!key) {
    key = (async () => {
      const ikm = await crypto.subtle.importKey("raw", encoder.encode(secret), "HKDF", false, ["deriveKey"]);
      return crypto.subtle.deriveKey(
        { name: "HKDF", hash: "SHA-256", salt: encoder.encode(HKDF_SALT), info: encoder.encode(HKDF_INFO) },
        ikm,
        { name: "HMAC", hash: "SHA-256", length: 256 },
        false,
        ["sign"],
      );
    })();
    // Forget a failed derivation so the next request retries instead of failing forever.
    key.catch(() => keys.delete(secret));
    keys.set(secret, key);
  }
  return key;
}

/**
 * The exact bytes signed. Newline-separated is unambiguous because neither ids (`[A-Za-z0-9._-]`) nor
 * the scope nor a decimal expiry can contain a newline; the leading tag versions the format.
 */
function canonical(claims: LinkClaims): Uint8Array {
  return encoder.encode(["dl1", claims.scope, claims.fileId, claims.userId, String(claims.expiresAt)].join("\n"));
}

function toBase64Url(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * Decodes unpadded base64url, accepting only the canonical spelling. `atob` ignores the unused low bits
 * of the last character, so without the round-trip check several different strings would decode to the
 * same signature, and a "tampered" link could still verify.
 */
function fromBase64Url(text: string): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return null;
  let bytes: Uint8Array;
  try {
    bytes = Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/")), (ch) => ch.charCodeAt(0));
  } catch {
    return null;
  }
  return toBase64Url(bytes) === text ? bytes : null;
}

/** Signs `claims`; returns the signature as unpadded base64url. */
export async function signLink(secret: string, claims: LinkClaims): Promise<string> {
  const mac = await crypto.subtle.sign("HMAC", await linkKey(secret), canonical(claims));
  return toBase64Url(new Uint8Array(mac));
}

/**
 * True when `signature` is the signature of `claims`. The comparison is constant-time
 * (`crypto.subtle.timingSafeEqual`), so response timing reveals nothing about how many leading bytes of
 * a forged signature were right. Only the length is compared early, and a MAC's length is public.
 */
export async function verifyLink(secret: string, claims: LinkClaims, signature: string): Promise<boolean> {
  const given = fromBase64Url(signature);
  if (!given) return false;
  const expected = new Uint8Array(await crypto.subtle.sign("HMAC", await linkKey(secret), canonical(claims)));
  if (given.byteLength !== expected.byteLength) return false;
  return crypto.subtle.timingSafeEqual(given, expected);
}

/** Query parameters of a link URL. */
export const LINK_PARAMS = { owner: "owner", expires: "expires", kid: "kid", signature: "signature" } as const;

/** The kid-less link key: the bare `AUTH_SECRET` entry, else its signing entry. */
function legacyLinkKey(env: Env): SecretKey {
  const auth = authKeys(env);
  return { kid: null, secret: (auth.find(null) ?? auth.signing).secret };
}

/** The key new links are signed with: the first `LINK_SIGNING_KEYS` entry, else the kid-less legacy key. */
export function linkSigningKey(env: Env): SecretKey {
  if (!env.LINK_SIGNING_KEYS?.trim()) return legacyLinkKey(env);
  return parseKeySet("LINK_SIGNING_KEYS", env.LINK_SIGNING_KEYS, false).signing;
}

/**
 * The key a link's `kid` names: an entry of `LINK_SIGNING_KEYS`, or the legacy key for a link without a
 * kid. Undefined when no such key is configured (any more): the link is invalid.
 */
export function linkVerifyingKey(env: Env, kid: string | undefined): SecretKey | undefined {
  if (kid === undefined) return legacyLinkKey(env);
  if (!env.LINK_SIGNING_KEYS?.trim()) return undefined;
  return parseKeySet("LINK_SIGNING_KEYS", env.LINK_SIGNING_KEYS, false).find(kid);
}

/**
 * Builds the absolute URL of a link to `claims.fileId` under `origin`, signed with `key`:
 * `<origin>/v1/links/<fileId>?owner=<userId>&expires=<epochSeconds>[&kid=<kid>]&signature=<base64url>`.
 */
export async function buildLinkUrl(origin: string, key: SecretKey, claims: LinkClaims): Promise<string> {
  const url = new URL(`/v1/links/${encodeURIComponent(claims.fileId)}`, origin);
  url.searchParams.set(LINK_PARAMS.owner, claims.userId);
  url.searchParams.set(LINK_PARAMS.expires, String(claims.expiresAt));
  if (key.kid !== null) url.searchParams.set(LINK_PARAMS.kid, key.kid);
  url.searchParams.set(LINK_PARAMS.signature, await signLink(key.secret, claims));
  return url.toString();
}

/**
 * The parts of a link request, before the signature is checked. Anything that does not parse is a link
 * this service never issued; callers answer it as an invalid link rather than as a bad request.
 */
export const LinkRequest = z.object({
  fileId: FileId,
  owner: UserId,
  // Only the canonical decimal the server wrote (no sign, no leading zeros): one link, one spelling.
  expires: z
    .string()
    .regex(/^[1-9]\d{0,11}$/, "must be epoch seconds")
    .transform(Number),
  // Absent on links signed with the legacy key; otherwise the LINK_SIGNING_KEYS entry that signed it.
  kid: z.string().regex(KID_PATTERN).optional(),
  // An HMAC-SHA-256 is 32 bytes: 43 base64url characters without padding.
  signature: z.string().regex(/^[A-Za-z0-9_-]{43}$/, "must be a base64url HMAC-SHA-256"),
});
