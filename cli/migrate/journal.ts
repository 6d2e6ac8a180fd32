// The durable local journal of a migration run: one SQLite file per run id (node:sqlite, WAL,
// synchronous=FULL, so every state change is on disk before the next request goes out). It is written
// ahead: an entry is marked `creating` before the upload is requested and records the upload id before
// any part is sent, so a run killed at any instant knows, for every file, whether it is untouched,
// possibly created (found again by its metadata), in progress (resumed from the server's missing
// parts) or done (skipped).
import { existsSync, mkdirSync } from "node:fs";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { CliError, EXIT } from "../output.ts";
import { stateDir } from "../resume-state.ts";
import type { SourceEntry, SourceKind } from "./source.ts";

/**
 * pending → creating → uploading → done; refused (a policy said no: re-planned on the next run),
 * failed (an error: retried on the next run), skipped (the source itself is wrong), rolled_back.
 */
export type EntryState =
  | "pending"
  | "creating"
  | "uploading"
  | "done"
  | "refused"
  | "failed"
  | "skipped"
  | "rolled_back";

export interface EntryRow {
  entry_id: string;
  seq: number;
  user_id: string;
  path: string;
  source_path: string;
  location: string;
  filename: string;
  content_type: string;
  size: number | null;
  mtime_ms: number | null;
  sha256: string | null;
  state: EntryState;
  upload_id: string | null;
  file_id: string | null;
  reason_code: string | null;
  reason: string | null;
  attempts: number;
  started_at: number | null;
  finished_at: number | null;
}

export interface RunRow {
  run_id: string;
  source: string;
  source_kind: SourceKind;
  server_url: string;
  state: "running" | "stopped" | "finished" | "rolled_back";
  pid: number | null;
  host: string | null;
  created_at: number;
  updated_at: number;
}

