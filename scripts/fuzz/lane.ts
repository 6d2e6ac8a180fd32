// One lane of the fuzzer: a sequential stream of requests for its own two users, drawn from its own
// seeded PRNG, with the state it learned from the answers (uploads, files, links, cursors). Lanes share
// no users, so a lane's sequence depends only on the seed and on the answers to its own requests.
import { createHash } from "node:crypto";
import type { WireFlaw } from "./classify.ts";
import type { Rng } from "./rng.ts";
import { BAD_TOKEN_KINDS, badToken } from "./tokens.ts";
import type { WireBody, WireResponse } from "./wire.ts";

/** One request as the generator means it. */
export interface Spec {
  method: string;
  /** Path and query as sent. */
  target: string;
  headers: [string, string][];
  body?: WireBody;
  /** Set when the request is deliberately broken below HTTP semantics (the latest way)… */
  wire?: WireFlaw;
  /** … and every way it was broken, when more than one. */
  flaws?: WireFlaw[];
  /** What the generator meant (for the report). */
  intent: string;
  /** How `Authorization` was chosen (the report shows this instead of the token). */
  auth?: string;
  omitHost?: boolean;
  version?: string;
}

/** What a lane needs from the runner. */
export interface Exchanger {
  exchange(lane: Lane, spec: Spec): Promise<WireResponse>;
  /** False once the lane's budget or the run's time is spent. */
  mayContinue(lane: Lane): boolean;
  /** A finding that is not about one response's shape (e.g. downloaded bytes that differ from the upload). */
  note(lane: Lane, kind: string, detail: string): void;
}

export class StopLane extends Error {}

export interface UserState {
  id: string;
  token: string;
}

export interface UploadRef {
  id: string;
  owner: number;
  protocol: "native" | "tus";
  /** null while a tus length is deferred. */
  size: number | null;
  partSize: number;
  partCount: number;
  /** tus: the offset the server last reported. */
  offset: number;
  /** Seed of the upload's bytes (regenerated on demand, so 5 MiB parts are not kept in memory). */
  contentSeed: number;
  done: Set<number>;
  gone: boolean;
  /** A mutated request changed it: its bytes are no longer known, so downloads are not compared. */
  tainted: boolean;
}

export interface FileRef {
  id: string;
  owner: number;
  size: number;
  etag?: string;
  lastModified?: string;
  gone: boolean;
  /** Seed of its bytes, when every byte came from an unmutated request (downloads are then compared). */
  contentSeed?: number;
  /** The tus upload it came from (terminating that upload deletes the file). */
  tusUpload?: string;
  /** A DELETE was sent for it (its answer may have been lost). */
  deleteTried?: boolean;
}

export interface Secrets {
  authSecret: string;
  adminToken: string;
}

export const MiB = 1024 * 1024;

export const json = (value: unknown): WireBody => ({
  kind: "fixed",
  data: new TextEncoder().encode(typeof value === "string" ? value : JSON.stringify(value)),
});

export const JSON_TYPE: [string, string] = ["Content-Type", "application/json"];

