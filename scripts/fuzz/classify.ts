// Who answered a request, and what is wrong with the answer.
//
// THE RULE (also in docs/fuzzing.md). The app sets `X-Request-Id` on every response it makes (Hono's
// requestId middleware runs first, and `onError` keeps the header), and no layer of the local runtime
// sets it. So:
//
//   - a response WITH `X-Request-Id` is the app's. Every app response with status ≥ 500, and every app
//     error (status ≥ 400) that is not `application/json` with `{"error":{"code":…}}`, is a failure;
//   - a success WITHOUT it is the app's too (no runtime layer makes a success: they forward or refuse),
//     and so is an answer whose status the app logged for that request id; both fail as a missing
//     `X-Request-Id`, which the README promises on every response;
//   - any other response without it is the local runtime's (workerd's HTTP server, wrangler dev's ProxyWorker,
//     miniflare's entry worker). It is excused only when it matches one of the known signatures below
//     AND the request was deliberately broken at the wire level in the way that signature belongs to
//     (an unknown method token, a broken chunked body, a body shorter than its Content-Length, a
//     malformed request line or header section, CONNECT), or the dev server was reloading at the time.
//     Any other runtime answer, an unknown signature, or a well-formed request left without an answer is
//     a failure;
//   - when the server's output is available, the app's own log line for the request (found by the
//     `X-Request-Id` the fuzzer sent) is read too: an app that logged a 5xx fails the run even when the
//     runtime's answer hid it.
import type { WireResponse } from "./wire.ts";

/** How a request is deliberately broken below HTTP semantics (where the app may never see it). */
export type WireFlaw = "unknown-method" | "connect" | "malformed-chunked" | "truncated-body" | "malformed-request";

export interface RuntimeSignature {
  id: string;
  /** Which layer answers, and why. */
  who: string;
  /** The wire flaws this answer is the runtime's documented reaction to. */
  flaws: WireFlaw[];
  matches(res: WireResponse, req: RequestLine): boolean;
}

/** What the classifier needs to know about the request. */
export interface RequestLine {
  method: string;
  target: string;
  wire?: WireFlaw;
  flaws?: WireFlaw[];
}

/** Every way a request was broken on the wire. */
export function flawsOf(req: RequestLine): WireFlaw[] {
  return req.flaws ?? (req.wire ? [req.wire] : []);
}

const text = (res: WireResponse) => new TextDecoder().decode(res.body.subarray(0, 512));

export const RUNTIME_SIGNATURES: RuntimeSignature[] = [
  {
    id: "workerd-unknown-method",
    who: "workerd's HTTP server (kj-http): the method token is not in its table, so no Worker is called",
    flaws: ["unknown-method"],
    matches: (res) => res.status === 501 && /^ERROR: Unrecognized request method/.test(text(res)),
  },
  {
    id: "workerd-malformed-request",
    who: "workerd's HTTP parser: the request line or header section is malformed (no Worker is called)",
    flaws: ["malformed-request"],
    matches: (res, req) =>
      res.status === 400 &&
      (/^(invalid [\w -]+ parsed|Bad Request|ERROR: )/.test(text(res)) ||
        // An answer to HEAD carries no body to recognise: a bare text/plain 400.
        (req.method.toUpperCase() === "HEAD" && /^text\/plain\b|^$/.test(res.headers["content-type"] ?? ""))),
  },
  {
    id: "proxy-network-connection-lost",
    who:
      "wrangler dev's ProxyWorker (in front of the Worker, dev only): the request body broke while it was " +
      "forwarded, so the forwarding fetch() failed and the dev proxy answered a text 500",
    flaws: ["malformed-chunked", "truncated-body"],
    matches: (res) => res.status === 500 && /^Error: Network connection lost\./.test(text(res)),
  },
  {
    id: "proxy-promise-never-completes",
    who:
      "wrangler dev's ProxyWorker: the request body never ended (a Content-Length the client did not fill, " +
      "then a half-close), so the forwarded request could not finish and the dev proxy answered a text 500",
    flaws: ["malformed-chunked", "truncated-body"],
    matches: (res) => res.status === 500 && /^Error: Promise will never complete\./.test(text(res)),
  },
  {
    id: "proxy-broken-body-head",
    who: "wrangler dev's ProxyWorker: as above, for a HEAD (the answer has no body to recognise: a bare text 500)",
    flaws: ["malformed-chunked", "truncated-body"],
    matches: (res, req) =>
      req.method.toUpperCase() === "HEAD" &&
      res.status === 500 &&
      /^text\/plain;charset=UTF-8$/i.test(res.headers["content-type"] ?? ""),
  },
  {
    id: "entry-unroutable-target",
    who: "miniflare's entry worker: the request-target is not a URL it can forward (e.g. `*`)",
    flaws: ["malformed-request"],
    matches: (res, req) =>
      res.status === 500 && (/^TypeError: Fetch API cannot load/.test(text(res)) || req.target === "*"),
  },
  {
    id: "workerd-no-connect-handler",
    who: "workerd: CONNECT goes to a connect() handler, which the Worker does not export (fetch never runs)",
    flaws: ["connect"],
    matches: (res, req) => req.method.toUpperCase() === "CONNECT" && res.status === 500,
  },
  {
    id: "proxy-reload",
    who: "wrangler dev's ProxyWorker: the Worker was reloaded (a source file changed) during the request",
    flaws: [],
    matches: (res) => res.status === 503 && /^Your worker restarted mid-request/.test(text(res)),
  },
];

