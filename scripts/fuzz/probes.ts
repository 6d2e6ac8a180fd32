// Pinned probes: one exact request (or race) per known edge of issue 17, each with the answer it should
// get. The random lanes find new problems; these pin the ones already known, so a fix shows as a pass.
import { classify, errorCodeOf, isJsonType, RUNTIME_SIGNATURES } from "./classify.ts";
import { JSON_TYPE, json, parseJson, type Secrets, type Spec } from "./lane.ts";
import { isReloadAnswer } from "./reload.ts";
import { type BadTokenKind, badToken } from "./tokens.ts";
import { type Origin, openExchange, type WireResponse } from "./wire.ts";

export interface ProbeResult {
  id: string;
  /** The item of issue 17 it belongs to. */
  item: string;
  expected: string;
  observed: string;
  pass: boolean;
}

export interface ProbeContext {
  origin: Origin;
  secrets: Secrets;
  userId: string;
  token: string;
  timeoutMs: number;
  /** Sends through the runner: recorded in the table and judged like every request. */
  send(spec: Spec): Promise<WireResponse>;
  /** Records a request the probe drove by hand (a body written in stages). */
  record(spec: Spec, res: WireResponse, startedMs: number): void;
  nextRequestId(): string;
  /** The status the app logged for a request id, when the server's output is available. */
  appLogged(requestId: string): Promise<number | null>;
}