export function parseJson(res: WireResponse): Record<string, unknown> | null {
  try {
    const v = JSON.parse(new TextDecoder().decode(res.body)) as unknown;
    return v && typeof v === "object" ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

export function digest(algorithm: "sha1" | "sha256" | "sha512" | "md5", data: Uint8Array, encoding: "hex" | "base64") {
  return createHash(algorithm).update(data).digest(encoding);
}

const METHODS_KNOWN = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND", "TRACE", "PURGE"];
const METHODS_KNOWN_RARE = ["MKCOL", "SEARCH", "QUERY", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "ACL"];
/** Method tokens workerd's HTTP server does not know: it answers 501 itself. */
export const METHODS_UNKNOWN = ["FOO", "BREW", "get", "Patch", "LINK", "M-SEARCH", "X-CUSTOM"];

const BAD_IDS = [
  "",
  ".",
  "..",
  "%2e%2e",
  "%00",
  "%ZZ",
  "x;y=1",
  "%2F",
  "a%20b",
  "null",
  "-1",
  "00000000-0000-0000-0000-000000000000",
  "' OR 1=1 --",
  "caf\u00e9",
  "\u{1F600}",
  "A".repeat(129),
  "a".repeat(2000),
];

export class Lane {
  readonly users: UserState[];
  readonly uploads: UploadRef[] = [];
  readonly files: FileRef[] = [];
  readonly links: string[] = [];
  readonly cursors: Record<string, string> = {};
  readonly settingsVersions: number[] = [];
  settingsEtag: string | null = null;
  settings: Record<string, unknown> | null = null;
  /** Bytes of real ≥ 5 MiB parts this lane may still send. */
  bigBytesLeft: number;
  sent = 0;
  /** Whether the last request sent was mutated, and how. */
  lastMutated = false;
  lastMutations: string[] = [];
  private seq = 0;

  readonly index: number;
  readonly seed: number;
  readonly rng: Rng;
  readonly secrets: Secrets;
  readonly runner: Exchanger;

  constructor(
    index: number,
    seed: number,
    rng: Rng,
    secrets: Secrets,
    runner: Exchanger,
    users: UserState[],
    bigBytes: number,
  ) {
    this.index = index;
    this.seed = seed;
    this.rng = rng;
    this.secrets = secrets;
    this.runner = runner;
    this.users = users;
    this.bigBytesLeft = bigBytes;
  }

  nextRequestId(): string {
    this.seq++;
    return `fz${this.seed}-L${this.index}-${this.seq}`;
  }

  /** `Authorization` for user `i` (0 or 1) of this lane. */
  auth(i = 0): [string, string] {
    return ["Authorization", `Bearer ${this.users[i].token}`];
  }

  admin(): [string, string] {
    return ["Authorization", `Bearer ${this.secrets.adminToken}`];
  }

  liveUploads(protocol?: "native" | "tus"): UploadRef[] {
    return this.uploads.filter((u) => !u.gone && (protocol === undefined || u.protocol === protocol));
  }

  liveFiles(): FileRef[] {
    return this.files.filter((f) => !f.gone);
  }

  /** Whether the last request went out as the user the generator chose (its auth was not mutated). */
  sentAsIntended(): boolean {
    return !this.lastMutations.includes("auth");
  }

  /** Sends `spec`, first mutating it with probability `mutateP`. Throws {@link StopLane} when the budget is spent. */
  async send(spec: Spec, mutateP = 0.2): Promise<WireResponse> {
    if (!this.runner.mayContinue(this)) throw new StopLane();
    this.lastMutated = this.rng.chance(mutateP);
    this.lastMutations = [];
    const final = this.lastMutated ? await this.mutate(spec) : spec;
    this.sent++;
    return this.runner.exchange(this, final);
  }

  note(kind: string, detail: string): void {
    this.runner.note(this, kind, detail);
  }

  /** A random id of something that is not the caller's, or not anything. */
  strangeId(): string {
    const r = this.rng;
    const foreign = [...this.uploads, ...this.files].filter((x) => x.owner === 1);
    if (foreign.length > 0 && r.chance(0.3)) return r.pick(foreign).id;
    if (r.chance(0.3)) return crypto.randomUUID();
    return r.pick(BAD_IDS);
  }

  /** One or two random changes to a request: method, auth, ids, query, headers, body, framing, wire. */
  async mutate(spec: Spec): Promise<Spec> {
    const r = this.rng;
    let s: Spec = { ...spec, headers: [...spec.headers], intent: `${spec.intent} +` };
    const rounds = r.chance(0.25) ? 2 : 1;
    for (let i = 0; i < rounds; i++) {
      const op = r.weighted([
        ["method", 3],
        ["auth", 4],
        ["id", 3],
        ["query", 2],
        ["header", 5],
        ["body", 3],
        ["framing", 2],
        ["wire", 1],
      ] as const);
      this.lastMutations.push(op);
      const before = s.flaws ?? (s.wire ? [s.wire] : []);
      s = await this.mutateOnce(s, op);
      if (s.wire) s = { ...s, flaws: [...new Set([...before, s.wire])] };
    }
    return s;
  }

  private async mutateOnce(s: Spec, op: string): Promise<Spec> {
    const r = this.rng;
    switch (op) {
      case "method": {
        if (r.chance(0.12)) {
          const m = r.pick(METHODS_UNKNOWN);
          return { ...s, method: m, wire: "unknown-method", intent: `${s.intent} method ${m}` };
        }
        if (r.chance(0.02)) return { ...s, method: "CONNECT", wire: "connect", intent: `${s.intent} method CONNECT` };
        const m = r.chance(0.8) ? r.pick(METHODS_KNOWN) : r.pick(METHODS_KNOWN_RARE);
        return { ...s, method: m, intent: `${s.intent} method ${m}` };
      }
      case "auth": {
        const headers = s.headers.filter(([n]) => n.toLowerCase() !== "authorization");
        const choice = r.weighted([
          ["none", 2],
          ["bad", 6],
          ["other-user", 3],
          ["scheme", 2],
          ["duplicate", 1],
        ] as const);
        if (choice === "none") return { ...s, headers, auth: "none", intent: `${s.intent} no auth` };
        if (choice === "other-user") {
          return {
            ...s,
            headers: [...headers, this.auth(1)],
            auth: `user ${this.users[1].id}`,
            intent: `${s.intent} as user 1`,
          };
        }
        if (choice === "duplicate") {
          return {
            ...s,
            headers: [...s.headers, this.auth(1)],
            auth: "two Authorization headers",
            intent: `${s.intent} dup auth`,
          };
        }
        if (choice === "scheme") {
          const v = r.pick([
            "Basic dXNlcjpwYXNz",
            "Bearer",
            "Bearer ",
            `bearer   ${this.users[0].token}`,
            `Bearer ${this.users[0].token} trailing`,
            `Token ${this.users[0].token}`,
            `Bearer ${this.users[0].token.slice(0, -3)}`,
          ]);
          return {
            ...s,
            headers: [...headers, ["Authorization", v]],
            auth: `scheme variant`,
            intent: `${s.intent} auth scheme`,
          };
        }
        const kind = r.pick(BAD_TOKEN_KINDS);
        const token = await badToken(kind, this.secrets.authSecret, this.secrets.adminToken, this.users[0].id);
        return {
          ...s,
          headers: [...headers, ["Authorization", `Bearer ${token}`]],
          auth: `bad token: ${kind}`,
          intent: `${s.intent} token ${kind}`,
        };
      }
      case "id": {
        const [path, query] = splitTarget(s.target);
        const segments = path.split("/");
        const candidates = segments.map((seg, i) => ({ seg, i })).filter(({ seg, i }) => i >= 3 && seg !== "");
        if (candidates.length === 0)
          return {
            ...s,
            target: `${path}/${encodeSegment(this.strangeId())}${query}`,
            intent: `${s.intent} extra segment`,
          };
        const { i } = r.pick(candidates);
        const id = /^\d+$/.test(segments[i])
          ? r.pick(["0", "-1", "NaN", "1e3", "99999999", "1.5", "\uff11", "10001", "", "00001"])
          : this.strangeId();
        segments[i] = encodeSegment(id);
        return {
          ...s,
          target: segments.join("/") + query,
          intent: `${s.intent} id ${JSON.stringify(id.slice(0, 40))}`,
        };
      }
      case "query": {
        const param = r.pick([
          "limit=-1",
          "limit=0",
          "limit=1001",
          "limit=1e2",
          "limit=NaN",
          "limit=",
          "limit=99999999999999999999",
          "limit=1.5",
          "limit=1&limit=2",
          "cursor=",
          "cursor=abc",
          `cursor=${"A".repeat(1100)}`,
          "cursor=WyJmaWxlcyIsLTEsIngiXQ",
          "cursor=WyJhdWRpdCIsMCwieCJd",
          `cursor=${r.pick(Object.values(this.cursors).concat(["x"]))}`,
          "prefix=%",
          "prefix=_",
          "prefix=%5C",
          `prefix=${"p".repeat(1100)}`,
          "unknown=1",
          "%E0%A4%A",
          "action=upload.nope",
          "action=",
          "since=yesterday",
          "since=2026-02-30",
          "userId=..",
          "owner=x&owner=y",
        ]);
        const sep = s.target.includes("?") ? "&" : "?";
        return { ...s, target: `${s.target}${sep}${param}`, intent: `${s.intent} query ${param.slice(0, 30)}` };
      }
      case "header": {
        const h = r.pick(HEADER_JUNK);
        const [name, value] = typeof h === "function" ? h(r) : h;
        const headers = s.headers.filter(([n]) => n.toLowerCase() !== name.toLowerCase() || r.chance(0.3));
        return { ...s, headers: [...headers, [name, value]], intent: `${s.intent} ${name}: ${value.slice(0, 30)}` };
      }
      case "body": {
        const headers = r.chance(0.7) ? s.headers : s.headers.filter(([n]) => n.toLowerCase() !== "content-type");
        const b = r.pick(BODY_JUNK);
        const data = typeof b === "function" ? b(r) : new TextEncoder().encode(b);
        if (!headers.some(([n]) => n.toLowerCase() === "content-type") && r.chance(0.5)) headers.push(JSON_TYPE);
        return { ...s, headers, body: { kind: "fixed", data }, intent: `${s.intent} body junk(${data.length})` };
      }
      case "framing": {
        const data = s.body?.kind === "fixed" ? s.body.data : new TextEncoder().encode("{}");
        const choice = r.pick(["chunked", "cl-smaller", "cl-zero", "cl-junk", "no-cl"] as const);
        if (choice === "chunked") {
          const cut = r.int(0, data.length);
          const chunks = [data.subarray(0, cut), data.subarray(cut)].filter((c) => c.length > 0);
          return { ...s, body: { kind: "chunked", chunks }, intent: `${s.intent} chunked` };
        }
        if (choice === "cl-smaller" && data.length > 1) {
          const cl = String(r.int(0, data.length - 1));
          return {
            ...s,
            body: { kind: "fixed", data, contentLength: cl },
            intent: `${s.intent} CL ${cl} < ${data.length}`,
          };
        }
        if (choice === "cl-junk") {
          // A Content-Length that is not a number: the runtime's parser refuses it.
          return {
            ...s,
            body: { kind: "fixed", data, contentLength: r.pick(["-1", "abc", "1 2", "0x10"]) },
            wire: "malformed-request",
            intent: `${s.intent} CL junk`,
          };
        }
        if (choice === "no-cl")
          return {
            ...s,
            body: { kind: "fixed", data: new Uint8Array(0), contentLength: null },
            intent: `${s.intent} no CL`,
          };
        return {
          ...s,
          body: { kind: "fixed", data: new Uint8Array(0), contentLength: "0" },
          intent: `${s.intent} CL 0`,
        };
      }
      default:
        return this.wireFlaw(s);
    }
  }

  /** The same request, broken below HTTP semantics in one of the ways the runtime answers itself. */
  wireFlaw(s: Spec): Spec {
    const r = this.rng;
    const data = s.body?.kind === "fixed" && s.body.data.length > 0 ? s.body.data : new TextEncoder().encode('{"a":1}');
    const kind = r.weighted([
      ["bad-chunk-size", 2],
      ["short-chunk", 1],
      ["no-last-chunk", 1],
      ["truncated", 3],
      ["space-in-target", 1],
      ["bad-header-name", 1],
      ["two-content-lengths", 1],
      ["no-host", 1],
      ["http10", 1],
      ["asterisk", 1],
    ] as const);
    switch (kind) {
      case "bad-chunk-size":
        return {
          ...s,
          body: { kind: "chunked", chunks: [data], flaw: "bad-size" },
          wire: "malformed-chunked",
          intent: `${s.intent} ~bad chunk size`,
        };
      case "short-chunk":
        return {
          ...s,
          body: { kind: "chunked", chunks: [data], flaw: "short-chunk" },
          wire: "malformed-chunked",
          intent: `${s.intent} ~short chunk`,
        };
      case "no-last-chunk":
        return {
          ...s,
          body: { kind: "chunked", chunks: [data], flaw: "no-last-chunk" },
          wire: "malformed-chunked",
          intent: `${s.intent} ~no last chunk`,
        };
      case "truncated":
        return {
          ...s,
          body: {
            kind: "truncated",
            data: data.subarray(0, Math.max(0, data.length - 1)),
            declared: data.length + r.int(1, 1000),
          },
          wire: "truncated-body",
          intent: `${s.intent} ~truncated body`,
        };
      case "space-in-target":
        return {
          ...s,
          target: s.target.replace(/\/([^/]*)$/, "/a b$1"),
          wire: "malformed-request",
          intent: `${s.intent} ~space in target`,
        };
      case "bad-header-name":
        return {
          ...s,
          headers: [...s.headers, ["Bad Header", "x"]],
          wire: "malformed-request",
          intent: `${s.intent} ~bad header name`,
        };
      case "two-content-lengths":
        return {
          ...s,
          headers: [...s.headers, ["Content-Length", String(data.length)], ["Content-Length", String(data.length + 1)]],
          body: { kind: "fixed", data, contentLength: null },
          wire: "malformed-request",
          intent: `${s.intent} ~two Content-Lengths`,
        };
      case "no-host":
        return { ...s, omitHost: true, wire: "malformed-request", intent: `${s.intent} ~no Host` };
      case "http10":
        return {
          ...s,
          omitHost: true,
          version: "HTTP/1.0",
          wire: "malformed-request",
          intent: `${s.intent} ~HTTP/1.0 no Host`,
        };
      default:
        return { ...s, target: "*", wire: "malformed-request", intent: `${s.intent} ~target *` };
    }
  }
}

export function splitTarget(target: string): [string, string] {
  const q = target.indexOf("?");
  return q < 0 ? [target, ""] : [target.slice(0, q), target.slice(q)];
}

/** Percent-encodes what a request-target cannot carry raw, keeping deliberate `%` escapes as they are. */
export function encodeSegment(id: string): string {
  return id.replace(/[^A-Za-z0-9._~!$&'()*+,;=:@%-]/gu, (ch) => encodeURIComponent(ch));
}

type HeaderGen = [string, string] | ((r: Rng) => [string, string]);

const HEADER_JUNK: HeaderGen[] = [
  ["Content-Type", "text/plain"],
  ["Content-Type", "application/json; charset=latin1"],
  ["Content-Type", "application/x-www-form-urlencoded"],
  ["Content-Type", "multipart/form-data; boundary=x"],
  ["Content-Type", "application/offset+octet-stream"],
  ["Content-Type", ""],
  ["Content-Type", "application/vnd.api+json"],
  ["Range", "bytes=0-0"],
  ["Range", "bytes=-0"],
  ["Range", "bytes=5-1"],
  ["Range", "bytes=0-1,5-9"],
  ["Range", "bytes=99999999999999999999-"],
  ["Range", "items=0-1"],
  ["Range", "bytes=-99999999999999999999"],
  ["Range", "bytes= 1 - 2 "],
  ["If-None-Match", "*"],
  ["If-None-Match", 'W/"x"'],
  ["If-Match", '"nope"'],
  ["If-Match", "*"],
  ["If-Match", "garbage"],
  ["If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"],
  ["If-Modified-Since", "Sunday, 06-Nov-94 08:49:37 GMT"],
  ["If-Modified-Since", "Sun Nov  6 08:49:37 1994"],
  ["If-Unmodified-Since", "not a date"],
  ["If-Unmodified-Since", "Thu, 01 Jan 1970 00:00:00 GMT"],
  ["If-Range", '"x"'],
  ["If-Range", "Sun, 06 Nov 1994 08:49:37 GMT"],
  ["Tus-Resumable", "0.2.2"],
  ["Tus-Resumable", ""],
  ["Upload-Offset", "-1"],
  ["Upload-Offset", "1e3"],
  ["Upload-Offset", "99999999999999999"],
  ["Upload-Length", "-5"],
  ["Upload-Length", "NaN"],
  ["Upload-Length", "9007199254740993"],
  ["Upload-Defer-Length", "2"],
  ["Upload-Metadata", "filename"],
  ["Upload-Metadata", "filename !!!"],
  ["Upload-Metadata", "a b c"],
  ["Upload-Metadata", "filename ZmlsZQ==,filename ZmlsZQ=="],
  ["Upload-Metadata", "filetype bm90IGEgdHlwZQ=="],
  ["Upload-Checksum", "sha1"],
  ["Upload-Checksum", "crc32 AAAAAA=="],
  ["Upload-Checksum", "sha1 !!!"],
  ["Upload-Checksum", "sha256 AAAA"],
  ["Upload-Concat", "final;/v1/tus/a /v1/tus/b"],
  ["Content-Digest", "sha-256=:AAAA:"],
  ["Content-Digest", "md5=:AAAA:"],
  ["Content-Digest", "garbage"],
  ["X-HTTP-Method-Override", "DELETE"],
  ["X-HTTP-Method-Override", "PATCH"],
  ["X-HTTP-Method-Override", "HEAD"],
  ["X-HTTP-Method-Override", "FOO"],
  ["X-HTTP-Method-Override", ""],
  ["X-Request-Id", "has spaces in it"],
  ["X-Request-Id", "x".repeat(300)],
  ["X-Admin-Actor", "not valid!"],
  ["X-Admin-Actor", "a".repeat(65)],
  ["Origin", "https://evil.example"],
  ["Origin", "null"],
  ["Access-Control-Request-Method", "PUT"],
  ["Expect", "100-continue"],
  ["Accept", "text/html"],
  ["Accept-Encoding", "gzip, br"],
  ["CF-Connecting-IP", "not-an-ip"],
  ["User-Agent", "\u00e9\u00e8"],
  ["Cookie", "a=b"],
  (r) => ["X-Long", "v".repeat(r.int(1000, 12_000))],
  (r) => ["Content-Length", String(r.int(0, 20))],
];

type BodyGen = string | ((r: Rng) => Uint8Array);

const BODY_JUNK: BodyGen[] = [
  "{",
  "[]",
  "null",
  '"x"',
  "0",
  "",
  "{}",
  '{"filename":"a","size":1e309}',
  '{"filename":"a","size":-1}',
  '{"filename":"a","size":1.5}',
  '{"filename":"a","size":"1"}',
  '{"filename":"a","size":9007199254740993}',
  '{"filename":"","size":1}',
  '{"filename":"a","size":1,"extra":true}',
  '{"filename":"a","size":1,"contentType":"nope"}',
  '{"filename":"a","size":1,"sha256":"xyz"}',
  '{"filename":"a","size":1,"metadata":{"":"x"}}',
  '{"filename":"a","size":1,"metadata":{"k":1}}',
  '{"filename":"../../etc/passwd","size":1}',
  '{"filename":"a\\u0000b","size":1}',
  '{"expiresIn":0}',
  '{"expiresIn":604801}',
  '{"expiresIn":"60"}',
  '{"expiresIn":1.5}',
  '{"ttlSeconds":59}',
  '{"ttlSeconds":86401}',
  '{"burst":0}',
  '{"burst":null}',
  '{"quotaBytes":-1}',
  '{"allowedContentTypes":[]}',
  '{"corsOrigins":["https://a.example/"]}',
  '{"__proto__":{"x":1}}',
  '{"constructor":{"prototype":{"x":1}}}',
  "\ufeff{}",
  '{"a":NaN}',
  '{"a":1,}',
  (r) => new TextEncoder().encode(`${"[".repeat(r.int(100, 5000))}${"]".repeat(r.int(0, 5000))}`),
  (r) => new TextEncoder().encode(`{"filename":"${"a".repeat(r.int(60_000, 70_000))}","size":1}`),
  (r) => r.bytes(r.int(1, 300)),
  () => new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]),
];
