// A raw HTTP/1.1 client over node:net. `fetch` cannot send what a fuzzer needs (any method token, a
// Content-Length that lies, a broken chunked body, no Host), so requests are written byte for byte and
// responses parsed here. One connection per request (`Connection: close`): no pooled socket can be
// left in a state a previous request broke.
import { connect } from "node:net";
import { brotliDecompressSync, gunzipSync, inflateSync } from "node:zlib";

/** How a body is framed on the wire. */
export type WireBody =
  /** `data` with `Content-Length` (by default its length; a string overrides it, `null` omits the header). */
  | { kind: "fixed"; data: Uint8Array; contentLength?: string | null }
  /** `Transfer-Encoding: chunked`, optionally broken; a broken body is followed by a half-close. */
  | { kind: "chunked"; chunks: Uint8Array[]; flaw?: ChunkFlaw }
  /** `Content-Length: declared` but only `data` (shorter) is sent, then the client half-closes. */
  | { kind: "truncated"; data: Uint8Array; declared: number };

export type ChunkFlaw = "bad-size" | "short-chunk" | "no-last-chunk";

export interface WireRequest {
  method: string;
  /** The request-target exactly as sent (path and query, or anything else). */
  target: string;
  /** Sent in order, as given. `Host` and `Connection: close` are added unless present. */
  headers: [string, string][];
  body?: WireBody;
  /** `HTTP/1.1` unless set. */
  version?: string;
  /** Send no `Host` header at all. */
  omitHost?: boolean;
  /** Half-close after the body (a body shorter than its declared length would otherwise hang). */
  halfClose?: boolean;
}

export interface WireResponse {
  /** 0 when no complete response arrived; `error` says why. */
  status: number;
  /** Lower-case names; repeated fields joined with ", ". */
  headers: Record<string, string>;
  body: Uint8Array;
  error?: string;
  /** Set when the connection closed before the body its framing announced was complete. */
  incomplete?: string;
  /** Milliseconds from connecting to the end of the response. */
  ms: number;
}

export interface Origin {
  host: string;
  port: number;
}

export function originOf(url: string): Origin {
  const u = new URL(url);
  if (u.protocol !== "http:") throw new Error(`only http:// URLs are supported: ${url}`);
  return { host: u.hostname, port: Number(u.port || 80) };
}

const CRLF = "\r\n";
const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);

function hasHeader(headers: [string, string][], name: string): boolean {
  return headers.some(([n]) => n.toLowerCase() === name);
}

/** The request head (request line and header section) for `req`, with the framing its body needs. */
export function requestHead(req: WireRequest, origin: Origin): Uint8Array {
  const headers = [...req.headers];
  if (!req.omitHost && !hasHeader(headers, "host")) headers.unshift(["Host", `${origin.host}:${origin.port}`]);
  if (!hasHeader(headers, "connection")) headers.push(["Connection", "close"]);
  const body = req.body;
  if (!hasHeader(headers, "content-length") && !hasHeader(headers, "transfer-encoding")) {
    if (body?.kind === "fixed") {
      const declared =
        body.contentLength === undefined
          ? body.data.length > 0 || ["POST", "PUT", "PATCH"].includes(req.method)
            ? String(body.data.length)
            : null
          : body.contentLength;
      if (declared !== null) headers.push(["Content-Length", declared]);
    } else if (body?.kind === "chunked") {
      headers.push(["Transfer-Encoding", "chunked"]);
    } else if (body?.kind === "truncated") {
      headers.push(["Content-Length", String(body.declared)]);
    } else if (["POST", "PUT", "PATCH"].includes(req.method)) {
      headers.push(["Content-Length", "0"]);
    }
  }
  const lines = [`${req.method} ${req.target} ${req.version ?? "HTTP/1.1"}`, ...headers.map(([n, v]) => `${n}: ${v}`)];
  return encoder.encode(lines.join(CRLF) + CRLF + CRLF);
}

