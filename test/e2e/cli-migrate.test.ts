// `durable-uploads migrate` end to end: real CLI processes against a real wrangler dev. A generated tree
// of 100+ files for 4 owners is imported, the run is killed (SIGKILL) half-way and run again; then every
// file is on the server exactly once, usage adds up, verify passes, and rollback takes every owner back
// to where they were (twice, harmlessly). A manifest with an owner over quota and a file over the size
// limit is assessed and run: those are refused with reasons, the rest goes through.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DevServer, eventually, run, startDevServer } from "./harness.ts";

const MiB = 1024 * 1024;
const CLI = resolve(import.meta.dirname, "../../cli/main.ts");
const OWNERS = ["ada", "bo.b", "chen_1", "dora-x"];

let server: DevServer;
let work: string;

function cliEnv(): Record<string, string> {
  return {
    DURABLE_UPLOADS_URL: server.url,
    DURABLE_UPLOADS_ADMIN_TOKEN: server.adminToken,
    DURABLE_UPLOADS_JOURNAL_DIR: join(work, "journals"),
    DURABLE_UPLOADS_STATE_DIR: join(work, "state"),
  };
}

function cli(args: string[]) {
  return run(process.execPath, [CLI, ...args], { env: cliEnv() });
}

async function cliJson(args: string[]): Promise<{ code: number; json: any; stderr: string }> {
  const result = await cli([...args, "--json"]);
  let json: any = null;
  try {
    json = JSON.parse(result.stdout);
  } catch {
    throw new Error(`not JSON (exit ${result.code}):\n${result.stdout}\n${result.stderr}`);
  }
  return { code: result.code, json, stderr: result.stderr };
}

async function asUser<T>(userId: string, path: string, init: RequestInit = {}): Promise<T> {
  const res = await server.fetch(path, { ...init, token: await server.token(userId) });
  return (await res.json()) as T;
}

const usageOf = (userId: string) =>
  asUser<{ usedBytes: number; reservedBytes: number; fileCount: number; activeUploads: number }>(userId, "/v1/usage");

/** Every live file of a user (one page is enough here). */
const filesOf = async (userId: string) =>
  (
    await asUser<{ files: { id: string; size: number; metadata: Record<string, string> }[] }>(
      userId,
      "/v1/files?limit=1000",
    )
  ).files;

/** A file the user had before any migration: rollback must leave it alone. */
async function seedFile(userId: string, bytes: Buffer): Promise<string> {
  const token = await server.token(userId);
  const created = (await (
    await server.fetch("/v1/uploads", {
      method: "POST",
      token,
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ filename: "before.bin", size: bytes.length }),
    })
  ).json()) as { uploadId: string };
  const body = new Uint8Array(bytes);
  await (await server.fetch(`/v1/uploads/${created.uploadId}/parts/1`, { method: "PUT", token, body })).arrayBuffer();
  const done = (await (
    await server.fetch(`/v1/uploads/${created.uploadId}/complete`, { method: "POST", token })
  ).json()) as {
    file: { id: string };
  };
  return done.file.id;
}

/**
 * R2 keys the local bucket still holds, read (read-only) from miniflare's own SQLite store. `node:sqlite`
 * is loaded with its one-time ExperimentalWarning held back, so the test output stays clean.
 */
async function r2Keys(): Promise<Set<string>> {
  const listeners = process.listeners("warning");
  process.removeAllListeners("warning");
  const { DatabaseSync } = await import("node:sqlite");
  await new Promise((r) => setImmediate(r));
  for (const listener of listeners) process.on("warning", listener);
  const dir = join(server.persistDir, "v3", "r2", "miniflare-R2BucketObject");
  const keys = new Set<string>();
  for (const name of readdirSync(dir).filter((n) => n.endsWith(".sqlite") && n !== "metadata.sqlite")) {
    const db = new DatabaseSync(join(dir, name), { readOnly: true });
    try {
      for (const row of db.prepare("SELECT key FROM _mf_objects").all()) keys.add(String(row.key));
    } finally {
      db.close();
    }
  }
  return keys;
}

/**
 * The tree: 4 owners × 26 files, 0 B to 30 MiB, names with spaces, unicode, commas, quotes, a tab,
 * padding and nested folders. Returns each owner's files with their sizes.
 */
