// The fuzzer's core, used by `npm run fuzz` (scripts/fuzz.ts) and by the CI pass (test/e2e/fuzz.test.ts):
// lanes of seeded random requests bounded by count and time, the pinned probes beside them, then the ledger
// check; every answer is judged afterwards (scripts/fuzz/classify.ts), when reloads and app log lines are known.
import { ACTIONS, warmUp } from "./actions.ts";
import {
  type Classified,
  FINDING_TEXT,
  type FindingKind,
  familyOf,
  flawsOf,
  judge,
  LOST_ANSWER,
  RUNTIME_SIGNATURES,
  type WireFlaw,
} from "./classify.ts";
import { type Exchanger, Lane, type Spec, StopLane } from "./lane.ts";
import { checkLedgers, type LedgerReport, type LedgerUser } from "./ledger.ts";
import { type ProbeResult, runProbes } from "./probes.ts";
import { isReloadAnswer } from "./reload.ts";
import { rngFor } from "./rng.ts";
import { userToken } from "./tokens.ts";
import { type Origin, originOf, send, type WireResponse } from "./wire.ts";

export interface Target {
  /** `http://127.0.0.1:<port>` */
  url: string;
  authSecret: string;
  adminToken: string;
  /** Everything the server printed so far, when known: app log lines and dev-server reloads are read from it. */
  output?: () => string;
  /** The fuzzer is the only client of this server (D1's service-wide totals must equal its users'). */
  exclusive?: boolean;
}

export interface FuzzOptions {
  target: Target;
  /** Requests the lanes send (probes and the ledger check come on top). */
  requests: number;
  seed: number;
  /** Time bound for the lanes, in seconds. */
  seconds: number;
  /** Concurrent lanes (default 4). */
  lanes?: number;
  /** Bytes of real ≥ 5 MiB parts each lane may send (default 24 MiB per 1,000 requests of the lane). */
  bigBytesPerLane?: number;
  probes?: boolean;
  ledger?: boolean;
  requestTimeoutMs?: number;
  /** How long the ledger check waits for D1 to converge (default 30 s). */
  ledgerTimeoutMs?: number;
  progress?: (line: string) => void;
}

/** One request and its answer, as the report shows them. */
export interface Example {
  lane: string;
  requestId: string | null;
  intent: string;
  request: string;
  response: string;
  layer: string;
  appLogged: number | null;
  /** Seconds into the run when the request went out. */
  at: number;
  /** Seconds from the request to the nearest dev-server reload (negative: the reload came first), if any. */
  reloadNear: number | null;
}

export interface Finding {
  kind: FindingKind | "content-mismatch" | "fuzzer-error";
  /** Stable across seeds: kind, route family, status and error code (what an allowlist names). */
  key: string;
  title: string;
  count: number;
  examples: Example[];
}

export interface RuntimeAnswer {
  signature: string;
  who: string;
  count: number;
  examples: Example[];
}

export interface FuzzResult {
  seed: number;
  lanes: number;
  /** Requests the lanes sent. */
  requests: number;
  /** Requests the probes sent. */
  probeRequests: number;
  /** Seconds the lanes ran. */
  seconds: number;
  /** family → status key (`200`, `rt500`, `none`) → count. */
  table: Record<string, Record<string, number>>;
  /** family → response times in ms: median and 95th percentile. */
  latency: Record<string, { p50: number; p95: number }>;
  findings: Finding[];
  /** Runtime answers judged as expected (documented runtime-only class). */
  runtimeOnly: RuntimeAnswer[];
  probes: ProbeResult[];
  ledger: LedgerReport | null;
  /** Dev-server reloads seen during the run (a source file changed); requests around them are excused. */
  reloads: number;
  /** When each reload started, in seconds into the run. */
  reloadTimes: number[];
  /** Whether the app's own log lines were available (the server's output). */
  appLog: boolean;
}

interface Recorded {
  lane: string;
  family: string;
  spec: Spec;
  requestId: string | null;
  res: WireResponse;
  started: number;
  ended: number;
}

const MAX_EXAMPLES = 3;
const PREVIEW = 240;

function printable(bytes: Uint8Array | undefined, max = PREVIEW): string {
  if (!bytes || bytes.length === 0) return "";
  const text = new TextDecoder().decode(bytes.subarray(0, max));
  const shown = JSON.stringify(text);
  return bytes.length > max ? `${shown}… (${bytes.length} bytes)` : shown;
}

