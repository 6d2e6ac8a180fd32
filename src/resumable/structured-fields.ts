/**
 * Structured Field Values for HTTP (RFC 9651, which obsoletes RFC 8941): the parsing the resumable-upload
 * draft's fields need. `Upload-Complete` is an Item whose value is a Boolean (`?0`, `?1`); `Upload-Offset`,
 * `Upload-Length` and `Upload-Draft-Interop-Version` are Items whose value is an Integer; `Upload-Limit` and
 * `Repr-Digest` are Dictionaries. Parsing follows RFC 9651 §4.2 and fails (returns null) on anything the
 * grammar does not allow; the callers then ignore the field, as the draft requires ("Other values MUST cause
 * the entire header field to be ignored").
 *
 * Only parsing and the serialisation of a Dictionary of Integers are here: that is all the server sends.
 */

export type BareItem =
  | { type: "integer"; value: number }
  | { type: "decimal"; value: number }
  | { type: "string"; value: string }
  | { type: "token"; value: string }
  | { type: "bytes"; value: Uint8Array }
  | { type: "boolean"; value: boolean }
  | { type: "date"; value: number }
  | { type: "displaystring"; value: string };

export type Parameters = Map<string, BareItem>;

export interface Item {
  value: BareItem;
  params: Parameters;
}

export interface InnerList {
  items: Item[];
  params: Parameters;
}

export type Dictionary = Map<string, Item | InnerList>;

class Malformed extends Error {}

/** A cursor over a field value (RFC 9651 §4.2: the input is ASCII; anything else fails). */
class Input {
  pos = 0;
  constructor(readonly text: string) {}
  get done(): boolean {
    return this.pos >= this.text.length;
  }
  peek(): string {
    return this.text[this.pos] ?? "";
  }
  next(): string {
    const ch = this.peek();
    this.pos++;
    return ch;
  }
  skipSP(): void {
    while (this.peek() === " ") this.pos++;
  }
  /** OWS: spaces and horizontal tabs. */
  skipOWS(): void {
    while (this.peek() === " " || this.peek() === "\t") this.pos++;
  }
}

const DIGIT = /^[0-9]$/;
const ALPHA = /^[A-Za-z]$/;
const LCALPHA = /^[a-z]$/;
const KEY_CHAR = /^[a-z0-9_\-.*]$/;
/** RFC 9110 tchar, plus ":" and "/" which a Token may contain (RFC 9651 §3.3.4). */
const TOKEN_CHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z:/]$/;
const BASE64_CHAR = /^[A-Za-z0-9+/=]$/;

/** RFC 9651 §4.2.3.1, Integer or Decimal. */
function parseNumber(input: Input): BareItem {
  let sign = 1;
  if (input.peek() === "-") {
    input.next();
    sign = -1;
  }
  if (!DIGIT.test(input.peek())) throw new Malformed();
  let digits = "";
  let decimal = false;
  while (!input.done) {
    const ch = input.peek();
    if (DIGIT.test(ch)) digits += input.next();
    else if (ch === "." && !decimal) {
      if (digits.length > 12) throw new Malformed();
      decimal = true;
      digits += input.next();
    } else break;
    if (!decimal && digits.length > 15) throw new Malformed();
    if (decimal && digits.length > 16) throw new Malformed();
  }
  if (!decimal) return { type: "integer", value: sign * Number(digits) };
  if (digits.endsWith(".")) throw new Malformed();
  if (digits.length - digits.indexOf(".") - 1 > 3) throw new Malformed();
  return { type: "decimal", value: sign * Number(digits) };
}

/** RFC 9651 §4.2.5, String. */
function parseString(input: Input): BareItem {
  input.next(); // the opening DQUOTE
  let value = "";
  while (!input.done) {
    const ch = input.next();
    if (ch === "\\") {
      const escaped = input.next();
      if (escaped !== '"' && escaped !== "\\") throw new Malformed();
      value += escaped;
    } else if (ch === '"') return { type: "string", value };
    else {
      const code = ch.charCodeAt(0);
      if (code < 0x20 || code > 0x7e) throw new Malformed();
      value += ch;
    }
  }
  throw new Malformed();
}

/** RFC 9651 §4.2.6, Token. */
function parseToken(input: Input): BareItem {
  let value = input.next();
  while (TOKEN_CHAR.test(input.peek())) value += input.next();
  return { type: "token", value };
}

/** RFC 9651 §4.2.7, Byte Sequence. */
function parseBytes(input: Input): BareItem {
  input.next(); // ":"
  let b64 = "";
  while (input.peek() !== ":") {
    if (input.done || !BASE64_CHAR.test(input.peek())) throw new Malformed();
    b64 += input.next();
  }
  input.next();
  // Padding is optional on parse ("SHOULD NOT fail"); atob wants it.
  const padded = b64.replace(/=+$/, "");
  if (/=/.test(padded) || padded.length % 4 === 1) throw new Malformed();
  try {
    const binary = atob(padded + "=".repeat((4 - (padded.length % 4)) % 4));
    return { type: "bytes", value: Uint8Array.from(binary, (c) => c.charCodeAt(0)) };
  } catch {
    throw new Malformed();
  }
}

/** RFC 9651 §4.2.8, Boolean. */
function parseBoolean(input: Input): BareItem {
  input.next(); // "?"
  const ch = input.next();
  if (ch === "1") return { type: "boolean", value: true };
  if (ch === "0") return { type: "boolean", value: false };
  throw new Malformed();
}

/** RFC 9651 §4.2.9, Date. */
function parseDate(input: Input): BareItem {
  input.next(); // "@"
  const n = parseNumber(input);
  if (n.type !== "integer") throw new Malformed();
  return { type: "date", value: n.value };
}