const ITEM = {
  methods: "non-JSON 5xx at the edge: unknown methods (501 / JSON 405 with Allow)",
  chunked: "non-JSON 5xx at the edge: malformed chunked bodies (500 Network connection lost)",
  race: "a part PUT that loses the race with complete/abort answers 400 incomplete_body",
  link: "signed link `expires` with leading zeros is accepted",
  jwt: "JWT edge cases: no exp; padded signature; user ids . and ..; sub=.readyz",
  resend: "found by the fuzzer: a refused re-send of a recorded part made complete fail with 502 storage_error",
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One line about a response: status, who answered, code or body. */
export function describe(res: WireResponse, method = "GET", target = "/"): string {
  if (res.status === 0) return `no response (${res.error})`;
  const c = classify(res, { method, target });
  const type = res.headers["content-type"] ?? "no Content-Type";
  const code = errorCodeOf(res);
  const what = code ?? JSON.stringify(new TextDecoder().decode(res.body.subarray(0, 80)));
  const layer = c.layer === "app" ? "app" : `runtime ${c.signature}`;
  const allow = res.headers.allow ? ` Allow: ${res.headers.allow}` : "";
  return `${res.status} ${type} (${layer}) ${what}${allow}`;
}

function result(id: string, item: string, expected: string, observed: string, pass: boolean): ProbeResult {
  return { id, item, expected, observed, pass };
}

const isAppJson = (res: WireResponse) =>
  res.headers["x-request-id"] !== undefined && isJsonType(res.headers["content-type"]) && errorCodeOf(res) !== null;

async function jwtProbes(ctx: ProbeContext): Promise<ProbeResult[]> {
  const kinds: [string, BadTokenKind][] = [
    ["jwt:no-exp", "no-exp"],
    ["jwt:padded-signature", "padded-signature"],
    ["jwt:sub-dot", "sub-dot"],
    ["jwt:sub-dotdot", "sub-dotdot"],
    ["jwt:sub-readyz", "sub-readyz"],
    ["jwt:alg-none", "alg-none"],
    ["jwt:expired", "expired"],
    ["jwt:wrong-secret", "wrong-secret"],
  ];
  const out: ProbeResult[] = [];
  for (const [id, kind] of kinds) {
    const token = await badToken(kind, ctx.secrets.authSecret, ctx.secrets.adminToken, ctx.userId);
    const res = await ctx.send({
      method: "GET",
      target: "/v1/usage",
      headers: [["Authorization", `Bearer ${token}`]],
      intent: `probe ${id}`,
      auth: `bad token: ${kind}`,
    });
    const pass = res.status === 401 && errorCodeOf(res) === "unauthorized" && !!res.headers["www-authenticate"];
    out.push(
      result(id, ITEM.jwt, "401 unauthorized (JSON, WWW-Authenticate)", `GET /v1/usage → ${describe(res)}`, pass),
    );
  }
  return out;
}

/** A small file of the probe user's: native upload of `size` bytes, one part, completed. */
async function makeFile(ctx: ProbeContext, size: number): Promise<string | null> {
  const auth: [string, string] = ["Authorization", `Bearer ${ctx.token}`];
  const created = await ctx.send({
    method: "POST",
    target: "/v1/uploads",
    headers: [auth, JSON_TYPE],
    body: json({ filename: "probe.bin", size }),
    intent: "probe: create upload",
  });
  const id = parseJson(created)?.uploadId;
  if (typeof id !== "string") return null;
  await ctx.send({
    method: "PUT",
    target: `/v1/uploads/${id}/parts/1`,
    headers: [auth],
    body: { kind: "fixed", data: new Uint8Array(size).fill(7) },
    intent: "probe: part 1",
  });
  const done = await ctx.send({
    method: "POST",
    target: `/v1/uploads/${id}/complete`,
    headers: [auth],
    intent: "probe: complete",
  });
  const file = parseJson(done)?.file as { id?: string } | undefined;
  return typeof file?.id === "string" ? file.id : null;
}

async function linkProbes(ctx: ProbeContext): Promise<ProbeResult[]> {
  const fileId = await makeFile(ctx, 3);
  const auth: [string, string] = ["Authorization", `Bearer ${ctx.token}`];
  const made = fileId
    ? await ctx.send({
        method: "POST",
        target: `/v1/files/${fileId}/links`,
        headers: [auth, JSON_TYPE],
        body: json({ expiresIn: 3600 }),
        intent: "probe: create link",
      })
    : null;
  const url = made ? parseJson(made)?.url : undefined;
  if (typeof url !== "string") {
    const why = made ? describe(made) : "no file";
    return [result("link:expires-leading-zero", ITEM.link, "403 link_invalid", `could not make a link: ${why}`, false)];
  }
  const u = new URL(url);
  const asIssued = await ctx.send({ method: "GET", target: u.pathname + u.search, headers: [], intent: "probe: link" });
  const expires = u.searchParams.get("expires") ?? "";
  const variants: [string, string][] = [
    ["link:expires-leading-zero", `0${expires}`],
    ["link:expires-leading-zeros", `000${expires}`],
  ];
  const out: ProbeResult[] = [
    result(
      "link:as-issued",
      ITEM.link,
      "200 (the link works before it is changed)",
      `GET link → ${describe(asIssued)}`,
      asIssued.status === 200,
    ),
  ];
  for (const [id, value] of variants) {
    const changed = new URL(url);
    changed.searchParams.set("expires", value);
    const res = await ctx.send({
      method: "GET",
      target: changed.pathname + changed.search,
      headers: [],
      intent: `probe ${id}`,
    });
    out.push(
      result(
        id,
        ITEM.link,
        "403 link_invalid (only the canonical decimal form of `expires` verifies)",
        `GET link with expires=${value} → ${describe(res)}`,
        res.status === 403 && errorCodeOf(res) === "link_invalid",
      ),
    );
  }
  return out;
}

async function methodProbes(ctx: ProbeContext): Promise<ProbeResult[]> {
  const user: [string, string] = ["Authorization", `Bearer ${ctx.token}`];
  const admin: [string, string] = ["Authorization", `Bearer ${ctx.secrets.adminToken}`];
  const id = crypto.randomUUID();
  const appCases: [string, string, [string, string][]][] = [
    ["PROPFIND", "/v1/usage", [user]],
    ["PROPFIND", "/v1/uploads", [user]],
    ["TRACE", `/v1/uploads/${id}`, [user]],
    ["PURGE", `/v1/uploads/${id}/parts/1`, [user]],
    ["PROPFIND", `/v1/uploads/${id}/complete`, [user]],
    ["PROPFIND", "/v1/files", [user]],
    ["QUERY", `/v1/files/${id}/content`, [user]],
    ["PATCH", `/v1/files/${id}/links`, [user]],
    ["PROPFIND", `/v1/links/${id}`, []],
    ["PROPFIND", "/v1/audit", [user]],
    ["PROPFIND", "/v1/tus", [user, ["Tus-Resumable", "1.0.0"]]],
    ["PROPFIND", "/healthz", []],
    ["PROPFIND", "/v1/admin/settings", [admin]],
    ["DELETE", "/v1/admin/stats", [admin]],
    ["PROPFIND", "/v1/admin/users/alice", [admin]],
  ];
  const out: ProbeResult[] = [];
  for (const [method, target, headers] of appCases) {
    const res = await ctx.send({ method, target, headers, intent: `probe: ${method} ${target}` });
    const pass = res.status === 405 && isAppJson(res) && !!res.headers.allow;
    out.push(
      result(
        `method:${method} ${target.replace(id, ":id")}`,
        ITEM.methods,
        "405 method_not_allowed from the app (JSON, with Allow)",
        `${method} ${target.replace(id, ":id")} → ${describe(res, method)}`,
        pass,
      ),
    );
  }
  // Method tokens workerd itself does not know, and CONNECT: the Worker never runs (documented).
  const runtimeCases: [string, string][] = [
    ["FOO", "/v1/usage"],
    ["get", "/v1/usage"],
    ["CONNECT", "/v1/usage"],
  ];
  for (const [method, target] of runtimeCases) {
    const res = await ctx.send({
      method,
      target,
      headers: [user],
      wire: method === "CONNECT" ? "connect" : "unknown-method",
      intent: `probe: ${method} ${target}`,
    });
    const c = classify(res, { method, target });
    const known = RUNTIME_SIGNATURES.some((s) => s.id === c.signature);
    const pass = (c.layer === "runtime" && known) || (res.status === 405 && isAppJson(res));
    out.push(
      result(
        `method:${method} (runtime)`,
        ITEM.methods,
        "answered by the local runtime before the Worker (documented), or a JSON 405 if the app sees it",
        `${method} ${target} → ${describe(res, method)}`,
        pass,
      ),
    );
  }
  return out;
}

/**
 * A request whose body breaks after the Worker has started reading it: the head and the first bytes go
 * out, a pause lets the request reach the app, then `body` writes the rest and the client half-closes.
 * The client's answer comes from whichever layer notices first; the app's own log line says what the app
 * made of it, and that must not be a 5xx.
 */
async function brokenBody(
  ctx: ProbeContext,
  id: string,
  req: { method: string; target: string; headers: [string, string][]; wire: "malformed-chunked" | "truncated-body" },
  how: string,
  body: (write: (text: string) => Promise<void>) => Promise<void>,
): Promise<ProbeResult> {
  let requestId = "";
  let spec: Spec | null = null;
  let res: WireResponse | null = null;
  // A dev-server reload in the middle answers nothing about the app: ask again (at most three times).
  for (let attempt = 1; attempt <= 3 && (res === null || isReloadAnswer(res)); attempt++) {
    requestId = ctx.nextRequestId();
    spec = {
      ...req,
      headers: [["Authorization", `Bearer ${ctx.token}`], ...req.headers, ["X-Request-Id", requestId]],
      intent: `probe: ${id} (${how}, after a pause)`,
    };
    const started = performance.now();
    const exchange = openExchange(ctx.origin, spec, ctx.timeoutMs);
    await body((text) => exchange.write(new TextEncoder().encode(text)));
    exchange.end();
    res = await exchange.response;
    ctx.record(spec, res, started);
    if (isReloadAnswer(res)) await sleep(2000);
  }
  if (!res || !spec) throw new Error("unreachable");
  const logged = await ctx.appLogged(requestId);
  const c = classify(res, spec);
  const pass =
    (c.layer === "runtime" && c.signature === "proxy-network-connection-lost" && (logged ?? 0) < 500) ||
    (c.layer === "app" && res.status === 400 && isAppJson(res));
  const seen = logged === null ? "the app logged nothing for it" : `the app logged ${logged}`;
  return result(
    id,
    ITEM.chunked,
    "the app answers a broken body with a JSON 4xx (under wrangler dev the client sees the dev proxy's 500 instead)",
    `${req.method} ${req.target.replace(/[0-9a-f-]{36}/, ":id")} ${how} → ${describe(res, req.method)}; ${seen}`,
    pass,
  );
}

async function chunkedProbes(ctx: ProbeContext): Promise<ProbeResult[]> {
  const auth: [string, string] = ["Authorization", `Bearer ${ctx.token}`];
  const body = new TextEncoder().encode(JSON.stringify({ filename: "c.txt", size: 5 }));
  const out: ProbeResult[] = [];
  const valid = await ctx.send({
    method: "POST",
    target: "/v1/uploads",
    headers: [auth, JSON_TYPE],
    body: { kind: "chunked", chunks: [body.subarray(0, 7), body.subarray(7)] },
    intent: "probe: chunked JSON",
  });
  out.push(
    result(
      "chunked:valid-json",
      ITEM.chunked,
      "201 (a well-formed chunked JSON body reaches the app)",
      `POST /v1/uploads chunked → ${describe(valid)}`,
      valid.status === 201,
    ),
  );
  const big = await ctx.send({
    method: "POST",
    target: "/v1/uploads",
    headers: [auth, JSON_TYPE],
    body: { kind: "chunked", chunks: [new TextEncoder().encode(`{"filename":"${"a".repeat(70_000)}","size":1}`)] },
    intent: "probe: chunked JSON over 64 KiB",
  });
  out.push(
    result(
      "chunked:over-cap",
      ITEM.chunked,
      "413 payload_too_large (a chunked body is counted as it is read)",
      `POST /v1/uploads chunked 70 KB → ${describe(big)}`,
      big.status === 413 && errorCodeOf(big) === "payload_too_large",
    ),
  );
  const create = { method: "POST", target: "/v1/uploads" };
  for (const [id, flaw] of [
    ["chunked:bad-size", "bad-size"],
    ["chunked:short-chunk", "short-chunk"],
    ["chunked:no-last-chunk", "no-last-chunk"],
  ] as const) {
    const req = { ...create, headers: [JSON_TYPE, ["Transfer-Encoding", "chunked"]] as [string, string][] };
    out.push(
      await brokenBody(ctx, id, { ...req, wire: "malformed-chunked" }, flaw, async (write) => {
        await write(`7\r\n{"filen\r\n`);
        await sleep(500);
        if (flaw === "bad-size") await write("zz\r\name\r\n");
        else if (flaw === "short-chunk") await write('40\r\name":"c.txt","size":5}');
        else await write('16\r\name":"c.txt","size":5}\r\n');
      }),
    );
  }
  const short = async (write: (text: string) => Promise<void>) => {
    await write('{"filename":"c.txt",');
    await sleep(500);
  };
  const headers: [string, string][] = [JSON_TYPE, ["Content-Length", "100"]];
  out.push(
    await brokenBody(ctx, "truncated:create", { ...create, headers, wire: "truncated-body" }, "20 of 100 bytes", short),
  );
  const upload = parseJson(
    await ctx.send({
      method: "POST",
      target: "/v1/uploads",
      headers: [auth, JSON_TYPE],
      body: json({ filename: "t.bin", size: 100 }),
      intent: "probe: create upload",
    }),
  )?.uploadId;
  if (typeof upload === "string") {
    const part = {
      method: "PUT",
      target: `/v1/uploads/${upload}/parts/1`,
      headers: [["Content-Length", "100"]] as [string, string][],
    };
    out.push(
      await brokenBody(ctx, "truncated:part-put", { ...part, wire: "truncated-body" }, "20 of 100 bytes", short),
    );
  }
  const tus = await ctx.send({
    method: "POST",
    target: "/v1/tus",
    headers: [auth, ["Tus-Resumable", "1.0.0"], ["Upload-Length", "100"]],
    intent: "probe: tus create",
  });
  if (tus.headers.location) {
    const patch = {
      method: "PATCH",
      target: tus.headers.location,
      headers: [
        ["Tus-Resumable", "1.0.0"],
        ["Content-Type", "application/offset+octet-stream"],
        ["Upload-Offset", "0"],
        ["Content-Length", "100"],
      ] as [string, string][],
    };
    out.push(
      await brokenBody(ctx, "truncated:tus-patch", { ...patch, wire: "truncated-body" }, "20 of 100 bytes", short),
    );
  }
  const bodiless: [string, string, string, [string, string][]][] = [
    ["chunked:part-put", "PUT", `/v1/uploads/${crypto.randomUUID()}/parts/1`, [auth]],
    [
      "chunked:tus-patch",
      "PATCH",
      `/v1/tus/${crypto.randomUUID()}`,
      [auth, ["Tus-Resumable", "1.0.0"], ["Content-Type", "application/offset+octet-stream"], ["Upload-Offset", "0"]],
    ],
  ];
  for (const [id, method, target, headers] of bodiless) {
    const res = await ctx.send({
      method,
      target,
      headers,
      body: { kind: "chunked", chunks: [new Uint8Array(10)] },
      intent: `probe: ${id}`,
    });
    out.push(
      result(
        id,
        ITEM.chunked,
        "411 length_required or 404 for an unknown upload (JSON from the app)",
        `${method} chunked → ${describe(res, method)}`,
        [411, 404].includes(res.status) && isAppJson(res),
      ),
    );
  }
  return out;
}

/**
 * A part PUT whose body is still arriving when the upload is aborted or completed: the first bytes go
 * out, then (once the Worker has authorized the part) `interrupt` runs, then the rest of the body.
 */
async function racePart(
  ctx: ProbeContext,
  id: string,
  interrupt: () => Promise<WireResponse>,
  what: string,
): Promise<ProbeResult> {
  const auth: [string, string] = ["Authorization", `Bearer ${ctx.token}`];
  const size = 1000;
  const requestId = ctx.nextRequestId();
  const spec: Spec = {
    method: "PUT",
    target: `/v1/uploads/${id}/parts/1`,
    headers: [auth, ["Content-Type", "application/octet-stream"], ["X-Request-Id", requestId]],
    body: { kind: "fixed", data: new Uint8Array(size).fill(9) },
    intent: `probe: part PUT racing ${what}`,
  };
  const started = performance.now();
  const exchange = openExchange(
    ctx.origin,
    { ...spec, headers: [...spec.headers, ["Content-Length", String(size)]], body: undefined },
    ctx.timeoutMs,
  );
  await exchange.write(new Uint8Array(10).fill(9));
  await sleep(1000);
  const other = await interrupt();
  await exchange.write(new Uint8Array(size - 10).fill(9));
  const res = await exchange.response;
  ctx.record(spec, res, started);
  // Either the interruption wins (then the part is refused as 409 upload_not_active) or it is refused
  // itself while the part is being written (then the part is taken: 200). Never a 400 incomplete_body,
  // never both accepted.
  const won = other.status >= 200 && other.status < 300;
  const pass = won
    ? res.status === 409 && errorCodeOf(res) === "upload_not_active"
    : other.status >= 400 && other.status < 500 && res.status === 200;
  return result(
    `part-race:${what}`,
    ITEM.race,
    `409 upload_not_active when the ${what} wins; 200 when the ${what} is refused (a 4xx) while the part is written`,
    `PUT part 1 (${what} answered ${other.status} ${errorCodeOf(other) ?? ""} mid-body) → ${describe(res, "PUT")}`,
    pass,
  );
}

async function raceProbes(ctx: ProbeContext): Promise<ProbeResult[]> {
  const auth: [string, string] = ["Authorization", `Bearer ${ctx.token}`];
  const create = async () => {
    const res = await ctx.send({
      method: "POST",
      target: "/v1/uploads",
      headers: [auth, JSON_TYPE],
      body: json({ filename: "race.bin", size: 1000 }),
      intent: "probe: create upload",
    });
    const id = parseJson(res)?.uploadId;
    return typeof id === "string" ? id : null;
  };
  const out: ProbeResult[] = [];
  const abort = async () => {
    const a = await create();
    if (!a) return null;
    const interrupt = () =>
      ctx.send({ method: "DELETE", target: `/v1/uploads/${a}`, headers: [auth], intent: "probe: abort mid-part" });
    return racePart(ctx, a, interrupt, "abort");
  };
  const complete = async () => {
    const b = await create();
    if (!b) return null;
    const first = await ctx.send({
      method: "PUT",
      target: `/v1/uploads/${b}/parts/1`,
      headers: [auth],
      body: { kind: "fixed", data: new Uint8Array(1000).fill(9) },
      intent: "probe: part 1",
    });
    if (first.status !== 200) return null;
    const interrupt = () =>
      ctx.send({
        method: "POST",
        target: `/v1/uploads/${b}/complete`,
        headers: [auth],
        intent: "probe: complete mid-part",
      });
    return racePart(ctx, b, interrupt, "complete");
  };
  for (const race of [abort, complete]) {
    // A reload during the race leaves nothing to judge: race again on a fresh upload.
    let r: ProbeResult | null = null;
    for (let attempt = 1; attempt <= 3 && (r === null || r.observed.includes("proxy-reload")); attempt++)
      r = await race();
    out.push(r ?? result("part-race:setup", ITEM.race, "an upload to race against", "setup failed", false));
  }
  return out;
}

/**
 * A part recorded, then sent again with a Content-Digest that does not match: the re-send is refused, and
 * the upload must still complete (the old part) or say the part is missing, never fail in R2 (which
 * replaced the part under the session's recorded ETag).
 */
async function rejectedResendProbe(ctx: ProbeContext): Promise<ProbeResult> {
  const auth: [string, string] = ["Authorization", `Bearer ${ctx.token}`];
  const created = await ctx.send({
    method: "POST",
    target: "/v1/uploads",
    headers: [auth, JSON_TYPE],
    body: json({ filename: "resend.bin", size: 100 }),
    intent: "probe: create upload",
  });
  const id = parseJson(created)?.uploadId;
  const expected = "200, or 409 parts_missing (never 502: the refused re-send must not break the recorded part)";
  if (typeof id !== "string") return result("part:refused-resend", ITEM.resend, expected, "setup failed", false);
  const part = { kind: "fixed" as const, data: new Uint8Array(100).fill(5) };
  const target = `/v1/uploads/${id}/parts/1`;
  await ctx.send({ method: "PUT", target, headers: [auth], body: part, intent: "probe: part 1" });
  const wrong = `sha-256=:${Buffer.alloc(32).toString("base64")}:`;
  const resent = await ctx.send({
    method: "PUT",
    target,
    headers: [auth, ["Content-Digest", wrong]],
    body: part,
    intent: "probe: part 1 again, wrong digest",
  });
  const done = await ctx.send({
    method: "POST",
    target: `/v1/uploads/${id}/complete`,
    headers: [auth],
    intent: "probe: complete",
  });
  const pass = done.status === 200 || (done.status === 409 && errorCodeOf(done) === "parts_missing");
  return result(
    "part:refused-resend",
    ITEM.resend,
    expected,
    `re-send → ${resent.status} ${errorCodeOf(resent) ?? ""}; complete → ${describe(done, "POST")}`,
    pass,
  );
}

export async function runProbes(ctx: ProbeContext): Promise<ProbeResult[]> {
  return [
    await rejectedResendProbe(ctx),
    ...(await jwtProbes(ctx)),
    ...(await linkProbes(ctx)),
    ...(await methodProbes(ctx)),
    ...(await chunkedProbes(ctx)),
    ...(await raceProbes(ctx)),
  ];
}