/** The body bytes of `body` as framed on the wire, and whether the client half-closes after them. */
export function bodyBytes(body: WireBody | undefined): { bytes: Uint8Array[]; halfClose: boolean } {
  if (!body) return { bytes: [], halfClose: false };
  if (body.kind === "fixed") return { bytes: [body.data], halfClose: false };
  if (body.kind === "truncated") return { bytes: [body.data], halfClose: true };
  const out: Uint8Array[] = [];
  body.chunks.forEach((chunk, i) => {
    if (i === 0 && body.flaw === "bad-size") out.push(encoder.encode(`zz${CRLF}`));
    else if (i === 0 && body.flaw === "short-chunk")
      out.push(encoder.encode(`${(chunk.length + 7).toString(16)}${CRLF}`));
    else out.push(encoder.encode(`${chunk.length.toString(16)}${CRLF}`));
    out.push(chunk, encoder.encode(CRLF));
  });
  if (body.flaw !== "no-last-chunk") out.push(encoder.encode(`0${CRLF}${CRLF}`));
  return { bytes: out, halfClose: body.flaw !== undefined };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

function indexOfCrlfCrlf(buf: Uint8Array, from: number): number {
  for (let i = Math.max(0, from); i + 3 < buf.length; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i;
  }
  return -1;
}

/** Decodes a complete chunked body, or returns null while it is still incomplete. */
function dechunk(buf: Uint8Array): Uint8Array | null {
  const parts: Uint8Array[] = [];
  let i = 0;
  for (;;) {
    let eol = -1;
    for (let j = i; j + 1 < buf.length; j++) {
      if (buf[j] === 13 && buf[j + 1] === 10) {
        eol = j;
        break;
      }
    }
    if (eol < 0) return null;
    const size = Number.parseInt(new TextDecoder().decode(buf.subarray(i, eol)).split(";")[0].trim(), 16);
    if (!Number.isFinite(size)) return concat(parts); // unparseable: take what there is
    if (size === 0) return concat(parts);
    const start = eol + 2;
    if (buf.length < start + size + 2) return null;
    parts.push(buf.subarray(start, start + size));
    i = start + size + 2;
  }
}

interface Parsed {
  status: number;
  headers: Record<string, string>;
  body: Uint8Array;
  incomplete?: string;
}

/** Parses what arrived so far; `done` once the response is complete by its own framing. */
function parseResponse(buf: Uint8Array, method: string, closed: boolean): { done: boolean; parsed?: Parsed } {
  let start = 0;
  for (;;) {
    const end = indexOfCrlfCrlf(buf, start);
    if (end < 0) return { done: false };
    const head = new TextDecoder("latin1").decode(buf.subarray(start, end)).split(CRLF);
    const status = Number(/^HTTP\/\d(?:\.\d)? (\d{3})/.exec(head[0] ?? "")?.[1] ?? 0);
    if (status >= 100 && status < 200) {
      start = end + 4; // an interim response (100 Continue): the final one follows
      continue;
    }
    const headers: Record<string, string> = {};
    for (const line of head.slice(1)) {
      const colon = line.indexOf(":");
      if (colon <= 0) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    }
    const rest = buf.subarray(end + 4);
    if (method === "HEAD" || status === 204 || status === 304)
      return { done: true, parsed: { status, headers, body: EMPTY } };
    if (headers["transfer-encoding"]?.toLowerCase().includes("chunked")) {
      const body = dechunk(rest);
      if (body) return { done: true, parsed: { status, headers, body } };
      const incomplete = "the chunked body had no last chunk when the connection closed";
      return closed ? { done: true, parsed: { status, headers, body: rest, incomplete } } : { done: false };
    }
    const length = headers["content-length"];
    if (length !== undefined && /^\d+$/.test(length)) {
      const n = Number(length);
      if (rest.length >= n) return { done: true, parsed: { status, headers, body: rest.subarray(0, n) } };
      const incomplete = `${rest.length} of ${n} bytes when the connection closed`;
      return closed ? { done: true, parsed: { status, headers, body: rest, incomplete } } : { done: false };
    }
    return closed ? { done: true, parsed: { status, headers, body: rest } } : { done: false };
  }
}

/**
 * The total size of a response framed by Content-Length, once its head has arrived; null while the
 * head is incomplete or when the framing is chunked or by close (those are parsed as they come).
 */
function expectedLength(buf: Uint8Array, method: string): number | null {
  const end = indexOfCrlfCrlf(buf, 0);
  if (end < 0) return null;
  const head = new TextDecoder("latin1").decode(buf.subarray(0, end));
  if (/^HTTP\/\d(?:\.\d)? 1\d\d/.test(head) || method === "HEAD") return null;
  if (/\r\ntransfer-encoding:[^\r]*chunked/i.test(head)) return null;
  const length = /\r\ncontent-length:\s*(\d+)\s*(?:\r\n|$)/i.exec(head);
  return length ? end + 4 + Number(length[1]) : null;
}

/** The body with its Content-Encoding undone (a client that sends Accept-Encoding gets compressed answers). */
function decoded(res: Parsed): Uint8Array {
  const coding = res.headers["content-encoding"]?.toLowerCase().trim();
  if (!coding || coding === "identity" || res.body.length === 0) return res.body;
  try {
    if (coding === "gzip" || coding === "x-gzip") return new Uint8Array(gunzipSync(res.body));
    if (coding === "deflate") return new Uint8Array(inflateSync(res.body));
    if (coding === "br") return new Uint8Array(brotliDecompressSync(res.body));
  } catch {
    // Not what it says it is: keep the bytes as they came, the checks will see them.
  }
  return res.body;
}

/** A request in flight whose body the caller writes itself (for the race probes). */
export interface OpenExchange {
  write(data: Uint8Array): Promise<void>;
  /** Half-closes the connection (no more body). */
  end(): void;
  response: Promise<WireResponse>;
}

/** Connects, sends the head of `req` and leaves the body to the caller. */
export function openExchange(origin: Origin, req: WireRequest, timeoutMs: number): OpenExchange {
  const started = performance.now();
  const socket = connect({ host: origin.host, port: origin.port });
  socket.setNoDelay(true);
  const received: Uint8Array[] = [];
  let settled = false;
  let resolveResponse: (r: WireResponse) => void = () => {};
  const response = new Promise<WireResponse>((resolve) => {
    resolveResponse = resolve;
  });
  let total = 0;
  // Once the head is in, how many bytes make the whole response (Content-Length framing), so a large
  // download is not re-parsed on every packet.
  let needed: number | null = null;
  const worthParsing = (closed: boolean) => {
    if (closed || needed === null) return true;
    return total >= needed;
  };
  const finish = (closed: boolean, error?: string) => {
    if (settled) return;
    if (!error && !worthParsing(closed)) return;
    const buf = concat(received);
    received.length = 0;
    received.push(buf);
    if (needed === null) needed = expectedLength(buf, req.method.toUpperCase());
    const { done, parsed } = parseResponse(buf, req.method.toUpperCase(), closed);
    if (!done && !error && !closed) return;
    settled = true;
    clearTimeout(timer);
    socket.destroy();
    const ms = Math.round(performance.now() - started);
    if (parsed) {
      // The head came but the body did not finish: say whether the peer closed or the client gave up.
      const incomplete =
        parsed.incomplete && error
          ? parsed.incomplete.replace(/when the connection closed$/, `when the client gave up (${error})`)
          : parsed.incomplete;
      resolveResponse({ ...parsed, incomplete, body: decoded(parsed), ms });
    } else
      resolveResponse({
        status: 0,
        headers: {},
        body: EMPTY,
        error: error ?? "connection closed before a response",
        ms,
      });
  };
  const timer = setTimeout(() => finish(true, `no complete response within ${timeoutMs} ms`), timeoutMs);
  socket.on("data", (d: Buffer) => {
    received.push(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    total += d.byteLength;
    finish(false);
  });
  socket.on("end", () => finish(true));
  socket.on("close", () => finish(true));
  // A server may answer and close before the body is sent (a 413 on the declared length): the write
  // fails with EPIPE/ECONNRESET while the response is already there. Only a missing response is an error.
  socket.on("error", (err) => {
    if (received.length > 0) finish(true);
    else finish(true, `${(err as NodeJS.ErrnoException).code ?? "error"}: ${err.message}`);
  });
  socket.write(requestHead(req, origin));
  return {
    write: (data) =>
      new Promise((resolve) => {
        if (settled || socket.destroyed) return resolve();
        socket.write(data, () => resolve());
      }),
    end: () => {
      if (!settled && !socket.destroyed) socket.end();
    },
    response,
  };
}

/** Sends `req` with its body and returns the response (or why there was none). Never throws. */
export async function send(origin: Origin, req: WireRequest, timeoutMs = 30_000): Promise<WireResponse> {
  const exchange = openExchange(origin, req, timeoutMs);
  const { bytes, halfClose } = bodyBytes(req.body);
  for (const part of bytes) await exchange.write(part);
  if (halfClose || req.halfClose) exchange.end();
  return exchange.response;
}