export interface OwnerRow {
  user_id: string;
  decision: "go" | "refused";
  reason: string | null;
  /** Usage when the run first looked, JSON: what a rollback should return the owner to. */
  usage_before: string | null;
  decided_at: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS run (
  id          INTEGER PRIMARY KEY CHECK (id = 1),
  run_id      TEXT NOT NULL,
  source      TEXT NOT NULL,
  source_kind TEXT NOT NULL,
  server_url  TEXT NOT NULL,
  state       TEXT NOT NULL,
  pid         INTEGER,
  host        TEXT,
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS owners (
  user_id      TEXT PRIMARY KEY,
  decision     TEXT NOT NULL,
  reason       TEXT,
  usage_before TEXT,
  decided_at   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
  entry_id     TEXT PRIMARY KEY,
  seq          INTEGER NOT NULL,
  user_id      TEXT NOT NULL,
  path         TEXT NOT NULL,
  source_path  TEXT NOT NULL,
  location     TEXT NOT NULL,
  filename     TEXT NOT NULL,
  content_type TEXT NOT NULL,
  size         INTEGER,
  mtime_ms     REAL,
  sha256       TEXT,
  state        TEXT NOT NULL,
  upload_id    TEXT,
  file_id      TEXT,
  reason_code  TEXT,
  reason       TEXT,
  attempts     INTEGER NOT NULL DEFAULT 0,
  started_at   INTEGER,
  finished_at  INTEGER
);
CREATE INDEX IF NOT EXISTS entries_state ON entries (state, seq);
CREATE INDEX IF NOT EXISTS entries_owner ON entries (user_id, state);
`;

export const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** `--journal-dir`, else `$DURABLE_UPLOADS_JOURNAL_DIR`, else `<state dir>/migrations`. */
export function journalDir(option?: string, env: NodeJS.ProcessEnv = process.env): string {
  return resolve(option ?? env.DURABLE_UPLOADS_JOURNAL_DIR ?? join(stateDir(env), "migrations"));
}

/** Where a run's files live: the journal, and the reports next to it. */
export function runPaths(dir: string, runId: string) {
  return {
    journal: join(dir, `${runId}.journal.sqlite`),
    reportJson: join(dir, `${runId}.report.json`),
    reportCsv: join(dir, `${runId}.report.csv`),
  };
}

/** A fresh run id: the time, so a directory of journals sorts by age, and a random tail. */
export function newRunId(): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*$/, "").replace("T", "-");
  return `run-${stamp}-${Math.random().toString(36).slice(2, 6)}`;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** One run's journal: the run, the owners' decisions and every source entry's state. */
export class Journal {
  readonly db: DatabaseSync;
  readonly runId: string;
  readonly path: string;

  private constructor(db: DatabaseSync, runId: string, path: string) {
    this.db = db;
    this.runId = runId;
    this.path = path;
  }

  /** Opens the journal of `runId` in `dir`; creates it only when `create` is set. */
  static open(dir: string, runId: string, options: { create: boolean }): Journal {
    if (!RUN_ID.test(runId)) {
      throw new CliError("invalid_run_id", `a run id is 1-64 characters of A-Z a-z 0-9 . _ - : ${runId}`, {
        exitCode: EXIT.usage,
      });
    }
    const { journal } = runPaths(dir, runId);
    if (!options.create && !existsSync(journal)) {
      throw new CliError("run_not_found", `no journal for run ${runId} in ${dir}`, { exitCode: EXIT.usage });
    }
    if (options.create) mkdirSync(dir, { recursive: true });
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(journal);
      // WAL with FULL sync: each commit is fsync'd, so a kill loses at most the write in flight.
      db.exec("PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;");
    } catch (err) {
      throw new CliError("journal_unreadable", `cannot open the journal ${journal}: ${(err as Error).message}`);
    }
    db.exec(SCHEMA);
    return new Journal(db, runId, journal);
  }

  close(): void {
    this.db.close();
  }

  run(): RunRow | null {
    return (this.db.prepare("SELECT * FROM run WHERE id = 1").get() as RunRow | undefined) ?? null;
  }

  /** Records the run the first time; later invocations must name the same source and server. */
  initRun(source: string, kind: SourceKind, serverUrl: string): RunRow {
    const existing = this.run();
    if (existing) {
      if (existing.source !== source) {
        throw new CliError("source_mismatch", `run ${this.runId} imports ${existing.source}, not ${source}`, {
          exitCode: EXIT.usage,
        });
      }
      if (existing.server_url !== serverUrl) {
        throw new CliError("server_mismatch", `run ${this.runId} went to ${existing.server_url}, not ${serverUrl}`, {
          exitCode: EXIT.usage,
        });
      }
      if (existing.state === "rolled_back") {
        throw new CliError("run_rolled_back", `run ${this.runId} was rolled back; start a new run id`, {
          exitCode: EXIT.usage,
        });
      }
      return existing;
    }
    const now = Date.now();
    this.db
      .prepare(
        `INSERT INTO run (id, run_id, source, source_kind, server_url, state, created_at, updated_at)
         VALUES (1, ?, ?, ?, ?, 'stopped', ?, ?)`,
      )
      .run(this.runId, source, kind, serverUrl, now, now);
    return this.run() as RunRow;
  }

  /**
   * Marks the run as driven by this process. A run whose recorded process is alive on this host is
   * refused: two processes driving one journal would send parts twice.
   */
  acquire(): void {
    const run = this.run();
    if (
      run?.state === "running" &&
      run.pid &&
      run.pid !== process.pid &&
      run.host === hostname() &&
      pidAlive(run.pid)
    ) {
      throw new CliError("run_in_progress", `run ${this.runId} is being driven by process ${run.pid}`, {
        exitCode: EXIT.usage,
      });
    }
    this.db
      .prepare("UPDATE run SET state = 'running', pid = ?, host = ?, updated_at = ? WHERE id = 1")
      .run(process.pid, hostname(), Date.now());
  }

  /** Whether another live process is driving the run right now. */
  busyElsewhere(): number | null {
    const run = this.run();
    if (run?.state === "running" && run.pid && run.pid !== process.pid && run.host === hostname() && pidAlive(run.pid))
      return run.pid;
    return null;
  }

  setRunState(state: RunRow["state"]): void {
    this.db.prepare("UPDATE run SET state = ?, pid = NULL, updated_at = ? WHERE id = 1").run(state, Date.now());
  }

  /** Adds the source's entries the journal does not have yet (all of them, the first time). */
  addEntries(entries: SourceEntry[]): number {
    const insert = this.db.prepare(
      `INSERT OR IGNORE INTO entries (entry_id, seq, user_id, path, source_path, location, filename, content_type,
         size, mtime_ms, state, reason_code, reason)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    let added = 0;
    this.db.exec("BEGIN");
    try {
      for (const e of entries) {
        const result = insert.run(
          e.entryId,
          e.seq,
          e.userId,
          e.path,
          e.sourcePath,
          e.location,
          e.filename,
          e.contentType,
          e.size,
          e.mtimeMs,
          e.problem ? "skipped" : "pending",
          e.problem?.code ?? null,
          e.problem?.message ?? null,
        );
        added += Number(result.changes);
      }
      this.db.exec("COMMIT");
    } catch (err) {
      this.db.exec("ROLLBACK");
      throw err;
    }
    return added;
  }

