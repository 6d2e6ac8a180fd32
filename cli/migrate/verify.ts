// `migrate verify`: every file the run imported, checked against its source and the server — the file
// exists, has the source's size and the SHA-256 the run computed, and the source still hashes to it;
// with `deep`, the stored bytes are downloaded and hashed too. The server is also searched for files of
// the run the journal does not know, or knows once but finds twice.
import { createHash } from "node:crypto";
import { stat } from "node:fs/promises";
import type { ApiClient } from "../api-client.ts";
import type { CommandContext } from "../context.ts";
import { sha256File } from "../file-hash.ts";
import { Progress } from "../progress.ts";
import { type FileInfo, getFile } from "../server-api.ts";
import type { EntryRow, Journal } from "./journal.ts";
import { META_ENTRY, META_RUN } from "./metadata.ts";
import { filesOfRun } from "./server-scan.ts";

export interface VerifiedFile {
  path: string;
  userId: string;
  fileId: string;
  size: number | null;
  sha256: string | null;
  ok: boolean;
  problems: string[];
}

export interface VerifyReport {
  runId: string;
  deep: boolean;
  checked: number;
  ok: number;
  failed: number;
  /** Entries of the journal that were never imported (refused, failed, skipped, unfinished). */
  notImported: number;
  /** Files on the server that carry the run id but that the journal does not list. */
  unexpected: { userId: string; fileId: string; filename: string; size: number }[];
  files: VerifiedFile[];
}

async function hashDownload(api: ApiClient, fileId: string, onBytes: (n: number) => void): Promise<string> {
  const res = await api.call(`/v1/files/${encodeURIComponent(fileId)}/content`);
  const hash = createHash("sha256");
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    hash.update(chunk);
    onBytes(chunk.length);
  }
  return hash.digest("hex");
}

/** Checks every file the run imported; see the header of this file. */
export async function verifyRun(
  ctx: CommandContext,
  journal: Journal,
  clientFor: (userId: string) => ApiClient,
  options: { deep: boolean; concurrency: number },
): Promise<VerifyReport> {
  const runId = journal.runId;
  const done = journal.entries("state = 'done'");
  const all = journal.entries();
  const results = new Map<string, VerifiedFile>();
  const unexpected: VerifyReport["unexpected"] = [];

  // What the server holds for the run, owner by owner.
  const onServer = new Map<string, FileInfo>();
  const owners = [...new Set(done.map((r) => r.user_id))];
  const byEntry = new Map<string, FileInfo[]>();
  const known = new Set(done.map((r) => r.file_id));
  for (const userId of owners) {
    for (const file of await filesOfRun(clientFor(userId), runId)) {
      onServer.set(file.id, file);
      const entry = file.metadata[META_ENTRY] ?? "";
      byEntry.set(entry, [...(byEntry.get(entry) ?? []), file]);
      if (!known.has(file.id)) unexpected.push({ userId, fileId: file.id, filename: file.filename, size: file.size });
    }
  }

  const totalBytes = done.reduce((s, r) => s + (r.size ?? 0), 0) * (options.deep ? 2 : 1);
  const progress = new Progress(ctx.out, { title: `verify ${runId}`, totalBytes, totalFiles: done.length });
  const queue = [...done];
  const check = async (row: EntryRow): Promise<VerifiedFile> => {
    const problems: string[] = [];
    const api = clientFor(row.user_id);
    const bar = progress.file(`${row.user_id}/${row.source_path}`, (row.size ?? 0) * (options.deep ? 2 : 1));
    try {
      // The listing comes from the index and may trail a just-finished run: ask for the file itself.
      const file = onServer.get(row.file_id as string) ?? (await getFile(api, row.file_id as string));
      if (!file) problems.push("missing on the server");
      else {
        if (file.size !== row.size) problems.push(`size on the server ${file.size}, in the source ${row.size}`);
        if (file.sha256 !== row.sha256)
          problems.push(`sha256 on the server ${file.sha256 ?? "(none)"}, at upload ${row.sha256}`);
        if (file.metadata?.[META_RUN] !== runId) problems.push("the file does not carry the run id");
      }
      const copies = byEntry.get(row.entry_id)?.length ?? 0;
      if (copies > 1) problems.push(`${copies} files on the server for this one source file`);
      const info = await stat(row.path).catch(() => null);
      if (!info) problems.push("the source file is gone");
      else if (info.size !== row.size) problems.push(`the source is ${info.size} bytes now, ${row.size} when imported`);
      else {
        const sourceHash = await sha256File(row.path, { signal: ctx.signal, onBytes: (n) => bar.add(n) });
        if (sourceHash !== row.sha256)
          problems.push("the source's sha256 differs from the imported one (changed since)");
      }
      if (options.deep && file) {
        const stored = await hashDownload(api, file.id, (n) => bar.add(n));
        if (stored !== row.sha256) problems.push(`the stored bytes hash to ${stored}, not ${row.sha256}`);
      }
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      problems.push(`could not check: ${err instanceof Error ? err.message : String(err)}`);
    }
    bar.finish(problems.length === 0);
    return {
      path: row.path,
      userId: row.user_id,
      fileId: row.file_id as string,
      size: row.size,
      sha256: row.sha256,
      ok: problems.length === 0,
      problems,
    };
  };
  try {
    await Promise.all(
      Array.from({ length: options.concurrency }, async () => {
        for (let row = queue.shift(); row; row = queue.shift()) results.set(row.entry_id, await check(row));
      }),
    );
  } finally {
    progress.stop();
  }
  const files = done.map((r) => results.get(r.entry_id) as VerifiedFile);
  const ok = files.filter((f) => f.ok).length;
  return {
    runId,
    deep: options.deep,
    checked: files.length,
    ok,
    failed: files.length - ok,
    notImported: all.length - done.length - all.filter((r) => r.state === "rolled_back").length,
    unexpected,
    files,
  };
}
