// Local memory of `upload` runs in progress: which server upload a local file is going to, and the
// file's SHA-256 with the size and mtime it was computed for. With it, a re-run resumes without
// hashing a huge file again; without it (a fresh machine, a wiped state dir) the server is asked.
// Records are written atomically (temp file, fsync, rename) so a kill never leaves half a record.
import { createHash } from "node:crypto";
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

export interface UploadRecord {
  uploadId: string;
  path: string;
  size: number;
  mtimeMs: number;
  sha256: string;
  createdAt: string;
}

/** `$DURABLE_UPLOADS_STATE_DIR`, else `$XDG_STATE_HOME/durable-uploads`, else `~/.local/state/durable-uploads`. */
export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DURABLE_UPLOADS_STATE_DIR) return env.DURABLE_UPLOADS_STATE_DIR;
  const base = env.XDG_STATE_HOME || join(homedir(), ".local", "state");
  return join(base, "durable-uploads");
}

/** Writes a file so that a reader sees the old content or the new, never a mix, even after a crash. */
export function writeFileAtomic(path: string, content: string): void {
  const temp = `${path}.${process.pid}.tmp`;
  writeFileSync(temp, content);
  const fd = openSync(temp, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, path);
}

/** The records of `upload` runs in progress, one JSON file each in the state dir. */
export class ResumeState {
  readonly #dir: string;

  constructor(dir = join(stateDir(), "uploads")) {
    this.#dir = dir;
  }

  /** One record per (server, user, absolute path). */
  #file(server: string, userId: string, path: string): string {
    const key = createHash("sha256").update(`${server}\n${userId}\n${path}`).digest("hex").slice(0, 32);
    return join(this.#dir, `${key}.json`);
  }

  load(server: string, userId: string, path: string): UploadRecord | null {
    try {
      const record = JSON.parse(readFileSync(this.#file(server, userId, path), "utf8")) as UploadRecord;
      return record.path === path && typeof record.uploadId === "string" ? record : null;
    } catch {
      return null;
    }
  }

  save(server: string, userId: string, record: UploadRecord): void {
    mkdirSync(this.#dir, { recursive: true });
    writeFileAtomic(this.#file(server, userId, record.path), JSON.stringify(record));
  }

  remove(server: string, userId: string, path: string): void {
    rmSync(this.#file(server, userId, path), { force: true });
  }
}
