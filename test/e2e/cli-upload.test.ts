// The `durable-uploads` CLI end to end: real CLI processes against a real wrangler dev. A 200 MiB upload
// is interrupted with SIGINT at ~40 % and resumed by running the same command again, and the server's
// audit log proves that no part that had arrived was sent twice; the download gives identical bytes.
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DevServer, eventually, run, startDevServer } from "./harness.ts";

const MiB = 1024 * 1024;
const CLI = resolve(import.meta.dirname, "../../cli/main.ts");

let server: DevServer;
let work: string;
let token: string;

/** The CLI's environment: this server, this user, and a state dir of its own. */
function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    DURABLE_UPLOADS_URL: server.url,
    DURABLE_UPLOADS_TOKEN: token,
    DURABLE_UPLOADS_STATE_DIR: join(work, "state"),
    ...extra,
  };
}

function cli(args: string[], extra: Record<string, string> = {}) {
  return run(process.execPath, [CLI, ...args], { env: cliEnv(extra) });
}

/** Starts the CLI without waiting, so a test can interrupt it. */
function spawnCli(args: string[]): {
  child: ChildProcess;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
} {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...cliEnv() },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d) => (stdout += d));
  child.stderr?.on("data", (d) => (stderr += d));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolveDone) =>
    child.on("exit", (code) => resolveDone({ code, stdout, stderr })),
  );
  return { child, done };
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** Every audit event of `action` for `userId`, through the admin API. */
async function auditEvents(userId: string, action: string): Promise<any[]> {
  const events: any[] = [];
  let cursor: string | null = null;
  do {
    const query = new URLSearchParams({ userId, action, limit: "200", ...(cursor ? { cursor } : {}) });
    const res = await server.fetch(`/v1/admin/audit?${query}`, {
      headers: { Authorization: `Bearer ${server.adminToken}` },
    });
    const page = (await res.json()) as { events: any[]; nextCursor: string | null };
    events.push(...page.events);
    cursor = page.nextCursor;
  } while (cursor);
  return events;
}

beforeAll(async () => {
  server = await startDevServer();
  work = mkdtempSync(join(tmpdir(), "durable-uploads-cli-"));
  token = await server.token("cli-user");
});

