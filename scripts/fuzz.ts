// `npm run fuzz -- [--requests N] [--seed S] [--seconds T] [--url URL] [--lanes L] [--report FILE]
//                 [--server-log FILE] [--save-log FILE]`
//
// An HTTP fuzzer for every route of the API (methods, headers, ids, bodies, ranges, tus headers, tokens),
// bounded by a request count and a time limit, reproducible by seed. Without `--url` it starts its own
// `wrangler dev` (free port, fresh `--persist-to` directory with the D1 migrations applied, random
// AUTH_SECRET/ADMIN_TOKEN, PART_SIZE_BYTES 5 MiB) and stops it at the end. With `--url`, the secrets come
// from --auth-secret/--admin-token, else AUTH_SECRET/ADMIN_TOKEN in the environment, else .dev.vars, and
// `--server-log FILE` (the server's output redirected to a file) lets it read the app's log lines.
// `--save-log FILE` keeps the output of its own wrangler dev (the app's log lines, stacks) after the run.
//
// It prints status counts by route family, every finding with the request that caused it and the layer
// that answered, the runtime-only answers it excused, the pinned probes of issue 17 and the ledger check.
// Exit code 1 when anything fails.
//
// Who answered (the rule, also in docs/fuzzing.md and scripts/fuzz/classify.ts): the app sets
// X-Request-Id on every response and no runtime layer does. A response with it is the app's: any 5xx, and
// any error that is not JSON {error:{code}}, fails. A success without it is still the app's (no runtime
// layer makes one), as is an answer whose status the app logged: it fails for the missing header. Any
// other answer without it is the local runtime's (workerd's HTTP server, wrangler dev's ProxyWorker,
// miniflare's entry worker): excused only when it matches a known signature AND the request was broken on
// the wire in the way that signature belongs to (unknown method token, broken chunked body, body shorter
// than its Content-Length, malformed request line or headers, CONNECT), or the dev server was reloading;
// the app's own log line (found by the request id the fuzzer sends) must not show a 5xx either.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { parseDevVars } from "./dev-vars.ts";
import { startFuzzServer } from "./fuzz/dev-server.ts";
import { formatReport } from "./fuzz/report.ts";
import { failures, runFuzz, type Target } from "./fuzz/run.ts";

const { values } = parseArgs({
  options: {
    requests: { type: "string", default: "2000" },
    seed: { type: "string", default: "1" },
    seconds: { type: "string", default: "900" },
    lanes: { type: "string", default: "4" },
    url: { type: "string" },
    "auth-secret": { type: "string" },
    "admin-token": { type: "string" },
    report: { type: "string" },
    "server-log": { type: "string" },
    "save-log": { type: "string" },
    "no-probes": { type: "boolean", default: false },
    "no-ledger": { type: "boolean", default: false },
  },
});

const whole = (name: string, value: string | undefined, min: number): number => {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min) {
    console.error(`--${name} must be a whole number ≥ ${min}`);
    process.exit(2);
  }
  return n;
};
const requests = whole("requests", values.requests, 1);
const seed = whole("seed", values.seed, 0);
const seconds = whole("seconds", values.seconds, 1);
const lanes = whole("lanes", values.lanes, 1);

let target: Target;
let stop = async () => {};
if (values.url) {
  const url = new URL(values.url);
  if (!["127.0.0.1", "localhost", "[::1]"].includes(url.hostname)) {
    console.error("--url must point at a local server (127.0.0.1): the fuzzer writes and deletes data");
    process.exit(2);
  }
  const file = existsSync(".dev.vars") ? parseDevVars(readFileSync(".dev.vars", "utf8")) : {};
  const authSecret = values["auth-secret"] ?? process.env.AUTH_SECRET ?? file.AUTH_SECRET;
  const adminToken = values["admin-token"] ?? process.env.ADMIN_TOKEN ?? file.ADMIN_TOKEN;
  if (!authSecret || !adminToken) {
    console.error("with --url, pass --auth-secret and --admin-token (or AUTH_SECRET/ADMIN_TOKEN, or .dev.vars)");
    process.exit(2);
  }
  target = { url: values.url.replace(/\/$/, ""), authSecret, adminToken, exclusive: false };
  // The server's output, when it is written to a file: app log lines and reloads are read from it.
  const log = values["server-log"];
  if (log) target.output = () => (existsSync(log) ? readFileSync(log, "utf8") : "");
} else {
  console.error("starting wrangler dev …");
  const server = await startFuzzServer({ PART_SIZE_BYTES: 5 * 1024 * 1024 });
  console.error(`wrangler dev on ${server.url}`);
  target = {
    url: server.url,
    authSecret: server.authSecret,
    adminToken: server.adminToken,
    output: server.output,
    exclusive: true,
  };
  stop = server.stop;
  // The server runs in its own process group: take it down on Ctrl-C too.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      void server.stop().finally(() => process.exit(130));
    });
  }
}

let code = 1;
try {
  const result = await runFuzz({
    target,
    requests,
    seed,
    seconds,
    lanes,
    probes: !values["no-probes"],
    ledger: !values["no-ledger"],
    progress: (line) => console.error(line),
  });
  const failing = failures(result);
  console.log(formatReport(result, failing));
  if (values.report) writeFileSync(values.report, `${JSON.stringify({ ...result, failing }, null, 2)}\n`);
  code = failing.length === 0 ? 0 : 1;
} finally {
  if (values["save-log"] && target.output) writeFileSync(values["save-log"], target.output());
  await stop();
}
process.exit(code);
