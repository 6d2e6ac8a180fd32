// `migrate run`: every file of the source into its owner's account, through the public API as that
// owner, with the journal as the record of what happened. Files go in parallel (`concurrency`), each
// file's parts too (`parallel`); a file is skipped when done, resumed from the server's missing parts
// when in progress, found again by its metadata when the run died while creating it.
import { stat } from "node:fs/promises";
import { type ApiClient, ApiError, isAbort, NetworkError } from "../api-client.ts";
import type { CommandContext } from "../context.ts";
import { sha256File } from "../file-hash.ts";
import {
  createUploadOnce,
  findActiveUpload,
  finishUpload,
  UploadGoneError,
  type UploadState,
} from "../multipart-upload.ts";
import { type FileProgress, Progress } from "../progress.ts";
import { abortUpload, getAdminUser, getUsage, type UploadView, type Usage } from "../server-api.ts";
import { assessOwner, type OwnerFacts } from "./assess.ts";
import { type EntryRow, Journal, runPaths } from "./journal.ts";
import { META_ENTRY, META_PATH, META_RUN } from "./metadata.ts";
import { OwnerTokens } from "./owner-tokens.ts";
import { buildReport, type RunReport, writeReports } from "./report.ts";
import { type Source, type SourceEntry, USER_ID } from "./source.ts";

/** Refusals of the server that another attempt cannot cure: the file is refused, not failed. */
const REFUSAL_CODES = new Set(["quota_exceeded", "file_too_large", "unsupported_media_type", "invalid_request"]);

export interface RunOptions {
  source: Source;
  runId: string;
  journalDir: string;
  concurrency: number;
  parallel: number;
  admin: ApiClient;
}

/** Reads each owner's usage and limits; a failure is a fact about the owner, not the end of the run. */
export async function ownerFacts(admin: ApiClient, userIds: string[]): Promise<Map<string, OwnerFacts>> {
  const facts = new Map<string, OwnerFacts>();
  for (const userId of userIds) {
    try {
      facts.set(userId, { view: await getAdminUser(admin, userId) });
    } catch (err) {
      if (err instanceof ApiError && (err.status === 401 || err.status === 403)) throw err;
      if (isAbort(err)) throw err;
      facts.set(userId, { error: err instanceof Error ? err.message : String(err) });
    }
  }
  return facts;
}

/** A journal row as the assessment sees a source entry. */
function asSourceEntry(row: EntryRow): SourceEntry {
  return {
    entryId: row.entry_id,
    seq: row.seq,
    userId: row.user_id,
    path: row.path,
    sourcePath: row.source_path,
    filename: row.filename,
    contentType: row.content_type,
    location: row.location,
    size: row.size,
    mtimeMs: row.mtime_ms,
    problem: null,
  };
}

/** The metadata value of the source path, cut so the whole map stays under the server's 2 KiB. */
function pathForMetadata(path: string): string {
  const chars = Array.from(path);
  return chars.length <= 400 ? path : `…${chars.slice(-399).join("")}`;
}

function describe(err: unknown): { code: string; message: string } {
  if (err instanceof ApiError) return { code: err.code, message: err.message };
  if (err instanceof NetworkError) return { code: "network_error", message: err.message };
  if (err instanceof UploadGoneError) return { code: "upload_gone", message: err.message };
  const e = err as NodeJS.ErrnoException;
  if (e?.code && typeof e.code === "string") return { code: "source_unreadable", message: e.message };
  return { code: "error", message: err instanceof Error ? err.message : String(err) };
}

/**
 * Runs (or resumes) a migration: journal, owner decisions, the files in parallel, the report. Returns
 * the report, also when interrupted (the caller checks the signal); throws what stops the run as a whole.
 */
