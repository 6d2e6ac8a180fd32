/**
 * Range requests (RFC 9110 §14) and the complete decision for reading one representation: which of
 * 200 / 206 / 304 / 412 / 416 to answer, in the order RFC 9110 §13.2.2 prescribes. Pure functions with
 * no I/O; `file-delivery.ts` turns a {@link ReadPlan} into a response streamed from R2.
 *
 * Scope, on purpose: one byte range per request. "A server MAY ignore the Range header field" (§14.2),
 * so a multi-range request is answered with the whole representation (200) instead of a
 * multipart/byteranges body.
 */
import { evaluatePreconditions, parseEntityTagList, parseHttpDate, type Validators } from "./conditional";

/** The selected representation as far as the decision needs it. */
export interface Representation extends Validators {
  /** Length in bytes. */
  size: number;
}

/** What a Range header asks of a representation of a given length. */
export type RangeRequest =
  /** Serve the whole representation: no Range, or one this server ignores (malformed, multi, unknown unit). */
  | { kind: "ignore" }
  /** One satisfiable range, inclusive byte offsets: `start <= end < size`. */
  | { kind: "range"; start: number; end: number }
  /** A valid single range none of whose bytes exist: 416. */
  | { kind: "unsatisfiable" };

/*
 * RFC 9110 §14.1.1 and §14.1.2:
 *   ranges-specifier = range-unit "=" range-set
 *   range-set        = 1#range-spec
 *   range-spec       = int-range / suffix-range / other-range
 *   int-range        = first-pos "-" [ last-pos ]
 *   suffix-range     = "-" suffix-length
 * "the range unit 'bytes' […] is compared case-insensitively" (§14.1).
 */
const INT_RANGE = /^(\d+)-(\d*)$/;
const SUFFIX_RANGE = /^-(\d+)$/;

/**
 * Parses a `Range` header against a representation of `size` bytes.
 *
 * - Absent, malformed, a unit other than `bytes`, or more than one range → `ignore` (serve 200 whole).
 *   §14.2: "An origin server MUST ignore a Range header field that contains a range unit it does not
 *   understand." and "A server that supports range requests MAY ignore or reject a Range header field
 *   that contains an invalid ranges-specifier". An int-range "is invalid if the last-pos value is
 *   present and less than the first-pos" (§14.1.1).
 * - §14.1.2: "a bytes range-spec is satisfiable if it is either: an int-range with a first-pos that is
 *   less than the current length of the selected representation or a suffix-range with a non-zero
 *   suffix-length." Otherwise → `unsatisfiable` (416).
 * - Zero-length representation: §14.1.2: "When a selected representation has zero length, the only
 *   satisfiable form of range-spec is a suffix-range with a non-zero suffix-length." Such a range covers
 *   zero bytes, which Content-Range cannot express, so it is answered as the whole (empty)
 *   representation with 200 — allowed because a server MAY ignore Range.
 */
export function parseRange(header: string | null | undefined, size: number): RangeRequest {
  if (header == null) return { kind: "ignore" };
  const eq = header.indexOf("=");
  if (eq === -1 || header.slice(0, eq).trim().toLowerCase() !== "bytes") return { kind: "ignore" };
  // §5.6.1: a recipient MUST accept (and ignore) empty list elements such as "bytes=0-1,".
  const specs = header
    .slice(eq + 1)
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (specs.length !== 1) return { kind: "ignore" };
  const spec = specs[0];

  let m: RegExpExecArray | null;
  if ((m = INT_RANGE.exec(spec))) {
    const first = Number(m[1]);
    const last = m[2] === "" ? null : Number(m[2]);
    if (last !== null && last < first) return { kind: "ignore" };
    if (first >= size) return { kind: "unsatisfiable" };
    // §14.1.2: "If the last-pos value is absent, or if the value is greater than or equal to the
    // current length of the representation data, the byte range is interpreted as the remainder of the
    // representation".
    const end = last === null || last >= size ? size - 1 : last;
    return { kind: "range", start: first, end };
  }
  if ((m = SUFFIX_RANGE.exec(spec))) {
    const suffix = Number(m[1]);
    if (suffix === 0) return { kind: "unsatisfiable" };
    if (size === 0) return { kind: "ignore" }; // satisfiable but empty: see the zero-length note above
    // §14.1.2: "If the selected representation is shorter than the specified suffix-length, the entire
    // representation is used."
    return { kind: "range", start: Math.max(0, size - suffix), end: size - 1 };
  }
  return { kind: "ignore" };
}

