import { ApiError } from "./errors";

/** The algorithms of RFC 9530's registry this service verifies, with their Web Crypto names. */
const ALGORITHMS = { "sha-512": "SHA-512", "sha-256": "SHA-256" } as const;

export interface ExpectedDigest {
  algorithm: (typeof ALGORITHMS)[keyof typeof ALGORITHMS];
  bytes: Uint8Array;
}

/**
 * Reads a `Content-Digest` header (RFC 9530 §2: a Structured Fields Dictionary whose members are byte
 * sequences, e.g. `sha-256=:base64:`). Returns the strongest digest this service verifies, or null when
 * the header is absent or names only algorithms it does not know ("a recipient MAY ignore any or all
 * digests", §2). A malformed header is a client error.
 */
export function parseContentDigest(header: string | undefined): ExpectedDigest | null {
  if (header === undefined) return null;
  const found = new Map<string, Uint8Array>();
  for (const member of header.split(",")) {
    const m = /^\s*([a-z][a-z0-9_.*-]*)\s*=\s*:([A-Za-z0-9+/]*={0,2}):\s*$/.exec(member);
    if (!m) throw new ApiError(400, "invalid_request", "Content-Digest is not a valid RFC 9530 dictionary");
    try {
      found.set(
        m[1],
        Uint8Array.from(atob(m[2]), (ch) => ch.charCodeAt(0)),
      );
    } catch {
      throw new ApiError(400, "invalid_request", "Content-Digest has an invalid base64 value");
    }
  }
  for (const name of ["sha-512", "sha-256"] as const) {
    const bytes = found.get(name);
    if (!bytes) continue;
    const expectedLength = name === "sha-512" ? 64 : 32;
    if (bytes.length !== expectedLength)
      throw new ApiError(400, "invalid_request", `Content-Digest ${name} must be ${expectedLength} bytes`);
    return { algorithm: ALGORITHMS[name], bytes };
  }
  return null;
}

/** Constant-time equality of two byte strings. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

export const toHex = (bytes: ArrayBuffer | Uint8Array): string =>
  Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