/** RFC 9651 §4.2.10, Display String. */
function parseDisplayString(input: Input): BareItem {
  input.next(); // "%"
  if (input.next() !== '"') throw new Malformed();
  const bytes: number[] = [];
  while (!input.done) {
    const ch = input.next();
    const code = ch.charCodeAt(0);
    if (code < 0x20 || code > 0x7e) throw new Malformed();
    if (ch === "%") {
      const hex = input.next() + input.next();
      if (!/^[0-9a-f]{2}$/.test(hex)) throw new Malformed();
      bytes.push(Number.parseInt(hex, 16));
    } else if (ch === '"') {
      try {
        return {
          type: "displaystring",
          value: new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(new Uint8Array(bytes)),
        };
      } catch {
        throw new Malformed();
      }
    } else bytes.push(code);
  }
  throw new Malformed();
}

/** RFC 9651 §4.2.3.1, Bare Item. */
function parseBareItem(input: Input): BareItem {
  const ch = input.peek();
  if (ch === "-" || DIGIT.test(ch)) return parseNumber(input);
  if (ch === '"') return parseString(input);
  if (ch === "*" || ALPHA.test(ch)) return parseToken(input);
  if (ch === ":") return parseBytes(input);
  if (ch === "?") return parseBoolean(input);
  if (ch === "@") return parseDate(input);
  if (ch === "%") return parseDisplayString(input);
  throw new Malformed();
}

/** RFC 9651 §4.2.3.3, Key. */
function parseKey(input: Input): string {
  const first = input.peek();
  if (!LCALPHA.test(first) && first !== "*") throw new Malformed();
  let key = "";
  while (KEY_CHAR.test(input.peek())) key += input.next();
  return key;
}

/** RFC 9651 §4.2.3.2, Parameters. */
function parseParameters(input: Input): Parameters {
  const params: Parameters = new Map();
  while (input.peek() === ";") {
    input.next();
    input.skipSP();
    const key = parseKey(input);
    let value: BareItem = { type: "boolean", value: true };
    if (input.peek() === "=") {
      input.next();
      value = parseBareItem(input);
    }
    params.set(key, value);
  }
  return params;
}

/** RFC 9651 §4.2.3, Item. */
function parseItemAt(input: Input): Item {
  const value = parseBareItem(input);
  return { value, params: parseParameters(input) };
}

/** RFC 9651 §4.2.1.2, Inner List. */
function parseInnerList(input: Input): InnerList {
  input.next(); // "("
  const items: Item[] = [];
  while (!input.done) {
    input.skipSP();
    if (input.peek() === ")") {
      input.next();
      return { items, params: parseParameters(input) };
    }
    items.push(parseItemAt(input));
    if (input.peek() !== " " && input.peek() !== ")") throw new Malformed();
  }
  throw new Malformed();
}

/** Runs a top-level parse (RFC 9651 §4.2): leading and trailing spaces are dropped, nothing may remain. */
function topLevel<T>(field: string | undefined, parse: (input: Input) => T): T | null {
  if (field === undefined) return null;
  // Field values are ASCII; anything else fails the parse.
  if (!/^[\x00-\x7f]*$/.test(field)) return null;
  const input = new Input(field);
  try {
    input.skipSP();
    const out = parse(input);
    input.skipSP();
    return input.done ? out : null;
  } catch (err) {
    if (err instanceof Malformed) return null;
    throw err;
  }
}

/** An Item field, or null when absent or malformed. */
export function parseItem(field: string | undefined): Item | null {
  return topLevel(field, parseItemAt);
}

/** A Dictionary field (RFC 9651 §4.2.2), or null when absent or malformed. Duplicate keys: the last wins. */
export function parseDictionary(field: string | undefined): Dictionary | null {
  return topLevel(field, (input) => {
    const dict: Dictionary = new Map();
    while (!input.done) {
      const key = parseKey(input);
      let member: Item | InnerList;
      if (input.peek() === "=") {
        input.next();
        member = input.peek() === "(" ? parseInnerList(input) : parseItemAt(input);
      } else {
        member = { value: { type: "boolean", value: true }, params: parseParameters(input) };
      }
      dict.set(key, member);
      input.skipOWS();
      if (input.done) return dict;
      if (input.next() !== ",") throw new Malformed();
      input.skipOWS();
      if (input.done) throw new Malformed(); // a trailing comma
    }
    return dict;
  });
}

/** An Item field whose value is a Boolean (parameters ignored); null when absent, malformed or another type. */
export function parseBooleanItem(field: string | undefined): boolean | null {
  const item = parseItem(field);
  return item?.value.type === "boolean" ? item.value.value : null;
}

/** An Item field whose value is an Integer (parameters ignored); null when absent, malformed or another type. */
export function parseIntegerItem(field: string | undefined): number | null {
  const item = parseItem(field);
  return item?.value.type === "integer" ? item.value.value : null;
}

/**
 * Serialises a Dictionary whose members are Integers (RFC 9651 §4.1.2), e.g. `max-size=1000, max-age=60`.
 * Keys must be valid keys and values integers of at most 15 digits.
 */
export function serializeIntegerDictionary(members: [string, number][]): string {
  return members
    .map(([key, value]) => {
      if (!/^[a-z*][a-z0-9_\-.*]*$/.test(key)) throw new Error(`not a structured-field key: ${key}`);
      if (!Number.isSafeInteger(value) || Math.abs(value) > 999_999_999_999_999) {
        throw new Error(`not a structured-field integer: ${value}`);
      }
      return `${key}=${value}`;
    })
    .join(", ");
}