/** The request as a reader can reproduce it; tokens are named, not printed. */
export function formatRequest(spec: Spec): string {
  const lines = [
    `${spec.method} ${spec.target.length > 200 ? `${spec.target.slice(0, 200)}…` : spec.target} ` +
      (spec.version ?? "HTTP/1.1"),
  ];
  for (const [name, value] of spec.headers) {
    const shown =
      name.toLowerCase() === "authorization"
        ? `<${spec.auth ?? "bearer token"}>`
        : value.length > 120
          ? `${value.slice(0, 120)}…`
          : value;
    lines.push(`${name}: ${shown}`);
  }
  if (spec.omitHost) lines.push("(no Host header)");
  const body = spec.body;
  if (body?.kind === "fixed") {
    if (body.contentLength !== undefined) lines.push(`(Content-Length: ${body.contentLength ?? "omitted"})`);
    if (body.data.length > 0) lines.push(`body ${printable(body.data)}`);
  } else if (body?.kind === "chunked") {
    lines.push(`(chunked${body.flaw ? `, ${body.flaw}` : ""}) body ${printable(body.chunks[0])}`);
  } else if (body?.kind === "truncated") {
    lines.push(`(Content-Length: ${body.declared}, only ${body.data.length} bytes sent, then half-close)`);
  }
  return lines.join("\n");
}

function formatResponse(res: WireResponse): string {
  if (res.status === 0) return `no response: ${res.error}`;
  const keep = [
    "content-type",
    "content-length",
    "content-encoding",
    "allow",
    "x-request-id",
    "www-authenticate",
    "content-range",
    "location",
    "tus-resumable",
  ];
  const headers = keep.filter((h) => res.headers[h] !== undefined).map((h) => `${h}: ${res.headers[h]}`);
  const cut = res.incomplete ? `(cut short: ${res.incomplete})` : "";
  return [`${res.status}`, ...headers, cut, printable(res.body)].filter(Boolean).join("\n");
}

/** The status the app logged per request id, from its one-line-per-request JSON log. */
export function appLogStatuses(output: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of output.matchAll(/\{"level":"(?:info|error)","requestId":"([\w=-]+)"[^\n]*?"status":(\d{3})/g)) {
    out.set(m[1], Number(m[2]));
  }
  return out;
}

class Runner implements Exchanger {
  readonly origin: Origin;
  readonly records: Recorded[] = [];
  readonly notes: { kind: "content-mismatch" | "fuzzer-error"; lane: string; detail: string }[] = [];
  readonly reloads: { start: number; end: number }[] = [];
  readonly started = performance.now();
  private deadline = Number.POSITIVE_INFINITY;
  private budgets = new Map<number, number>();
  private outputSeen = 0;
  private reloadStart: number | null = null;
  private poller: ReturnType<typeof setInterval> | undefined;

  readonly opts: FuzzOptions;
  readonly timeoutMs: number;

  constructor(opts: FuzzOptions, timeoutMs: number) {
    this.opts = opts;
    this.timeoutMs = timeoutMs;
    this.origin = originOf(opts.target.url);
    const output = opts.target.output;
    if (output) {
      this.outputSeen = output().length;
      this.poller = setInterval(() => this.watchOutput(), 200);
    }
  }

  /** Notes the dev server's reloads (wrangler dev watches the source tree). */
  private watchOutput(): void {
    const output = this.opts.target.output;
    if (!output) return;
    const text = output();
    const fresh = text.slice(this.outputSeen);
    this.outputSeen = text.length;
    const now = performance.now();
    if (/Reloading local server/.test(fresh) && this.reloadStart === null) this.reloadStart = now;
    if (/Local server updated and ready/.test(fresh) && this.reloadStart !== null) {
      this.reloads.push({ start: this.reloadStart, end: now });
      this.reloadStart = null;
    }
  }

  stopWatching(): void {
    this.watchOutput();
    if (this.reloadStart !== null) this.reloads.push({ start: this.reloadStart, end: performance.now() });
    clearInterval(this.poller);
  }

  startLanes(budgets: number[], seconds: number): void {
    for (const [i, b] of budgets.entries()) this.budgets.set(i, b);
    this.deadline = performance.now() + seconds * 1000;
  }

  mayContinue(lane: Lane): boolean {
    return (this.budgets.get(lane.index) ?? 0) > lane.sent && performance.now() < this.deadline;
  }

  note(lane: Lane, kind: string, detail: string): void {
    if (kind === "content-mismatch" || kind === "fuzzer-error")
      this.notes.push({ kind, lane: `L${lane.index}`, detail });
  }

  async exchange(lane: Lane, spec: Spec): Promise<WireResponse> {
    return this.exchangeAs(`L${lane.index}`, () => lane.nextRequestId(), spec);
  }