  entries(where = "1 = 1", ...params: (string | number | null)[]): EntryRow[] {
    return this.db.prepare(`SELECT * FROM entries WHERE ${where} ORDER BY seq`).all(...params) as unknown as EntryRow[];
  }

  entry(entryId: string): EntryRow {
    return this.db.prepare("SELECT * FROM entries WHERE entry_id = ?").get(entryId) as unknown as EntryRow;
  }

  /** One state change of one entry, committed (and fsync'd) before it returns. */
  update(entryId: string, fields: Partial<Omit<EntryRow, "entry_id">>): void {
    const keys = Object.keys(fields);
    if (keys.length === 0) return;
    const sets = keys.map((k) => `${k} = ?`).join(", ");
    const values = keys.map((k) => (fields as Record<string, string | number | null>)[k]);
    this.db.prepare(`UPDATE entries SET ${sets} WHERE entry_id = ?`).run(...values, entryId);
  }

  owners(): OwnerRow[] {
    return this.db.prepare("SELECT * FROM owners ORDER BY user_id").all() as unknown as OwnerRow[];
  }

  owner(userId: string): OwnerRow | null {
    return (this.db.prepare("SELECT * FROM owners WHERE user_id = ?").get(userId) as OwnerRow | undefined) ?? null;
  }

  /** Records the decision for an owner; the usage seen first is kept (it is what rollback restores). */
  decideOwner(userId: string, decision: OwnerRow["decision"], reason: string | null, usage: unknown): void {
    this.db
      .prepare(
        `INSERT INTO owners (user_id, decision, reason, usage_before, decided_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (user_id) DO UPDATE SET decision = excluded.decision, reason = excluded.reason,
           decided_at = excluded.decided_at, usage_before = COALESCE(owners.usage_before, excluded.usage_before)`,
      )
      .run(userId, decision, reason, usage === null ? null : JSON.stringify(usage), Date.now());
  }

  /** Entry counts by state. */
  counts(): Record<EntryState, number> {
    const rows = this.db.prepare("SELECT state, COUNT(*) AS n FROM entries GROUP BY state").all() as {
      state: EntryState;
      n: number;
    }[];
    const counts = {
      pending: 0,
      creating: 0,
      uploading: 0,
      done: 0,
      refused: 0,
      failed: 0,
      skipped: 0,
      rolled_back: 0,
    };
    for (const r of rows) counts[r.state] = Number(r.n);
    return counts;
  }
}
