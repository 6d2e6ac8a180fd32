/**
 * Conditional requests (RFC 9110 §13) for a read-only representation: entity tags, HTTP-dates and the
 * four preconditions that can refuse a GET/HEAD (If-Match, If-Unmodified-Since, If-None-Match,
 * If-Modified-Since). Pure functions with no I/O, so every rule can be tested on its own; the Range side
 * and the overall decision live in `http-range.ts`.
 */

/** The validators of the selected representation. */
export interface Validators {
  /** The opaque entity tag, unquoted (as `R2Object.etag`). Always a strong validator here. */
  etag: string;
  /** Last modification time in epoch milliseconds. HTTP-dates carry whole seconds only. */
  lastModified: number;
}

/** One parsed entity tag. */
export interface EntityTag {
  weak: boolean;
  /** The opaque-tag without its double quotes. */
  opaque: string;
}

/** Formats an opaque tag as a strong entity tag for the `ETag` header: `"<opaque>"`. */
export function formatEntityTag(opaque: string): string {
  return `"${opaque}"`;
}

/*
 * RFC 9110 §8.8.3:
 *   entity-tag = [ weak ] opaque-tag
 *   weak       = %s"W/"
 *   opaque-tag = DQUOTE *etagc DQUOTE
 *   etagc      = %x21 / %x23-7E / obs-text
 * and the #list rule (§5.6.1): elements separated by commas with optional whitespace; "a recipient MUST
 * accept empty list elements".
 */
const ETAGC = /^[\x21\x23-\x7e\x80-\xff]*$/;

/**
 * Parses a comma-separated list of entity tags (the value of If-Match / If-None-Match other than `*`).
 * Returns null when the value is not a well-formed list, so the caller can apply the RFC's "otherwise"
 * branch instead of guessing what a malformed tag meant.
 */
export function parseEntityTagList(value: string): EntityTag[] | null {
  const tags: EntityTag[] = [];
  let i = 0;
  const n = value.length;
  const skipSeparators = () => {
    while (i < n && (value[i] === " " || value[i] === "\t" || value[i] === ",")) i++;
  };
  skipSeparators();
  while (i < n) {
    let weak = false;
    if (value.startsWith("W/", i)) {
      weak = true;
      i += 2;
    }
    if (value[i] !== '"') return null;
    const close = value.indexOf('"', i + 1);
    if (close === -1) return null;
    const opaque = value.slice(i + 1, close);
    if (!ETAGC.test(opaque)) return null;
    tags.push({ weak, opaque });
    i = close + 1;
    // After a tag only whitespace and then a comma (or the end) may follow.
    while (i < n && (value[i] === " " || value[i] === "\t")) i++;
    if (i < n && value[i] !== ",") return null;
    skipSeparators();
  }
  return tags.length > 0 ? tags : null;
}

/**
 * RFC 9110 §8.8.3.2: "Strong comparison: two entity tags are equivalent if both are not weak and their
 * opaque-tags match character-by-character." The current representation's tag is always strong here.
 */
function strongMatch(tag: EntityTag, current: string): boolean {
  return !tag.weak && tag.opaque === current;
}

/**
 * RFC 9110 §8.8.3.2: "Weak comparison: two entity tags are equivalent if their opaque-tags match
 * character-by-character, regardless of either or both being tagged as 'weak'."
 */
function weakMatch(tag: EntityTag, current: string): boolean {
  return tag.opaque === current;
}

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const LONG_DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const day = `(?:${DAYS.join("|")})`;
const month = `(${MONTHS.join("|")})`;
const time = "(\\d{2}):(\\d{2}):(\\d{2})";
// RFC 9110 §5.6.7: IMF-fixdate is preferred; "Recipients of timestamp values are encouraged to be robust
// in parsing timestamps unless otherwise restricted by the field definition" and the obsolete
// rfc850-date and asctime-date forms MUST be accepted.
const IMF_FIXDATE = new RegExp(`^${day}, (\\d{2}) ${month} (\\d{4}) ${time} GMT$`);
const RFC850_DATE = new RegExp(`^(?:${LONG_DAYS.join("|")}), (\\d{2})-${month}-(\\d{2}) ${time} GMT$`);
const ASCTIME_DATE = new RegExp(`^${day} ${month} ( \\d|\\d{2}) ${time} (\\d{4})$`);