/**
 * Not an answer but the lack of one: the app logged its answer for the request id (below 500), and the
 * client still got nothing. Excused for any request; reported with the status the app logged.
 */
export const LOST_ANSWER = {
  id: "proxy-lost-answer",
  who:
    "wrangler dev between the Worker and the socket: the app logged its answer (status below 500) but no " +
    "byte of it reached the client within the time limit",
};

export type Layer = "app" | "runtime" | "none";

export interface Classified {
  layer: Layer;
  /** The runtime signature's id, `unknown` for a runtime answer that matches none. */
  signature?: string;
  /** An app answer recognised without its X-Request-Id (a success, or the app's log line says so). */
  missingRequestId?: boolean;
}

/**
 * Who answered. `appLogged` is the status the app logged for this request id, when known. No runtime layer
 * ever makes a success (they forward or refuse), so an answer below 400 is the app's even without its
 * X-Request-Id; so is one whose status the app logged.
 */
export function classify(res: WireResponse, req: RequestLine, appLogged: number | null = null): Classified {
  if (res.status === 0) return { layer: "none" };
  if (res.headers["x-request-id"] !== undefined) return { layer: "app" };
  const sig = RUNTIME_SIGNATURES.find((s) => s.matches(res, req));
  if (sig) return { layer: "runtime", signature: sig.id };
  if (res.status < 400 || appLogged === res.status) return { layer: "app", missingRequestId: true };
  return { layer: "runtime", signature: "unknown" };
}

export function isJsonType(contentType: string | undefined): boolean {
  return /^application\/([\w.-]+\+)?json\b/i.test(contentType ?? "");
}

/** The `error.code` of a JSON error body, or null when the body is not one. */
export function errorCodeOf(res: WireResponse): string | null {
  try {
    const body = JSON.parse(new TextDecoder().decode(res.body)) as { error?: { code?: unknown } };
    return typeof body?.error?.code === "string" ? body.error.code : null;
  } catch {
    return null;
  }
}

export type FindingKind =
  | "app-5xx"
  | "app-5xx-hidden"
  | "app-non-json-error"
  | "app-405-without-allow"
  | "app-401-without-www-authenticate"
  | "app-without-request-id"
  | "runtime-unexpected"
  | "runtime-unknown"
  | "short-response"
  | "no-response";

export const FINDING_TEXT: Record<FindingKind, string> = {
  "app-5xx": "the app answered 5xx",
  "app-5xx-hidden": "the app logged a 5xx (the runtime's answer hid it)",
  "app-non-json-error": "the app answered an error that is not JSON {error:{code}}",
  "app-405-without-allow": "the app answered 405 without Allow",
  "app-401-without-www-authenticate": "the app answered 401 without WWW-Authenticate",
  "app-without-request-id": "the app answered without X-Request-Id (README: every response carries it)",
  "runtime-unexpected": "the local runtime answered a request that was well-formed on the wire",
  "runtime-unknown": "an answer without X-Request-Id that matches no known runtime signature",
  "no-response": "a request that was well-formed on the wire got no response",
  "short-response": "an answer to a well-formed request ended before its Content-Length (the connection closed)",
};

