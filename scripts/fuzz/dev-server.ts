// A private `wrangler dev` for `npm run fuzz` without `--url`: a free port, a fresh `--persist-to` temp
// directory with the D1 migrations applied first, random secrets passed with `--var`, stopped at the end.
// Every child process is asynchronous: a synchronous one would freeze the event loop while requests are
// in flight.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "../..");
const WRANGLER = join(ROOT, "node_modules", ".bin", "wrangler");

export interface FuzzServer {
  url: string;
  authSecret: string;
  adminToken: string;
  output(): string;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.unref();
    server.on("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? done(address.port) : fail(new Error("no port"))));
    });
  });
}

function wrangler(args: string[]): Promise<void> {
  return new Promise((done, fail) => {
    execFile(
      WRANGLER,
      args,
      { cwd: ROOT, env: { ...process.env, CI: "true" }, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) =>
        error ? fail(new Error(`wrangler ${args.join(" ")}:\n${stdout}\n${stderr}`)) : done(),
    );
  });
}

export async function startFuzzServer(vars: Record<string, string | number> = {}): Promise<FuzzServer> {
  const persistDir = mkdtempSync(join(tmpdir(), "durable-uploads-fuzz-"));
  await wrangler(["d1", "migrations", "apply", "DB", "--local", "--persist-to", persistDir]);
  const port = await freePort();
  const inspectorPort = await freePort();
  const authSecret = randomBytes(24).toString("base64url");
  const adminToken = randomBytes(24).toString("base64url");
  const allVars = { AUTH_SECRET: authSecret, ADMIN_TOKEN: adminToken, ...vars };
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
    ...Object.entries(allVars).flatMap(([k, v]) => ["--var", `${k}:${v}`]),
  ];
  let log = "";
  const child: ChildProcess = spawn(WRANGLER, args, {
    cwd: ROOT,
    env: { ...process.env, CI: "true", NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  child.stdout?.on("data", (d) => {
    log += d;
  });
  child.stderr?.on("data", (d) => {
    log += d;
  });
  let exited = false;
  child.on("exit", () => {
    exited = true;
  });
  const stop = async () => {
    if (!exited && child.pid) {
      const gone = new Promise((r) => child.once("exit", r));
      try {
        process.kill(-child.pid, "SIGTERM"); // the process group this call started
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
    rmSync(persistDir, { recursive: true, force: true });
  };
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (exited) {
      await stop();
      throw new Error(`wrangler dev exited early:\n${log}`);
    }
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`wrangler dev did not become ready:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { url, authSecret, adminToken, output: () => log, stop };
}