/**
 * Evaluates If-Range, RFC 9110 §13.1.5. "A valid entity-tag can be distinguished from a valid HTTP-date
 * by examining the first three characters for a DQUOTE."
 *
 * Entity tag: "1. If the entity-tag validator provided exactly matches the ETag field value for the
 * selected representation using the strong comparison function (Section 8.8.3.2), the condition is
 * true. 2. Otherwise, the condition is false."
 *
 * HTTP-date: "1. If the HTTP-date validator provided is not a strong validator in the sense defined by
 * Section 8.8.2.2, the condition is false. 2. If the HTTP-date validator provided exactly matches the
 * Last-Modified field value for the selected representation, the condition is true. 3. Otherwise, the
 * condition is false." A file's bytes never change after it is created, so this origin server has the
 * "reliable knowledge that the representation did not change twice during the second covered by the
 * presented validator" that §8.8.2.2 asks for, and its Last-Modified is a strong validator.
 */
export function ifRangeHolds(value: string, v: Validators): boolean {
  const trimmed = value.trim();
  if (trimmed.slice(0, 3).includes('"')) {
    const tags = parseEntityTagList(trimmed);
    // Exactly one strong tag is a valid If-Range; a weak one never matches strongly.
    return tags !== null && tags.length === 1 && !tags[0].weak && tags[0].opaque === v.etag;
  }
  const date = parseHttpDate(trimmed);
  return date !== null && Math.floor(date / 1000) === Math.floor(v.lastModified / 1000);
}

/** The response a read should produce. `start`/`end` are inclusive byte offsets of a 206. */
export type ReadPlan =
  | { status: 200 }
  | { status: 206; start: number; end: number }
  | { status: 304 }
  | { status: 412 }
  | { status: 416 };

/**
 * Decides how to answer a GET or HEAD of `rep` given the request headers, following RFC 9110 §13.2.2
 * (preconditions first: 412 before 304 before anything about ranges), then:
 *
 *   5. When the method is GET and both Range and If-Range are present, evaluate the If-Range
 *      precondition: if true and the Range is applicable to the selected representation, respond 206
 *      (Partial Content); otherwise, ignore the Range header field and respond 200 (OK)
 *   6. Otherwise, perform the requested method and respond according to its success or failure.
 *
 * Range only applies to GET. §14.2: "A server MUST ignore a Range header field received with a request
 * method that is unrecognized or for which range handling is not defined. For this specification, GET
 * is the only method for which range handling is defined." So HEAD with Range answers 200 with the
 * whole representation's headers.
 *
 * 416 follows §14.2: "If all of the preconditions are true, the server supports the Range header field
 * for the target resource, the received Range field-value contains a range-unit the server supports,
 * and the range-set is unsatisfiable, the server SHOULD send a 416 (Range Not Satisfiable) response."
 */
export function planRead(method: string, headers: Headers, rep: Representation): ReadPlan {
  const precondition = evaluatePreconditions(method, headers, rep);
  if (precondition !== "proceed") return { status: precondition };
  if (method !== "GET") return { status: 200 };

  const range = headers.get("Range");
  if (range === null) return { status: 200 };
  // §13.1.5: "A server MUST ignore an If-Range header field received in a request that does not contain
  // a Range header field." Here Range is present, so a false If-Range means: send everything.
  const ifRange = headers.get("If-Range");
  if (ifRange !== null && !ifRangeHolds(ifRange, rep)) return { status: 200 };

  const parsed = parseRange(range, rep.size);
  switch (parsed.kind) {
    case "ignore":
      return { status: 200 };
    case "unsatisfiable":
      return { status: 416 };
    case "range":
      return { status: 206, start: parsed.start, end: parsed.end };
  }
}

/** `Content-Range` of a 206 (RFC 9110 §14.4): `bytes <first>-<last>/<complete-length>`. */
export function contentRange(start: number, end: number, size: number): string {
  return `bytes ${start}-${end}/${size}`;
}

/**
 * `Content-Range` of a 416 (RFC 9110 §15.5.17): "the sender SHOULD generate a Content-Range header field
 * specifying the current length of the selected representation", as `bytes *\/<complete-length>`.
 */
export function unsatisfiedContentRange(size: number): string {
  return `bytes */${size}`;
}