export async function runMigration(ctx: CommandContext, options: RunOptions): Promise<RunReport> {
  const { source, runId, admin } = options;
  const paths = runPaths(options.journalDir, runId);
  const journal = Journal.open(options.journalDir, runId, { create: true });
  let driving = false;
  try {
    journal.initRun(source.root, source.kind, ctx.config.url);
    journal.acquire();
    driving = true;
    refreshEntries(journal, source);
    await decideOwners(ctx, journal, admin);

    const tokens = new OwnerTokens(admin, `migrate:${runId}`);
    const clients = new Map<string, ApiClient>();
    const clientFor = (userId: string) => {
      let client = clients.get(userId);
      if (!client) {
        client = admin.withAuth(tokens.forOwner(userId));
        clients.set(userId, client);
      }
      return client;
    };

    const goOwners = new Set(
      journal
        .owners()
        .filter((o) => o.decision === "go")
        .map((o) => o.user_id),
    );
    const work = interleaveOwners(
      journal.entries("state IN ('pending', 'creating', 'uploading')").filter((r) => goOwners.has(r.user_id)),
    );
    const progress = new Progress(ctx.out, {
      title: `migrate ${runId}`,
      totalBytes: work.reduce((s, r) => s + (r.size ?? 0), 0),
      totalFiles: work.length,
    });
    ctx.out.info(
      `run ${runId}: ${work.length} file(s) to import for ${goOwners.size} owner(s); journal ${journal.path}`,
    );
    const started = performance.now();
    let movedFiles = 0;
    let movedBytes = 0;
    const queue = [...work];
    const worker = async () => {
      for (let row = queue.shift(); row && !ctx.signal.aborted; row = queue.shift()) {
        const sent = await importEntry(ctx, journal, row, {
          runId,
          client: clientFor(row.user_id),
          progress,
          parallel: options.parallel,
        });
        if (sent !== null) {
          movedFiles++;
          movedBytes += sent;
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: options.concurrency }, worker));
    } finally {
      progress.stop();
    }
    const seconds = (performance.now() - started) / 1000;

    const counts = journal.counts();
    const unfinished = counts.pending + counts.creating + counts.uploading + counts.failed;
    journal.setRunState(ctx.signal.aborted || unfinished > 0 ? "stopped" : "finished");
    const usageAfter = new Map<string, Usage>();
    if (!ctx.signal.aborted) {
      for (const userId of goOwners) {
        const usage = await getUsage(clientFor(userId)).catch(() => null);
        if (usage) usageAfter.set(userId, usage);
      }
    }
    const report = buildReport(journal, paths, { seconds, files: movedFiles, bytes: movedBytes }, usageAfter);
    writeReports(report);
    return report;
  } catch (err) {
    // Only the process driving the run marks it stopped; a refusal to start leaves it as it was.
    if (driving) journal.setRunState("stopped");
    throw err;
  } finally {
    journal.close();
  }
}

/**
 * Orders the work so consecutive files belong to different owners (round robin, each owner's files in
 * source order): every owner's account object on the server takes its share of the load at once,
 * rather than one account serializing all the files in flight while the others wait.
 */
function interleaveOwners(rows: EntryRow[]): EntryRow[] {
  const byOwner = new Map<string, EntryRow[]>();
  for (const row of rows) byOwner.set(row.user_id, [...(byOwner.get(row.user_id) ?? []), row]);
  const lists = [...byOwner.values()];
  const out: EntryRow[] = [];
  for (let i = 0; out.length < rows.length; i++) for (const list of lists) if (i < list.length) out.push(list[i]);
  return out;
}

/**
 * Brings the journal up to date with the source: new entries are added; entries not yet started (or
 * that failed, were refused or skipped last time) take the source's current facts, so a fixed
 * permission, a raised quota or a repaired row is picked up by the next run.
 */
function refreshEntries(journal: Journal, source: Source): void {
  journal.addEntries(source.entries);
  const current = new Map(source.entries.map((e) => [e.entryId, e]));
  journal.db.exec("BEGIN");
  try {
    for (const row of journal.entries("state IN ('pending', 'failed', 'refused', 'skipped')")) {
      const entry = current.get(row.entry_id);
      if (!entry) {
        journal.update(row.entry_id, {
          state: "skipped",
          reason_code: "not_in_source",
          reason: "no longer in the source",
        });
        continue;
      }
      // Keep the hash if the file is unchanged: it is what a started upload declared.
      const unchanged = entry.size === row.size && entry.mtimeMs === row.mtime_ms;
      journal.update(row.entry_id, {
        state: entry.problem ? "skipped" : "pending",
        reason_code: entry.problem?.code ?? null,
        reason: entry.problem?.message ?? null,
        size: entry.size,
        mtime_ms: entry.mtimeMs,
        sha256: unchanged ? row.sha256 : null,
        filename: entry.filename,
        content_type: entry.contentType,
        seq: entry.seq,
      });
    }
    journal.db.exec("COMMIT");
  } catch (err) {
    journal.db.exec("ROLLBACK");
    throw err;
  }
}

/**
 * Decides, per owner with work left, whether their files go: an owner already decided `go` keeps that
 * decision (their earlier uploads are in their usage now), only the file checks apply again; any other
 * owner is assessed afresh against their current usage and limits.
 */