  async exchangeAs(laneName: string, nextId: () => string, spec: Spec): Promise<WireResponse> {
    let headers = spec.headers;
    let requestId: string | null = null;
    if (!headers.some(([n]) => n.toLowerCase() === "x-request-id")) {
      requestId = nextId();
      headers = [...headers, ["X-Request-Id", requestId]];
    } else {
      requestId = headers.find(([n]) => n.toLowerCase() === "x-request-id")?.[1] ?? null;
    }
    // A declared Content-Length past the bytes sent would leave the server waiting: half-close instead,
    // which makes it a short body (a wire flaw).
    let wire: WireFlaw | undefined = spec.wire;
    let flaws = spec.flaws;
    let halfClose = false;
    const lengths = headers.filter(([n]) => n.toLowerCase() === "content-length").map(([, v]) => v);
    const sent =
      spec.body?.kind === "fixed"
        ? spec.body.data.length
        : spec.body?.kind === "chunked"
          ? Number.POSITIVE_INFINITY
          : 0;
    if (lengths.length === 1 && /^\d+$/.test(lengths[0].trim()) && Number(lengths[0]) > sent) {
      halfClose = true;
      if (!wire) wire = "truncated-body";
      else flaws = [...new Set([...(flaws ?? [wire]), "truncated-body" as const])];
    }
    const final: Spec = { ...spec, headers, wire, flaws };
    const started = performance.now();
    const res = await send(this.origin, { ...final, halfClose }, this.timeoutMs);
    this.record(laneName, final, requestId, res, started);
    return res;
  }

  record(laneName: string, spec: Spec, requestId: string | null, res: WireResponse, started: number): void {
    // Bodies of successful answers are not needed after the lane looked at them: keep memory flat.
    const kept = res.status >= 200 && res.status < 400 ? { ...res, body: res.body.subarray(0, 256) } : res;
    const slim: Spec =
      spec.body?.kind === "fixed" && spec.body.data.length > 512
        ? { ...spec, body: { ...spec.body, data: spec.body.data.subarray(0, 512) } }
        : spec;
    this.records.push({
      lane: laneName,
      family: familyOf(spec.method, spec.target, spec.headers),
      spec: slim,
      requestId,
      res: kept,
      started,
      ended: performance.now(),
    });
  }

  private reloadingAround(r: Recorded): boolean {
    return this.reloads.some((w) => r.started < w.end + 3000 && r.ended > w.start - 1500);
  }