afterAll(async () => {
  await server?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("durable-uploads CLI", () => {
  it("runs as `npx durable-uploads`, and reports bad input as one clear error (JSON with --json)", async () => {
    const help = await run("npx", ["durable-uploads", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("upload");
    expect(help.stdout).toContain("migrate");

    const noToken = await cli(["usage", "--json"], { DURABLE_UPLOADS_TOKEN: "" });
    expect(noToken.code).toBe(2);
    expect(JSON.parse(noToken.stdout)).toEqual({
      error: { code: "missing_token", message: expect.stringContaining("--token") },
    });
    expect(noToken.stderr).not.toMatch(/\n\s+at /);

    const unknownOption = await cli(["ls", "--bogus", "--json"]);
    expect(unknownOption.code).toBe(2);
    expect(JSON.parse(unknownOption.stdout).error.code).toBe("usage.unknownOption");

    const missingFile = await cli(["upload", join(work, "nope.bin")]);
    expect(missingFile.code).toBe(2);
    expect(missingFile.stderr).toContain("not a file");
    expect(missingFile.stdout).toBe("");

    const badToken = await cli(["usage", "--json"], { DURABLE_UPLOADS_TOKEN: "not-a-jwt" });
    expect(badToken.code).toBe(1);
    expect(JSON.parse(badToken.stdout).error.code).toBe("unauthorized");
  });

  it("resumes a 200 MiB upload stopped at ~40 % without sending a finished part again; download matches", async () => {
    const size = 200 * MiB;
    const file = join(work, "big upload ü.bin");
    const block = randomBytes(8 * MiB);
    const content = Buffer.alloc(size);
    for (let offset = 0; offset < size; offset += block.length) {
      block.copy(content, offset);
      content.writeUInt32BE(offset / block.length, offset); // every part differs
    }
    writeFileSync(file, content);
    const expectedSha = createHash("sha256").update(content).digest("hex");

    // First run: SIGINT once the server holds ~40 % of the bytes.
    const started = performance.now();
    const first = spawnCli(["upload", file, "--json"]);
    let uploadId = "";
    const reached = await eventually(async () => {
      const list = (await (await server.fetch("/v1/uploads", { token })).json()) as { uploads: { uploadId: string }[] };
      if (list.uploads.length === 0) return false;
      uploadId = list.uploads[0].uploadId;
      const view = (await (await server.fetch(`/v1/uploads/${uploadId}`, { token })).json()) as {
        bytesReceived: number;
      };
      return view.bytesReceived >= 0.4 * size;
    }, 120_000);
    expect(reached).toBe(true);
    first.child.kill("SIGINT");
    const interrupted = await first.done;
    expect(interrupted.code).toBe(130);
    expect(JSON.parse(interrupted.stdout).error.code).toBe("interrupted");

    const partial = (await (await server.fetch(`/v1/uploads/${uploadId}`, { token })).json()) as any;
    expect(partial.status).toBe("active");
    const hadParts = partial.parts.map((p: { partNumber: number }) => p.partNumber);
    expect(hadParts.length).toBeGreaterThan(0);
    expect(partial.missingParts.length).toBeGreaterThan(0);

    // Second run, same arguments: the same upload, only the missing parts.
    const second = await cli(["upload", file, "--json"]);
    const seconds = (performance.now() - started) / 1000;
    expect(second.code, second.stderr).toBe(0);
    const result = JSON.parse(second.stdout);
    expect(result.failed).toEqual([]);
    const [uploaded] = result.files;
    expect(uploaded).toMatchObject({
      uploadId,
      resumed: true,
      size,
      sha256: expectedSha,
      partsAlready: hadParts.length,
    });
    expect(uploaded.partsSent).toBe(partial.partCount - hadParts.length);
    console.log(`200 MiB upload, interrupted and resumed: ${seconds.toFixed(1)} s in all`);

    // The audit log: every part accepted exactly once, none of the parts the server had was sent again.
    const parts = await eventually(async () => {
      const events = (await auditEvents("cli-user", "upload.part")).filter((e) => e.uploadId === uploadId && e.success);
      return events.length >= partial.partCount ? events : null;
    });
    const numbers = (parts ?? []).map((e) => e.metadata.partNumber as number).sort((a, b) => a - b);
    expect(numbers).toEqual(Array.from({ length: partial.partCount }, (_, i) => i + 1));

    // Download, interrupted once it has a few MiB and run again: it resumes with a Range request onto the
    // partial file, and the result is the same bytes, verified against the stored sha256.
    const out = join(work, "downloaded.bin");
    const firstDownload = spawnCli(["download", uploaded.fileId, "-o", out]);
    const partSize = () => statSync(`${out}.part`, { throwIfNoEntry: false })?.size ?? 0;
    await eventually(async () => partSize() > 4 * MiB || existsSync(out), 60_000);
    firstDownload.child.kill("SIGINT");
    const cut = await firstDownload.done;
    // (--force only matters if the first one was too quick to interrupt and finished.)
    const download = await cli(["download", uploaded.fileId, "-o", out, "--force", "--json"]);
    expect(download.code, download.stderr).toBe(0);
    expect(JSON.parse(download.stdout)).toMatchObject({ path: out, size, sha256: expectedSha, verified: true });
    expect(await sha256Of(out)).toBe(expectedSha);
    if (cut.code === 130) {
      // The second download asked for the rest only.
      const ranged = await eventually(async () => {
        const events = await auditEvents("cli-user", "file.download");
        return events.some((e) => e.metadata?.status === 206);
      });
      expect(ranged).toBe(true);
    }
  }, 300_000);

  it("lists, links, reports usage and removes files", async () => {
    const small = join(work, "notes, v2 (final).txt");
    writeFileSync(small, "hello from the CLI\n");
    const up = await cli(["upload", small]);
    expect(up.code, up.stderr).toBe(0);
    const fileId = up.stdout.trim();

    const ls = await cli(["ls", "--json"]);
    expect(ls.code).toBe(0);
    const files = JSON.parse(ls.stdout).files as { id: string; filename: string }[];
    expect(files.map((f) => f.filename)).toContain("notes, v2 (final).txt");
    const human = await cli(["ls", "--prefix", "notes"]);
    expect(human.stdout).toContain(fileId);

    const usage = JSON.parse((await cli(["usage", "--json"])).stdout);
    expect(usage.usedBytes).toBe(200 * MiB + 19);
    expect(usage.fileCount).toBe(files.length);

    const link = await cli(["link", fileId, "--expires-in", "10m", "--json"]);
    expect(link.code).toBe(0);
    const { url } = JSON.parse(link.stdout);
    const fetched = await fetch(url);
    expect(await fetched.text()).toBe("hello from the CLI\n");
    const badLink = await cli(["link", fileId, "--expires-in", "30d"]);
    expect(badLink.code).toBe(2);

    const rm = await cli(["rm", fileId, "no-such-file", "--json"]);
    expect(rm.code).toBe(1);
    expect(JSON.parse(rm.stdout)).toEqual({ removed: [fileId], notFound: ["no-such-file"] });
    const after = JSON.parse((await cli(["usage", "--json"])).stdout);
    expect(after.usedBytes).toBe(200 * MiB);
  });
});