/**
 * Parses an HTTP-date (RFC 9110 §5.6.7) strictly: IMF-fixdate, rfc850-date or asctime-date. Returns epoch
 * milliseconds, or null for anything else, including a list of dates. `Date.parse` is deliberately not
 * used: it accepts many strings that are not HTTP-dates, and the conditionals must ignore those.
 */
export function parseHttpDate(value: string, now = Date.now()): number | null {
  let y: number, mo: string, d: number, h: number, mi: number, s: number;
  let m: RegExpExecArray | null;
  if ((m = IMF_FIXDATE.exec(value))) {
    [d, mo, y, h, mi, s] = [Number(m[1]), m[2], Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])];
  } else if ((m = RFC850_DATE.exec(value))) {
    [d, mo, h, mi, s] = [Number(m[1]), m[2], Number(m[4]), Number(m[5]), Number(m[6])];
    // RFC 9110 §5.6.7: "Recipients of a timestamp value in rfc850-date format, which uses a two-digit
    // year, MUST interpret a timestamp that appears to be more than 50 years in the future as
    // representing the most recent year in the past that had the same last two digits."
    const thisYear = new Date(now).getUTCFullYear();
    y = Math.floor(thisYear / 100) * 100 + Number(m[3]);
    if (y > thisYear + 50) y -= 100;
  } else if ((m = ASCTIME_DATE.exec(value))) {
    [mo, d, h, mi, s, y] = [m[1], Number(m[2].trim()), Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])];
  } else {
    return null;
  }
  const monthIndex = MONTHS.indexOf(mo);
  // hour 00-23, minute 00-59, second 00-60 (the grammar allows a leap second).
  if (h > 23 || mi > 59 || s > 60 || d < 1) return null;
  const ms = Date.UTC(y, monthIndex, d, h, mi, s);
  const check = new Date(Date.UTC(y, monthIndex, d));
  // Reject calendar dates that Date.UTC would silently roll over (e.g. 31 Feb).
  if (check.getUTCMonth() !== monthIndex || check.getUTCDate() !== d) return null;
  return ms;
}

/** Formats epoch milliseconds as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), e.g. for Last-Modified. */
export function formatHttpDate(ms: number): string {
  // ECMAScript specifies toUTCString() as exactly the IMF-fixdate layout.
  return new Date(ms).toUTCString();
}

/** Whole seconds: HTTP-dates have one-second resolution, so comparisons must truncate the stored time. */
const seconds = (ms: number) => Math.floor(ms / 1000);

/**
 * If-Match, RFC 9110 §13.1.1. "An origin server MUST use the strong comparison function when comparing
 * entity tags for If-Match":
 *   1. If the field value is "*", the condition is true if the origin server has a current
 *      representation for the target resource.
 *   2. If the field value is a list of entity tags, the condition is true if any of the listed tags
 *      match the entity tag of the selected representation.
 *   3. Otherwise, the condition is false.
 */
export function ifMatchHolds(value: string, v: Validators): boolean {
  if (value.trim() === "*") return true; // the representation exists, or we would have answered 404
  const tags = parseEntityTagList(value);
  return tags?.some((t) => strongMatch(t, v.etag)) ?? false;
}

/**
 * If-None-Match, RFC 9110 §13.1.2. "A recipient MUST use the weak comparison function when comparing
 * entity tags for If-None-Match":
 *   1. If the field value is "*", the condition is false if the origin server has a current
 *      representation for the target resource.
 *   2. If the field value is a list of entity tags, the condition is false if one of the listed tags
 *      matches the entity tag of the selected representation.
 *   3. Otherwise, the condition is true.
 */