  /** Judges every answer (after the run: reloads and app log lines are known by then) and aggregates. */
  summarize(): Pick<FuzzResult, "table" | "latency" | "findings" | "runtimeOnly"> {
    const output = this.opts.target.output?.() ?? "";
    const logged = appLogStatuses(output);
    const table: Record<string, Record<string, number>> = {};
    const findings = new Map<string, Finding>();
    const runtime = new Map<string, RuntimeAnswer>();
    const reloadNear = (r: Recorded): number | null => {
      let best: number | null = null;
      for (const w of this.reloads) {
        const d = (w.start - r.started) / 1000;
        if (best === null || Math.abs(d) < Math.abs(best)) best = d;
      }
      return best === null ? null : Math.round(best * 10) / 10;
    };
    const example = (r: Recorded, c: Classified): Example => ({
      at: Math.round((r.started - this.started) / 100) / 10,
      reloadNear: reloadNear(r),
      lane: r.lane,
      requestId: r.requestId,
      intent: r.spec.intent,
      request: formatRequest(r.spec),
      response: formatResponse(r.res),
      layer:
        c.layer === "app"
          ? "app"
          : c.layer === "none"
            ? `none${c.signature ? `: ${c.signature}` : ""}`
            : `runtime: ${c.signature}`,
      appLogged: r.requestId ? (logged.get(r.requestId) ?? null) : null,
    });
    const add = (kind: Finding["kind"], key: string, title: string, ex: Example) => {
      const f = findings.get(key) ?? { kind, key, title, count: 0, examples: [] };
      f.count++;
      if (f.examples.length < MAX_EXAMPLES) f.examples.push(ex);
      findings.set(key, f);
    };
    for (const r of this.records) {
      const appStatus = r.requestId ? (logged.get(r.requestId) ?? null) : null;
      const { classified, problems } = judge(r.res, r.spec, this.reloadingAround(r), appStatus);
      const statusKey =
        classified.layer === "app" ? String(r.res.status) : classified.layer === "none" ? "none" : `rt${r.res.status}`;
      table[r.family] ??= {};
      table[r.family][statusKey] = (table[r.family][statusKey] ?? 0) + 1;
      // The error code of a JSON error, the media type of any other error, nothing for a success.
      const code = (() => {
        if (r.res.status < 400) return "-";
        try {
          const j = JSON.parse(new TextDecoder().decode(r.res.body)) as { error?: { code?: string } };
          return j?.error?.code ?? "-";
        } catch {
          return (r.res.headers["content-type"] ?? "no-type").split(";")[0];
        }
      })();
      for (const kind of problems) {
        // A hidden 5xx is named by how the request was broken (what it takes to reproduce it).
        const key =
          kind === "app-5xx-hidden"
            ? `${kind}|${r.family}|${flawsOf(r.spec).join("+") || "well-formed"}|${appStatus}`
            : `${kind}|${r.family}|${r.res.status}|${classified.layer === "runtime" ? classified.signature : code}`;
        add(kind, key, FINDING_TEXT[kind], example(r, classified));
      }
      const excused = classified.layer === "runtime" || classified.signature === LOST_ANSWER.id;
      if (excused && problems.length === 0) {
        const sig = classified.signature ?? "unknown";
        const who =
          sig === LOST_ANSWER.id ? LOST_ANSWER.who : (RUNTIME_SIGNATURES.find((s) => s.id === sig)?.who ?? "");
        const entry = runtime.get(sig) ?? { signature: sig, who, count: 0, examples: [] };
        entry.count++;
        if (entry.examples.length < 2) entry.examples.push(example(r, classified));
        runtime.set(sig, entry);
      }
    }
    for (const n of this.notes) {
      const title =
        n.kind === "content-mismatch" ? "downloaded bytes differ from the bytes uploaded" : "the fuzzer itself failed";
      add(n.kind, n.kind, title, {
        lane: n.lane,
        requestId: null,
        intent: n.kind,
        request: n.detail,
        response: "",
        layer: n.kind === "content-mismatch" ? "app" : "fuzzer",
        appLogged: null,
        at: 0,
        reloadNear: null,
      });
    }
    const times: Record<string, number[]> = {};
    for (const r of this.records) (times[r.family] ??= []).push(r.res.ms);
    const latency: FuzzResult["latency"] = {};
    for (const [family, list] of Object.entries(times)) {
      list.sort((a, b) => a - b);
      const at = (q: number) => list[Math.min(list.length - 1, Math.floor(q * list.length))];
      latency[family] = { p50: at(0.5), p95: at(0.95) };
    }
    return { table, latency, findings: [...findings.values()], runtimeOnly: [...runtime.values()] };
  }
}