async function decideOwners(ctx: CommandContext, journal: Journal, admin: ApiClient): Promise<void> {
  const pending = journal.entries("state = 'pending'").filter((r) => USER_ID.test(r.user_id));
  const byOwner = new Map<string, EntryRow[]>();
  for (const row of pending) byOwner.set(row.user_id, [...(byOwner.get(row.user_id) ?? []), row]);
  // Owners with uploads in flight and nothing pending still need a decision on record.
  for (const row of journal.entries("state IN ('creating', 'uploading')"))
    if (!byOwner.has(row.user_id)) byOwner.set(row.user_id, []);
  const facts = await ownerFacts(admin, [...byOwner.keys()]);
  for (const [userId, rows] of byOwner) {
    const before = journal.owner(userId);
    const fact = facts.get(userId) as OwnerFacts;
    const assessment = assessOwner(userId, rows.map(asSourceEntry), fact, { quotaDecided: before?.decision === "go" });
    const usage = "view" in fact ? fact.view.usage : null;
    const ownerRefused = assessment.findings.some(
      (f) => f.refusal?.code === "owner_over_quota" || f.refusal?.code === "owner_unknown",
    );
    const decision = before?.decision === "go" || !ownerRefused ? "go" : "refused";
    journal.decideOwner(userId, decision, decision === "refused" ? assessment.reasons.join("; ") : null, usage);
    for (const f of assessment.findings) {
      if (f.refusal)
        journal.update(f.entry.entryId, { state: "refused", reason_code: f.refusal.code, reason: f.refusal.message });
    }
    if (decision === "refused") ctx.out.warn(`owner ${userId} refused: ${assessment.reasons.join("; ")}`);
    else if (assessment.verdict === "partial") ctx.out.warn(`owner ${userId}: ${assessment.reasons.join("; ")}`);
  }
}

interface ImportDeps {
  runId: string;
  client: ApiClient;
  progress: Progress;
  parallel: number;
}

/**
 * One file, from wherever the journal says it is to done (or refused, or failed). Returns the bytes this
 * call sent when it moved the file to done, else null. Never throws for the file's own failure: that is
 * recorded on the entry.
 */
async function importEntry(
  ctx: CommandContext,
  journal: Journal,
  start: EntryRow,
  deps: ImportDeps,
): Promise<number | null> {
  const { client: api, runId } = deps;
  const id = start.entry_id;
  let row = start;
  let bar: FileProgress | null = null;
  let counted = 0;
  const label = `${row.user_id}/${row.source_path}`;
  try {
    // The source must be the file the journal knows; if it changed, what was started is void.
    const info = await stat(row.path);
    if (!row.sha256 || info.size !== row.size || info.mtimeMs !== row.mtime_ms) {
      if (row.upload_id) await abortUpload(api, row.upload_id).catch(() => undefined);
      const sha256 = await sha256File(row.path, { signal: ctx.signal });
      journal.update(id, { size: info.size, mtime_ms: info.mtimeMs, sha256, upload_id: null, state: "pending" });
      row = journal.entry(id);
    }
    const sha256 = row.sha256 as string;
    const size = row.size as number;
    const isOurs = (v: UploadView) => v.metadata?.[META_RUN] === runId && v.metadata?.[META_ENTRY] === id;

    let uploadId = row.upload_id;
    if (row.state === "creating" && !uploadId) {
      // Killed between the write-ahead mark and the server's answer: the upload may exist.
      uploadId = (await findActiveUpload(api, size, isOurs))?.uploadId ?? null;
      if (uploadId) journal.update(id, { upload_id: uploadId, state: "uploading" });
    }
    for (let attempt = 1; ; attempt++) {
      let known: UploadState | undefined;
      if (!uploadId) {
        journal.update(id, { state: "creating", attempts: row.attempts + attempt, started_at: Date.now() });
        known = await createUploadOnce(
          api,
          {
            filename: row.filename,
            size,
            contentType: row.content_type,
            sha256,
            metadata: { [META_RUN]: runId, [META_ENTRY]: id, [META_PATH]: pathForMetadata(row.source_path) },
          },
          isOurs,
        );
        uploadId = known.uploadId;
        journal.update(id, { upload_id: uploadId, state: "uploading" });
      }
      try {
        const result = await finishUpload(api, uploadId, row.path, {
          parallel: deps.parallel,
          signal: ctx.signal,
          known,
          onResume: (view) => {
            if (!bar) bar = deps.progress.file(label, size);
            bar.skip(view.bytesReceived - counted);
            counted = view.bytesReceived;
          },
          onBytes: (delta) => {
            counted += delta;
            bar?.add(delta);
          },
        });
        journal.update(id, {
          state: "done",
          file_id: result.file.id,
          finished_at: Date.now(),
          reason_code: null,
          reason: null,
        });
        if (!bar) deps.progress.skipFile(size);
        else (bar as FileProgress).finish(true);
        return size - result.bytesAlready;
      } catch (err) {
        if (err instanceof UploadGoneError && attempt === 1) {
          journal.update(id, { upload_id: null, state: "pending" });
          uploadId = null;
          continue;
        }
        throw err;
      }
    }
  } catch (err) {
    (bar as FileProgress | null)?.finish(false);
    if (ctx.signal.aborted || isAbort(err)) return null;
    const { code, message } = describe(err);
    const refused = err instanceof ApiError && REFUSAL_CODES.has(err.code);
    journal.update(id, {
      state: refused ? "refused" : "failed",
      reason_code: code,
      reason: message,
      finished_at: Date.now(),
    });
    deps.progress.note(`${refused ? "refused" : "failed"}: ${label}: ${message}`);
    return null;
  }
}
