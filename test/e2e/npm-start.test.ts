// The README's set-up path: `npm start` (migrations, .dev.vars, wrangler dev) with pass-through
// arguments, and `npm run --silent token` to get a token signed with the same local secret.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { run } from "./harness.ts";

const ROOT = resolve(import.meta.dirname, "../..");

async function freePort(): Promise<number> {
  return new Promise((ok) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => ok(port));
    });
  });
}

describe("npm start", () => {
  const persist = mkdtempSync(join(tmpdir(), "durable-uploads-start-"));
  let child: ReturnType<typeof spawn> | undefined;
  afterAll(async () => {
    if (child?.pid) {
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {}
      await new Promise((r) => setTimeout(r, 500));
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {}
    }
    rmSync(persist, { recursive: true, force: true });
  });

  it("serves a ready service on the requested port with --var overrides, and tokens work", async () => {
    const port = await freePort();
    const inspector = await freePort();
    let log = "";
    child = spawn(
      "npm",
      [
        "start",
        "--",
        "--port",
        String(port),
        "--inspector-port",
        String(inspector),
        "--persist-to",
        persist,
        "--var",
        "UPLOAD_TTL_SECONDS:5",
        "--show-interactive-dev-session=false",
      ],
      {
        cwd: ROOT,
        env: { ...process.env, CI: "true", NO_COLOR: "1" },
        detached: true,
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    child.stdout!.on("data", (d) => (log += d));
    child.stderr!.on("data", (d) => (log += d));

    const base = `http://127.0.0.1:${port}`;
    let ready: Response | undefined;
    for (let i = 0; i < 240 && !ready; i++) {
      try {
        const res = await fetch(`${base}/readyz`);
        if (res.status === 200) ready = res;
      } catch {}
      if (!ready) await new Promise((r) => setTimeout(r, 500));
    }
    expect(ready, log).toBeDefined();
    expect(log).toContain("npm run --silent token");

    const token = await run("npm", ["run", "--silent", "token", "--", "start-user", "--ttl", "120"]);
    expect(token.code, token.stderr).toBe(0);
    const jwt = token.stdout.trim();
    expect(jwt.split(".")).toHaveLength(3);
    const res = await fetch(`${base}/v1/usage`, { headers: { Authorization: `Bearer ${jwt}` } });
    expect(res.status).toBe(200);

    const bad = await run("npm", ["run", "--silent", "token", "--", "bad user"]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("usage");
  });
});