function generateTree(root: string): Map<string, { path: string; size: number }[]> {
  const names = [
    "plain.txt",
    "with space.bin",
    "ünïcødé ファイル.dat",
    "deep/er/still deeper/x y.json",
    'a,b "quoted".csv',
    "emoji 🎉.png",
    "  padded  .txt",
    "tab\there.log",
    ".hidden",
    "Ελληνικά/αρχείο.pdf",
  ];
  const sizes = [0, 1, 100, 4096, 70_000, 300_000, MiB];
  const tree = new Map<string, { path: string; size: number }[]>();
  OWNERS.forEach((owner, o) => {
    const files: { path: string; size: number }[] = [];
    for (let i = 0; i < 26; i++) {
      const name = names[i % names.length];
      const rel = `folder ${i % 3}/${i < names.length ? name : `n${i} ${name}`}`;
      // Two multi-part files (30 MiB, 9 MiB); the rest small.
      let size = sizes[(i + o) % sizes.length];
      if (o === 0 && i === 5) size = 30 * MiB;
      if (o === 2 && i === 7) size = 9 * MiB;
      const path = join(root, owner, rel);
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, randomBytes(size));
      files.push({ path, size });
    }
    tree.set(owner, files);
  });
  return tree;
}

beforeAll(async () => {
  server = await startDevServer();
  work = mkdtempSync(join(tmpdir(), "durable-uploads-migrate-"));
});

