// A small harness for end-to-end tests: starts a real `wrangler dev` (workerd with local D1, R2 and
// Durable Objects) on a free port with its own state directory, and gives tests an HTTP client for it.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { sign } from "hono/jwt";

const ROOT = resolve(import.meta.dirname, "../..");
const WRANGLER = join(ROOT, "node_modules", ".bin", "wrangler");

export interface DevServer {
  /** `http://127.0.0.1:<port>` */
  url: string;
  authSecret: string;
  adminToken: string;
  /** Directory holding this server's local D1/R2/DO state. */
  persistDir: string;
  /** A user token signed with this server's secret. */
  token(userId: string, ttlSeconds?: number): Promise<string>;
  /** fetch relative to the server, with `token` as a bearer token when given. */
  fetch(path: string, init?: RequestInit & { token?: string }): Promise<Response>;
  /** Runs a SQL query against this server's local D1 and returns its rows. */
  d1(sql: string): Promise<Record<string, unknown>[]>;
  /** Process id of the wrangler process (the leader of the server's process group). */
  pid: number;
  /** Everything the server printed, for diagnosing a failure. */
  output(): string;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Extra `--var NAME:value` settings. */
  vars?: Record<string, string | number>;
  /**
   * A state directory to use instead of a fresh one, so a restarted server (say, with rotated secrets)
   * sees the same D1/R2/objects. The caller owns it: `stop()` leaves it in place.
   */
  persistDir?: string;
}

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address ? resolvePort(address.port) : reject(new Error("no port")),
      );
    });
  });
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command to its end without blocking the event loop. A synchronous child process
 * (`spawnSync`/`execFileSync`) froze the whole test process for the seconds a `wrangler d1 execute`
 * takes: meanwhile the server closed the idle keep-alive sockets in undici's pool, and the next request
 * went out on a socket the frozen loop had never seen close ("other side closed"). Never block here.
 */
export function run(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv } = {},
): Promise<CommandResult> {
  return new Promise((resolveRun) => {
    execFile(
      command,
      args,
      { cwd: ROOT, encoding: "utf8", maxBuffer: 64 * 1024 * 1024, env: { ...process.env, CI: "true", ...options.env } },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
        resolveRun({ code, stdout, stderr });
      },
    );
  });
}

async function runWrangler(args: string[]): Promise<string> {
  const result = await run(WRANGLER, args);
  if (result.code !== 0) throw new Error(`wrangler ${args.join(" ")} failed:\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

/** Starts `wrangler dev` with migrations applied to a fresh state directory and waits until it answers. */
export async function startDevServer(options: StartOptions = {}): Promise<DevServer> {
  const persistDir = options.persistDir ?? mkdtempSync(join(tmpdir(), "durable-uploads-e2e-"));
  await runWrangler(["d1", "migrations", "apply", "DB", "--local", "--persist-to", persistDir]);

  const port = await freePort();
  const inspectorPort = await freePort();
  const authSecret = randomBytes(24).toString("base64url");
  const adminToken = randomBytes(24).toString("base64url");
  const vars = { AUTH_SECRET: authSecret, ADMIN_TOKEN: adminToken, ...options.vars };
  const args = [
    "dev",
    "--ip",
    "127.0.0.1",
    "--port",
    String(port),
    "--inspector-port",
    String(inspectorPort),
    "--persist-to",
    persistDir,
    "--show-interactive-dev-session=false",
    ...Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`]),
  ];
  let log = "";
  const child: ChildProcess = spawn(WRANGLER, args, {
    cwd: ROOT,
    env: { ...process.env, CI: "true", NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  child.stdout?.on("data", (d) => (log += d));
  child.stderr?.on("data", (d) => (log += d));
  let exited = false;
  child.on("exit", () => (exited = true));

  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (exited) throw new Error(`wrangler dev exited early:\n${log}`);
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      // The launcher leads a process group (detached): end wrangler and workerd with it, not just npx.
      try {
        if (child.pid) process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
      throw new Error(`wrangler dev did not become ready:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }

  return {
    url,
    authSecret,
    adminToken,
    persistDir,
    token(userId, ttlSeconds = 3600) {
      const now = Math.floor(Date.now() / 1000);
      return sign({ sub: userId, iat: now, exp: now + ttlSeconds }, authSecret, "HS256");
    },
    fetch(path, init = {}) {
      const headers = new Headers(init.headers);
      if (init.token) headers.set("Authorization", `Bearer ${init.token}`);
      return fetch(`${url}${path}`, { ...init, headers });
    },
    async d1(sql) {
      // The running server holds the same SQLite file; a write in progress answers SQLITE_BUSY: retry.
      for (let attempt = 1; ; attempt++) {
        try {
          const out = await runWrangler([
            "d1",
            "execute",
            "DB",
            "--local",
            "--persist-to",
            persistDir,
            "--json",
            "--command",
            sql,
          ]);
          const parsed = JSON.parse(out) as { results: Record<string, unknown>[] }[];
          return parsed[0]?.results ?? [];
        } catch (err) {
          if (attempt >= 10 || !/SQLITE_BUSY|database is locked/.test(String(err))) throw err;
          await new Promise((r) => setTimeout(r, 100 * attempt));
        }
      }
    },
    pid: child.pid!,
    output: () => log,
    async stop() {
      if (!exited && child.pid) {
        const gone = new Promise((r) => child.once("exit", r));
        try {
          process.kill(-child.pid, "SIGTERM");
        } catch {
          // already gone
        }
        await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
        if (!exited) {
          try {
            process.kill(-child.pid, "SIGKILL");
          } catch {
            // already gone
          }
        }
      }
      if (!options.persistDir) rmSync(persistDir, { recursive: true, force: true });
    },
  };
}

/** Polls until `check` returns a truthy value or the time runs out (then returns the last value). */
export async function eventually<T>(check: () => Promise<T>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value || Date.now() > deadline) return value;
    await new Promise((r) => setTimeout(r, 200));
  }
}