export function ifNoneMatchHolds(value: string, v: Validators): boolean {
  if (value.trim() === "*") return false;
  const tags = parseEntityTagList(value);
  return !tags?.some((t) => weakMatch(t, v.etag));
}

/**
 * If-Modified-Since, RFC 9110 §13.1.3: "1. If the selected representation's last modification date is
 * earlier or equal to the date provided in the field value, the condition is false. 2. Otherwise, the
 * condition is true." Returns null when the field must be ignored: "A recipient MUST ignore the
 * If-Modified-Since header field if the received field value is not a valid HTTP-date, the field value
 * has more than one member, or if the request method is neither GET nor HEAD."
 */
export function ifModifiedSinceHolds(value: string, v: Validators): boolean | null {
  const date = parseHttpDate(value);
  if (date === null) return null;
  return !(seconds(v.lastModified) <= seconds(date));
}

/**
 * If-Unmodified-Since, RFC 9110 §13.1.4: "1. If the selected representation's last modification date is
 * earlier than or equal to the date provided in the field value, the condition is true. 2. Otherwise,
 * the condition is false." Returns null when the field must be ignored: "A recipient MUST ignore the
 * If-Unmodified-Since header field if the received field value is not a valid HTTP-date (including when
 * the field value appears to be a list of dates)."
 */
export function ifUnmodifiedSinceHolds(value: string, v: Validators): boolean | null {
  const date = parseHttpDate(value);
  if (date === null) return null;
  return seconds(v.lastModified) <= seconds(date);
}

/** What the preconditions decide: go on to serve the representation, or answer 304 / 412 now. */
export type PreconditionOutcome = "proceed" | 304 | 412;

/**
 * Evaluates steps 1–4 of RFC 9110 §13.2.2 ("Precedence of Preconditions") for a read (GET or HEAD) at
 * the origin server. Step 5 (If-Range) belongs to the Range decision in `http-range.ts`.
 *
 *   1. When recipient is the origin server and If-Match is present, evaluate the If-Match precondition:
 *      if true, continue to step 3; if false, respond 412 (Precondition Failed) […]
 *   2. When recipient is the origin server, If-Match is not present, and If-Unmodified-Since is present,
 *      evaluate the If-Unmodified-Since precondition: if true, continue to step 3; if false, respond 412
 *      (Precondition Failed) […]
 *   3. When If-None-Match is present, evaluate the If-None-Match precondition: if true, continue to
 *      step 5; if false for GET/HEAD, respond 304 (Not Modified); if false for other methods, respond
 *      412 (Precondition Failed)
 *   4. When the method is GET or HEAD, If-None-Match is not present, and If-Modified-Since is present,
 *      evaluate the If-Modified-Since precondition: if true, continue to step 5; if false, respond 304
 *      (Not Modified)
 */
export function evaluatePreconditions(method: string, headers: Headers, v: Validators): PreconditionOutcome {
  const ifMatch = headers.get("If-Match");
  if (ifMatch !== null) {
    if (!ifMatchHolds(ifMatch, v)) return 412;
  } else {
    // §13.1.4: "A recipient MUST ignore If-Unmodified-Since if the request contains an If-Match header
    // field" (handled by this else branch).
    const ius = headers.get("If-Unmodified-Since");
    if (ius !== null && ifUnmodifiedSinceHolds(ius, v) === false) return 412;
  }

  const readMethod = method === "GET" || method === "HEAD";
  const ifNoneMatch = headers.get("If-None-Match");
  if (ifNoneMatch !== null) {
    if (!ifNoneMatchHolds(ifNoneMatch, v)) return readMethod ? 304 : 412;
  } else if (readMethod) {
    // §13.1.3: "A recipient MUST ignore If-Modified-Since if the request contains an If-None-Match
    // header field" (handled by this else branch) and for methods other than GET and HEAD.
    const ims = headers.get("If-Modified-Since");
    if (ims !== null && ifModifiedSinceHolds(ims, v) === false) return 304;
  }
  return "proceed";
}