afterAll(async () => {
  await server?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("durable-uploads migrate", () => {
  it("imports a tree, survives a kill, verifies, rolls back exactly what it created (twice, harmlessly)", async () => {
    const root = join(work, "tree");
    const tree = generateTree(root);
    const total = [...tree.values()].reduce((n, files) => n + files.length, 0);
    expect(total).toBeGreaterThanOrEqual(100);
    await seedFile("ada", randomBytes(1234));
    await seedFile("chen_1", randomBytes(99));
    const before = new Map(await Promise.all(OWNERS.map(async (o) => [o, await usageOf(o)] as const)));

    const assess = await cliJson(["migrate", "assess", root]);
    expect(assess.code, assess.stderr).toBe(0);
    expect(assess.json).toMatchObject({ files: total, verdict: "go", problems: [] });

    // First run, killed without warning once about a third of the files are done.
    const runId = "e2e-tree";
    const started = performance.now();
    const child: ChildProcess = spawn(process.execPath, [CLI, "migrate", "run", root, "--run-id", runId, "--json"], {
      env: { ...process.env, ...cliEnv() },
      stdio: ["ignore", "ignore", "ignore"],
    });
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    const third = await eventually(async () => {
      const status = await cli(["migrate", "status", runId, "--json"]);
      if (status.code !== 0) return false;
      return JSON.parse(status.stdout).counts.done >= total / 3;
    }, 120_000);
    expect(third).toBe(true);
    child.kill("SIGKILL");
    await exited;
    const killed = await cliJson(["migrate", "status", runId]);
    expect(killed.json.state).toBe("interrupted");
    expect(killed.json.counts.done).toBeLessThan(total);

    // Second run, same run id: finishes, every file once.
    const resumed = await cliJson(["migrate", "run", root, "--run-id", runId]);
    const seconds = (performance.now() - started) / 1000;
    expect(resumed.code, resumed.stderr).toBe(0);
    const report = resumed.json;
    expect(report.totals).toMatchObject({ files: total, uploaded: total, refused: 0, failed: 0, unfinished: 0 });
    expect(report.invocation.files).toBeLessThan(total);
    const totalBytes = [...tree.values()].flat().reduce((n, f) => n + f.size, 0);
    console.log(
      `migrate run of ${total} files (${(totalBytes / MiB).toFixed(1)} MiB), killed and resumed: ` +
        `${seconds.toFixed(1)} s; ` +
        `resumed invocation ${report.invocation.filesPerSecond} files/s, ${report.invocation.mibPerSecond} MiB/s`,
    );
    expect(existsSync(report.reportCsv)).toBe(true);
    expect(readFileSync(report.reportCsv, "utf8").trim().split("\n")).toHaveLength(total + 1);

    for (const owner of OWNERS) {
      const mine = report.files.filter((f: any) => f.userId === owner);
      expect(mine).toHaveLength(tree.get(owner)?.length ?? -1);
      for (const f of mine)
        expect(f).toMatchObject({
          outcome: "uploaded",
          fileId: expect.any(String),
          sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
        });
      // On the server: exactly one file per source file, carrying the run id; nothing left reserved.
      const ofRun = (await filesOf(owner)).filter((f) => f.metadata.migrationRunId === runId);
      expect(ofRun).toHaveLength(mine.length);
      expect(new Set(ofRun.map((f) => f.metadata.migrationEntry)).size).toBe(mine.length);
      expect(new Set(ofRun.map((f) => f.id))).toEqual(new Set(mine.map((f: any) => f.fileId)));
      const bytes = (tree.get(owner) ?? []).reduce((n, f) => n + f.size, 0);
      const usage = await usageOf(owner);
      expect(usage).toMatchObject({
        usedBytes: (before.get(owner)?.usedBytes ?? 0) + bytes,
        fileCount: (before.get(owner)?.fileCount ?? 0) + mine.length,
        reservedBytes: 0,
        activeUploads: 0,
      });
    }

    const verify = await cliJson(["migrate", "verify", runId]);
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.json).toMatchObject({ checked: total, ok: total, failed: 0, unexpected: [] });

    // Rollback: exactly the run's files go, every owner is back where they were.
    const fileIds = report.files.map((f: any) => f.fileId as string);
    const rollback = await cliJson(["migrate", "rollback", runId, "--yes"]);
    expect(rollback.code, rollback.stderr).toBe(0);
    expect(new Set(rollback.json.removed.map((r: any) => r.fileId))).toEqual(new Set(fileIds));
    for (const owner of OWNERS) {
      expect(await usageOf(owner)).toEqual(before.get(owner));
      expect((await filesOf(owner)).filter((f) => f.metadata.migrationRunId === runId)).toEqual([]);
    }
    const keys = report.files.map((f: any) => `u/${f.userId}/${f.fileId}`);
    const r2Left = await eventually(async () => {
      const left = await r2Keys();
      return keys.every((k: string) => !left.has(k));
    });
    expect(r2Left).toBe(true);
    const liveRows = await eventually(async () => {
      const rows = await server.d1(
        "SELECT COUNT(*) AS n FROM files WHERE status = 'active' " +
          `AND json_extract(metadata, '$.migrationRunId') = '${runId}'`,
      );
      return Number(rows[0].n) === 0;
    });
    expect(liveRows).toBe(true);

    // A second rollback finds nothing and changes nothing.
    const deletes = async () =>
      Number((await server.d1("SELECT COUNT(*) AS n FROM file_access_logs WHERE action = 'file.delete'"))[0].n);
    // Every delete of the first rollback is in the audit log (written through the owners' outboxes).
    expect(await eventually(async () => (await deletes()) === total)).toBe(true);
    const again = await cliJson(["migrate", "rollback", runId, "--yes"]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.json).toMatchObject({ removed: [], alreadyGone: 0, abortedUploads: [] });
    for (const owner of OWNERS) expect(await usageOf(owner)).toEqual(before.get(owner));
    expect(await deletes()).toBe(total);

    // A rolled-back run cannot be resumed by accident.
    const rerun = await cliJson(["migrate", "run", root, "--run-id", runId]);
    expect(rerun.code).toBe(2);
    expect(rerun.json.error.code).toBe("run_rolled_back");
    expect((await cliJson(["migrate", "status", runId])).json.state).toBe("rolled_back");
  }, 300_000);

  it("assess flags an owner over quota and a file over the size limit; run refuses just those", async () => {
    const admin = { Authorization: `Bearer ${server.adminToken}`, "Content-Type": "application/json" };
    await server.fetch("/v1/admin/users/tight", {
      method: "PUT",
      headers: admin,
      body: JSON.stringify({ quotaBytes: 100 * 1024 }),
    });
    await server.fetch("/v1/admin/users/limited", {
      method: "PUT",
      headers: admin,
      body: JSON.stringify({ maxFileSizeBytes: MiB }),
    });

    const dir = join(work, "manifest files");
    mkdirSync(dir, { recursive: true });
    const file = (name: string, size: number) => {
      writeFileSync(join(dir, name), randomBytes(size));
      return `manifest files/${name}`;
    };
    const rows = [
      { path: file("t1.bin", 60_000), userId: "tight" },
      { path: file("t2.bin", 60_000), userId: "tight" },
      { path: file("big one.bin", 2 * MiB), userId: "limited" },
      { path: file("small, one.txt", 10), userId: "limited", contentType: "text/plain" },
      { path: file("ok.pdf", 5000), userId: "fine", filename: "renamed report.pdf" },
      { path: file("m1.bin", 1), userId: "messy" },
      { path: "manifest files/m1.bin", userId: "messy" },
      { path: "manifest files/missing.bin", userId: "messy" },
      { path: file("x.bin", 3), userId: "not a valid owner!" },
    ];
    const quote = (v: string) => (/[",\n]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v);
    const csvRow = (r: (typeof rows)[number]) =>
      [r.path, r.userId, r.filename ?? "", r.contentType ?? ""].map(quote).join(",");
    const csv = join(work, "manifest.csv");
    writeFileSync(csv, `path,userId,filename,contentType\n${rows.map((r) => csvRow(r)).join("\n")}\n`);
    const jsonl = join(work, "manifest.jsonl");
    writeFileSync(jsonl, `${rows.map((r) => JSON.stringify(r)).join("\n")}\n`);

    for (const manifest of [csv, jsonl]) {
      const assess = await cliJson(["migrate", "assess", manifest]);
      expect(assess.code).toBe(1);
      const owner = (id: string) => assess.json.owners.find((o: any) => o.userId === id);
      expect(assess.json.verdict).toBe("no-go");
      expect(owner("tight")).toMatchObject({ verdict: "no-go", remainingBytes: 100 * 1024, eligibleFiles: 0 });
      expect(owner("tight").reasons.join(" ")).toMatch(/need 120000 bytes but only 102400/);
      expect(owner("limited")).toMatchObject({ verdict: "partial", eligibleFiles: 1, maxFileSizeBytes: MiB });
      expect(owner("limited").refused).toEqual([expect.objectContaining({ code: "file_too_large", size: 2 * MiB })]);
      expect(owner("fine")).toMatchObject({ verdict: "go", eligibleFiles: 1 });
      expect(owner("messy")).toMatchObject({ verdict: "partial", eligibleFiles: 1 });
      expect(assess.json.problems.map((p: any) => p.code).sort()).toEqual(["duplicate", "invalid_owner", "unreadable"]);
    }

    const result = await cliJson(["migrate", "run", csv, "--run-id", "e2e-manifest"]);
    expect(result.code).toBe(1);
    const byName = (name: string) => result.json.files.find((f: any) => f.path.endsWith(name));
    expect(byName("t1.bin")).toMatchObject({ outcome: "refused", reasonCode: "owner_over_quota", fileId: null });
    expect(byName("t1.bin").reason).toMatch(/quota/);
    expect(byName("big one.bin")).toMatchObject({ outcome: "refused", reasonCode: "file_too_large" });
    expect(byName("small, one.txt")).toMatchObject({ outcome: "uploaded", fileId: expect.any(String) });
    expect(byName("ok.pdf")).toMatchObject({ outcome: "uploaded", filename: "renamed report.pdf" });
    expect(byName("missing.bin")).toMatchObject({ outcome: "skipped", reasonCode: "unreadable" });
    expect(byName("x.bin")).toMatchObject({ outcome: "skipped", reasonCode: "invalid_owner" });
    expect(result.json.files.filter((f: any) => f.reasonCode === "duplicate")).toHaveLength(1);
    expect(result.json.totals).toMatchObject({ files: rows.length, uploaded: 3, refused: 3, skipped: 3 });
    expect(await usageOf("tight")).toMatchObject({ usedBytes: 0, fileCount: 0 });
    expect(await usageOf("limited")).toMatchObject({ usedBytes: 10, fileCount: 1 });
    const csvReport = readFileSync(result.json.reportCsv, "utf8");
    expect(csvReport).toContain("owner_over_quota");
    expect(csvReport).toContain('"/');
  });
});