/** Runs probes, lanes and the ledger check against `opts.target`. Never throws for what the server does. */
export async function runFuzz(opts: FuzzOptions): Promise<FuzzResult> {
  const laneCount = opts.lanes ?? 4;
  const timeoutMs = opts.requestTimeoutMs ?? 30_000;
  const runner = new Runner(opts, timeoutMs);
  const secrets = { authSecret: opts.target.authSecret, adminToken: opts.target.adminToken };
  const say = opts.progress ?? (() => {});
  const ledgerUsers: LedgerUser[] = [];

  // Probes, with their own user, side by side with the lanes (they share nothing but the server).
  const probeUser = `fz${opts.seed}-probe`;
  const probeToken = await userToken(secrets.authSecret, probeUser, 24 * 3600);
  let probeSeq = 0;
  const probeId = () => `fz${opts.seed}-P-${++probeSeq}`;
  const probing: Promise<ProbeResult[]> =
    opts.probes === false
      ? Promise.resolve([])
      : runProbes({
          origin: runner.origin,
          secrets,
          userId: probeUser,
          token: probeToken,
          timeoutMs,
          send: async (spec) => {
            // A probe asks one exact question: a dev-server reload in the middle is no answer, so ask again.
            for (let attempt = 1; ; attempt++) {
              const res = await runner.exchangeAs("P", probeId, spec);
              if (!isReloadAnswer(res) || attempt === 3) return res;
              await new Promise((r) => setTimeout(r, 2000));
            }
          },
          record: (spec, res, started) => {
            const id = spec.headers.find(([n]) => n.toLowerCase() === "x-request-id")?.[1] ?? null;
            runner.record("P", spec, id, res, started);
          },
          nextRequestId: probeId,
          appLogged: async (id) => {
            if (!opts.target.output) return null;
            await new Promise((r) => setTimeout(r, 300));
            return appLogStatuses(opts.target.output()).get(id) ?? null;
          },
        });
  if (opts.probes !== false) ledgerUsers.push({ userId: probeUser, token: probeToken, uploads: [], files: [] });

  // Lanes: each with its own PRNG stream and its own two users.
  const lanes: Lane[] = [];
  for (let i = 0; i < laneCount; i++) {
    const ids = [`fz${opts.seed}-${i}a`, `fz${opts.seed}-${i}b`];
    const users = await Promise.all(
      ids.map(async (id) => ({ id, token: await userToken(secrets.authSecret, id, 24 * 3600) })),
    );
    const share = Math.floor(opts.requests / laneCount) + (i < opts.requests % laneCount ? 1 : 0);
    const big = opts.bigBytesPerLane ?? Math.round((24 * 1024 * 1024 * share) / 1000);
    lanes.push(new Lane(i, opts.seed, rngFor(opts.seed, `lane${i}`), secrets, runner, users, big));
  }
  runner.startLanes(
    lanes.map((_, i) => Math.floor(opts.requests / laneCount) + (i < opts.requests % laneCount ? 1 : 0)),
    opts.seconds,
  );
  const lanesStarted = performance.now();
  const ticker = setInterval(() => {
    const sent = lanes.reduce((n, l) => n + l.sent, 0);
    const secs = (performance.now() - lanesStarted) / 1000;
    say(`${sent}/${opts.requests} requests, ${secs.toFixed(0)} s, ${(sent / Math.max(secs, 0.001)).toFixed(0)}/s`);
  }, 5000);
  try {
    await Promise.all(
      lanes.map(async (lane) => {
        let errors = 0;
        try {
          await warmUp(lane);
        } catch (err) {
          if (err instanceof StopLane) return;
          runner.note(lane, "fuzzer-error", String((err as Error).stack ?? err));
        }
        while (runner.mayContinue(lane) && errors < 20) {
          const [name, , action] = lane.rng.weighted(ACTIONS.map((a) => [a, a[1]] as const));
          try {
            await action(lane);
          } catch (err) {
            if (err instanceof StopLane) return;
            // A bug of the fuzzer's own: reported (it fails the run) rather than ending the other lanes.
            errors++;
            runner.note(lane, "fuzzer-error", `${name}: ${String((err as Error).stack ?? err).slice(0, 600)}`);
          }
        }
      }),
    );
  } finally {
    clearInterval(ticker);
  }
  const seconds = (performance.now() - lanesStarted) / 1000;
  const requests = lanes.reduce((n, l) => n + l.sent, 0);
  say("probes …");
  const probes = await probing;
  const probeRequests = runner.records.filter((r) => r.lane === "P").length;

  let ledger: LedgerReport | null = null;
  if (opts.ledger !== false) {
    say("ledger check …");
    for (const lane of lanes) {
      for (const [i, u] of lane.users.entries()) {
        // A fresh token: the lane may be holding a short-lived one minted through the admin API.
        ledgerUsers.push({
          userId: u.id,
          token: await userToken(secrets.authSecret, u.id, 3600),
          uploads: lane.uploads.filter((x) => x.owner === i),
          files: lane.files.filter((x) => x.owner === i),
        });
      }
    }
    ledger = await checkLedgers({
      origin: runner.origin,
      adminToken: secrets.adminToken,
      users: ledgerUsers,
      exclusive: opts.target.exclusive ?? false,
      timeoutMs: opts.ledgerTimeoutMs ?? 30_000,
      requestTimeoutMs: timeoutMs,
    });
  }
  // Give the server a moment to print the last log lines before they are read.
  if (opts.target.output) await new Promise((r) => setTimeout(r, 1000));
  runner.stopWatching();
  return {
    seed: opts.seed,
    lanes: laneCount,
    requests,
    probeRequests,
    seconds,
    ...runner.summarize(),
    probes,
    ledger,
    reloads: runner.reloads.length,
    reloadTimes: runner.reloads.map((w) => Math.round((w.start - runner.started) / 100) / 10),
    appLog: opts.target.output !== undefined,
  };
}

/** Whether a result passes: no finding, every probe passes, ledgers intact. */
export function failures(result: FuzzResult): string[] {
  const all = [
    ...result.findings.map((f) => f.key),
    ...result.probes.filter((p) => !p.pass).map((p) => `probe|${p.id}`),
    ...(result.ledger
      ? [...result.ledger.users.flatMap((u) => u.checks), ...result.ledger.totals]
          .filter((c) => !c.pass)
          .map((c) => `ledger|${c.name}`)
      : []),
  ];
  return [...new Set(all)];
}