/**
 * What is wrong with one answer, judged by THE RULE above. `reloading`: the dev server was reloading;
 * `appLogged`: the status the app logged for the request, when known.
 */
export function judge(
  res: WireResponse,
  req: RequestLine,
  reloading: boolean,
  appLogged: number | null = null,
): { classified: Classified; problems: FindingKind[] } {
  const method = req.method.toUpperCase();
  const classified = classify(res, req, appLogged);
  const problems: FindingKind[] = [];
  if (classified.missingRequestId) problems.push("app-without-request-id");
  if (res.incomplete && flawsOf(req).length === 0 && !reloading) problems.push("short-response");
  if (classified.layer !== "app" && appLogged !== null && appLogged >= 500) problems.push("app-5xx-hidden");
  if (classified.layer === "none") {
    // The app answered (its log line says so, and not with a 5xx) but the answer never reached the
    // socket: lost in the dev runtime between the Worker and the client. Anything else is a failure.
    const lostByRuntime = appLogged !== null && appLogged < 500;
    if (flawsOf(req).length === 0 && !reloading && !lostByRuntime) problems.push("no-response");
    if (lostByRuntime) classified.signature = LOST_ANSWER.id;
  } else if (classified.layer === "runtime") {
    const sig = RUNTIME_SIGNATURES.find((s) => s.id === classified.signature);
    if (!sig) problems.push("runtime-unknown");
    else if (!reloading && sig.id !== "proxy-reload" && !flawsOf(req).some((f) => sig.flaws.includes(f)))
      problems.push("runtime-unexpected");
  } else {
    if (res.status >= 500) problems.push("app-5xx");
    if (res.status >= 400) {
      const json = isJsonType(res.headers["content-type"]);
      if (!json || (method !== "HEAD" && errorCodeOf(res) === null)) problems.push("app-non-json-error");
    }
    if (res.status === 405 && !res.headers.allow) problems.push("app-405-without-allow");
    if (res.status === 401 && !res.headers["www-authenticate"]) problems.push("app-401-without-www-authenticate");
  }
  return { classified, problems };
}

/** The route family of a request, for the summary table. */
export function familyOf(method: string, target: string, headers: [string, string][]): string {
  const path = target.split("?")[0];
  if (method.toUpperCase() === "OPTIONS" && headers.some(([n]) => n.toLowerCase() === "access-control-request-method"))
    return "cors-preflight";
  if (path === "/healthz" || path === "/readyz") return "health";
  if (/^\/v1\/usage\/?$/.test(path)) return "usage";
  if (/^\/v1\/uploads\/[^/]*\/parts(\/|$)/.test(path)) return "upload-parts";
  if (/^\/v1\/uploads\/[^/]*\/complete/.test(path)) return "upload-complete";
  if (/^\/v1\/uploads(\/|$)/.test(path)) return "uploads";
  if (/^\/v1\/tus(\/|$)/.test(path)) return "tus";
  if (/^\/v1\/files\/[^/]*\/content/.test(path)) return "file-content";
  if (/^\/v1\/files\/[^/]*\/links/.test(path)) return "link-create";
  if (/^\/v1\/files(\/|$)/.test(path)) return "files";
  if (/^\/v1\/links(\/|$)/.test(path)) return "links";
  if (/^\/v1\/audit(\/|$)/.test(path)) return "audit";
  if (/^\/v1\/admin\/settings(\/|$)/.test(path)) return "admin-settings";
  if (/^\/v1\/admin\/users(\/|$)/.test(path)) return "admin-users";
  if (/^\/v1\/admin\/(stats|audit)(\/|$)/.test(path)) return "admin-stats-audit";
  if (/^\/v1\/admin(\/|$)/.test(path)) return "admin-other";
  return "other";
}
