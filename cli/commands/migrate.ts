// `durable-uploads migrate assess|run|status|verify|rollback`: the operator's import of many users'
// files, each uploaded as its owner through the public API (see docs/migration.md).
import type { Command } from "commander";
import type { ApiClient } from "../api-client.ts";
import { requireAdminToken } from "../config.ts";
import { apiClient, type CommandContext } from "../context.ts";
import { sha256File } from "../file-hash.ts";
import { assessOwner, estimateDuration, type OwnerAssessment, overallVerdict } from "../migrate/assess.ts";
import { Journal, journalDir, newRunId, RUN_ID, runPaths } from "../migrate/journal.ts";
import { OwnerTokens } from "../migrate/owner-tokens.ts";
import { type RunReport, reportFile } from "../migrate/report.ts";
import { rollbackRun } from "../migrate/rollback.ts";
import { ownerFacts, runMigration } from "../migrate/run.ts";
import { readSource, type Source, type SourceEntry, USER_ID } from "../migrate/source.ts";
import { verifyRun } from "../migrate/verify.ts";
import { CliError, EXIT, interrupted, table } from "../output.ts";
import { Progress } from "../progress.ts";
import { getUsage } from "../server-api.ts";
import { formatBytes, formatDuration } from "../units.ts";
import type { Action } from "./action.ts";

/** Defaults of the estimate: what this service sustained locally per file and per byte (docs/migration.md). */
const DEFAULT_RATE_MIBPS = "20";
const DEFAULT_FILES_PER_SECOND = "8";

interface EstimateOptions {
  rate: string;
  filesPerSecond: string;
}

function positive(value: string, name: string, max = 1e6): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || n > max) {
    throw new CliError("invalid_option", `${name} must be a number above 0${max < 1e6 ? ` and at most ${max}` : ""}`, {
      exitCode: EXIT.usage,
    });
  }
  return n;
}

function whole(value: string, name: string, max: number): number {
  if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > max) {
    throw new CliError("invalid_option", `${name} must be a whole number from 1 to ${max}`, { exitCode: EXIT.usage });
  }
  return Number(value);
}

/** Adds the command(s) of this module to the program. */
export function registerMigrate(program: Command, action: Action): void {
  const migrate = program
    .command("migrate")
    .description("operator: import files on behalf of their owners (needs --admin-token)");
  const journalOption = (c: Command) =>
    c.option("--journal-dir <dir>", "where run journals and reports live (env DURABLE_UPLOADS_JOURNAL_DIR)");

  migrate
    .command("assess")
    .description("what a source holds against each owner's quota and limits, and the go/no-go per owner")
    .argument("<source>", "a directory <dir>/<userId>/<path>, or a .csv / .jsonl manifest")
    .option("--rate <MiB/s>", "transfer rate for the estimate", DEFAULT_RATE_MIBPS)
    .option("--files-per-second <n>", "per-file rate for the estimate (small files)", DEFAULT_FILES_PER_SECOND)
    .action(action((ctx, source: string, o: EstimateOptions) => assess(ctx, source, o)));

  journalOption(
    migrate
      .command("run")
      .description("import every file of the source; run again with the same --run-id to resume")
      .argument("<source>", "a directory <dir>/<userId>/<path>, or a .csv / .jsonl manifest")
      .option("--run-id <id>", "names the run (and its journal); default: a new id")
      .option("--concurrency <n>", "files in flight (1-64)", "4")
      .option("--parallel <n>", "parts in flight per file (1-16)", "2")
      .option("--dry-run", "assess, read and hash every file, check each owner's token; upload nothing"),
  ).action(action((ctx, source: string, o: RunCommandOptions) => run(ctx, source, o)));

  journalOption(
    migrate.command("status").description("where a run stands, from its journal").argument("<run-id>"),
  ).action(action((ctx, runId: string, o: { journalDir?: string }) => status(ctx, runId, o)));

  journalOption(
    migrate
      .command("verify")
      .description("check every imported file against its source and the server")
      .argument("<run-id>")
      .option("--deep", "also download every file and hash the stored bytes")
      .option("--concurrency <n>", "files checked at once (1-64)", "4"),
  ).action(
    action((ctx, runId: string, o: { journalDir?: string; deep?: boolean; concurrency: string }) =>
      verify(ctx, runId, o),
    ),
  );

  journalOption(
    migrate
      .command("rollback")
      .description("delete exactly the files a run created (quota refunded, deletes audited)")
      .argument("<run-id>")
      .option("--yes", "really delete (without it: show what would be deleted)"),
  ).action(action((ctx, runId: string, o: { journalDir?: string; yes?: boolean }) => rollback(ctx, runId, o)));
}

/** Owners named by valid entries; entries without a valid owner are problems of the source. */
function groupByOwner(source: Source): { owners: Map<string, SourceEntry[]>; orphans: SourceEntry[] } {
  const owners = new Map<string, SourceEntry[]>();
  const orphans: SourceEntry[] = [];
  for (const e of source.entries) {
    if (!USER_ID.test(e.userId)) orphans.push(e);
    else owners.set(e.userId, [...(owners.get(e.userId) ?? []), e]);
  }
  return { owners, orphans };
}

function ownerJson(a: OwnerAssessment) {
  return {
    userId: a.userId,
    verdict: a.verdict,
    reasons: a.reasons,
    files: a.files,
    bytes: a.bytes,
    eligibleFiles: a.eligibleFiles,
    eligibleBytes: a.eligibleBytes,
    usage: a.usage,
    remainingBytes: a.remainingBytes,
    maxFileSizeBytes: a.limits?.maxFileSizeBytes ?? null,
    allowedContentTypes: a.limits?.allowedContentTypes ?? null,
    refused: a.findings
      .filter((f) => f.refusal)
      .map((f) => ({
        path: f.entry.path,
        location: f.entry.location,
        size: f.entry.size,
        contentType: f.entry.contentType,
        ...f.refusal,
      })),
  };
}

async function assessSource(ctx: CommandContext, sourceArg: string, o: EstimateOptions) {
  const rate = positive(o.rate, "--rate");
  const filesPerSecond = positive(o.filesPerSecond, "--files-per-second");
  const admin = apiClient(ctx, requireAdminToken(ctx.config));
  const source = await readSource(sourceArg);
  const { owners, orphans } = groupByOwner(source);
  const facts = await ownerFacts(admin, [...owners.keys()]);
  const assessments = [...owners].map(([userId, entries]) =>
    assessOwner(userId, entries, facts.get(userId) ?? { error: "not read" }),
  );
  const eligibleBytes = assessments.reduce((s, a) => s + a.eligibleBytes, 0);
  const eligibleFiles = assessments.reduce((s, a) => s + a.eligibleFiles, 0);
  const verdict = overallVerdict([
    ...assessments.map((a) => a.verdict),
    ...(orphans.length ? (["partial"] as const) : []),
  ]);
  const document = {
    source: source.root,
    kind: source.kind,
    files: source.entries.length,
    bytes: source.entries.reduce((s, e) => s + (e.size ?? 0), 0),
    eligibleFiles,
    eligibleBytes,
    owners: assessments.map(ownerJson),
    problems: source.entries
      .filter((e) => e.problem)
      .map((e) => ({ location: e.location, path: e.path, userId: e.userId, ...e.problem })),
    contentTypes: [...new Set(source.entries.map((e) => e.contentType))].sort(),
    estimate: estimateDuration(eligibleBytes, eligibleFiles, rate, filesPerSecond),
    verdict,
  };
  return { source, document, assessments, admin };
}

async function assess(ctx: CommandContext, sourceArg: string, o: EstimateOptions): Promise<number> {
  const { document: d, assessments } = await assessSource(ctx, sourceArg, o);
  const lines = [
    `source ${d.source} (${d.kind}): ${d.files} file(s), ${formatBytes(d.bytes)}; ` +
      `${d.problems.length} problem(s) in the source`,
    "",
    table([
      ["OWNER", "FILES", "BYTES", "REMAINING", "MAX FILE", "VERDICT"],
      ...assessments.map((a) => [
        a.userId,
        String(a.files),
        formatBytes(a.bytes),
        a.remainingBytes === null ? "?" : formatBytes(a.remainingBytes),
        a.limits ? formatBytes(a.limits.maxFileSizeBytes) : "?",
        a.verdict,
      ]),
    ]),
  ];
  for (const a of assessments) for (const r of a.reasons) lines.push(`  ${a.userId}: ${r}`);
  const refusals = assessments.flatMap((a) =>
    a.findings
      .filter((f) => f.refusal && f.refusal.code !== "owner_over_quota")
      .map((f) => `  ${f.entry.location}: ${f.refusal?.code}: ${f.refusal?.message}`),
  );
  const orphanLines = d.problems
    .filter((p) => !USER_ID.test(p.userId))
    .map((p) => `  ${p.location}: ${p.code}: ${p.message}`);
  if (refusals.length + orphanLines.length > 0) lines.push("", "files that will not go:", ...refusals, ...orphanLines);
  lines.push(
    "",
    `content types: ${d.contentTypes.join(", ") || "(none)"}`,
    `to upload: ${d.eligibleFiles} file(s), ${formatBytes(d.eligibleBytes)}; ` +
      `estimated ${formatDuration(d.estimate.seconds)} ` +
      `at ${d.estimate.rateMiBps} MiB/s and ${d.estimate.filesPerSecond} files/s`,
    `verdict: ${d.verdict}`,
  );
  ctx.out.info(lines.join("\n"));
  ctx.out.result(d, "");
  return d.verdict === "go" ? EXIT.ok : EXIT.failed;
}

interface RunCommandOptions {
  runId?: string;
  concurrency: string;
  parallel: string;
  journalDir?: string;
  dryRun?: boolean;
}

async function run(ctx: CommandContext, sourceArg: string, o: RunCommandOptions): Promise<number> {
  const concurrency = whole(o.concurrency, "--concurrency", 64);
  const parallel = whole(o.parallel, "--parallel", 16);
  if (o.runId !== undefined && !RUN_ID.test(o.runId)) {
    throw new CliError(
      "invalid_run_id",
      "--run-id is 1-64 characters of A-Z a-z 0-9 . _ - (starting with a letter or digit)",
      {
        exitCode: EXIT.usage,
      },
    );
  }
  if (o.dryRun) return dryRun(ctx, sourceArg);
  const admin = apiClient(ctx, requireAdminToken(ctx.config));
  const runId = o.runId ?? newRunId();
  const dir = journalDir(o.journalDir);
  ctx.out.info(`run id ${runId} (resume with: migrate run ${sourceArg} --run-id ${runId})`);
  const source = await readSource(sourceArg);
  let report: RunReport;
  try {
    report = await runMigration(ctx, { source, runId, journalDir: dir, concurrency, parallel, admin });
  } catch (err) {
    if (ctx.signal.aborted) throw interrupted(`resume with: migrate run ${sourceArg} --run-id ${runId}`);
    throw err;
  }
  if (ctx.signal.aborted) throw interrupted(`resume with: migrate run ${sourceArg} --run-id ${runId}`);
  const t = report.totals;
  const inv = report.invocation;
  ctx.out.info(
    [
      `run ${runId}: ${t.uploaded} uploaded (${formatBytes(t.uploadedBytes)}), ${t.refused} refused, ` +
        `${t.failed} failed, ${t.skipped} skipped, ${t.unfinished} unfinished, of ${t.files}`,
      `this invocation: ${inv.files} file(s), ${formatBytes(inv.bytes)} in ${formatDuration(inv.seconds)} ` +
        `(${inv.filesPerSecond} files/s, ${inv.mibPerSecond} MiB/s)`,
      `report: ${report.reportJson}`,
      `        ${report.reportCsv}`,
    ].join("\n"),
  );
  ctx.out.result(report, "");
  const complete = t.uploaded === t.files;
  if (!complete && t.failed + t.unfinished > 0) ctx.out.info(`run again with --run-id ${runId} to retry what failed`);
  return complete ? EXIT.ok : EXIT.failed;
}

/**
 * The rehearsal: the assessment, then every eligible file read and hashed (the source is readable end
 * to end), and each go owner's token minted and used once (the credentials work). Nothing is uploaded
 * and no journal is written.
 */
async function dryRun(ctx: CommandContext, sourceArg: string): Promise<number> {
  const { document, assessments, admin } = await assessSource(ctx, sourceArg, {
    rate: DEFAULT_RATE_MIBPS,
    filesPerSecond: DEFAULT_FILES_PER_SECOND,
  });
  const tokens = new OwnerTokens(admin, "migrate:dry-run");
  const owners: { userId: string; verdict: string; tokenOk: boolean; error?: string }[] = [];
  for (const a of assessments) {
    if (a.eligibleFiles === 0) {
      owners.push({ userId: a.userId, verdict: a.verdict, tokenOk: false, error: "nothing to upload" });
      continue;
    }
    try {
      await getUsage(admin.withAuth(tokens.forOwner(a.userId)));
      owners.push({ userId: a.userId, verdict: a.verdict, tokenOk: true });
    } catch (err) {
      owners.push({ userId: a.userId, verdict: a.verdict, tokenOk: false, error: (err as Error).message });
    }
  }
  const eligible = assessments.flatMap((a) => a.findings.filter((f) => !f.refusal).map((f) => f.entry));
  const progress = new Progress(ctx.out, {
    title: "dry run: hashing",
    totalBytes: eligible.reduce((s, e) => s + (e.size ?? 0), 0),
    totalFiles: eligible.length,
  });
  const files: {
    path: string;
    userId: string;
    size: number | null;
    sha256: string | null;
    outcome: string;
    reason?: string;
  }[] = [];
  const started = performance.now();
  try {
    for (const a of assessments) {
      for (const f of a.findings) {
        if (f.refusal) {
          files.push({
            path: f.entry.path,
            userId: a.userId,
            size: f.entry.size,
            sha256: null,
            outcome: "refused",
            reason: `${f.refusal.code}: ${f.refusal.message}`,
          });
          continue;
        }
        const bar = progress.file(`${a.userId}/${f.entry.sourcePath}`, f.entry.size ?? 0);
        try {
          const sha256 = await sha256File(f.entry.path, { signal: ctx.signal, onBytes: (n) => bar.add(n) });
          bar.finish(true);
          files.push({ path: f.entry.path, userId: a.userId, size: f.entry.size, sha256, outcome: "would_upload" });
        } catch (err) {
          bar.finish(false);
          if (ctx.signal.aborted) throw interrupted("nothing was uploaded");
          files.push({
            path: f.entry.path,
            userId: a.userId,
            size: f.entry.size,
            sha256: null,
            outcome: "unreadable",
            reason: (err as Error).message,
          });
        }
      }
    }
  } finally {
    progress.stop();
  }
  const seconds = (performance.now() - started) / 1000;
  const wouldUpload = files.filter((f) => f.outcome === "would_upload").length;
  const ok = document.verdict === "go" && owners.every((x) => x.tokenOk) && wouldUpload === files.length;
  ctx.out.info(
    [
      `dry run: ${wouldUpload} of ${document.files} file(s) would be uploaded; ` +
        `read and hashed ${formatBytes(document.eligibleBytes)} in ${formatDuration(seconds)}`,
      ...owners.map(
        (x) => `  ${x.userId}: ${x.verdict}, token ${x.tokenOk ? "ok" : `not checked/failed (${x.error})`}`,
      ),
      ...files.filter((f) => f.outcome !== "would_upload").map((f) => `  ${f.outcome}: ${f.path}: ${f.reason}`),
      `verdict: ${ok ? "go" : document.verdict === "go" ? "partial" : document.verdict}`,
    ].join("\n"),
  );
  ctx.out.result({ dryRun: true, assessment: document, owners, files }, "");
  return ok ? EXIT.ok : EXIT.failed;
}

function openRun(runId: string, dirOption: string | undefined): Journal {
  return Journal.open(journalDir(dirOption), runId, { create: false });
}

/** Clients acting as each owner, with tokens minted for `purpose` (recorded as the admin actor). */
function ownerClients(ctx: CommandContext, purpose: string): (userId: string) => ApiClient {
  const admin = apiClient(ctx, requireAdminToken(ctx.config));
  const tokens = new OwnerTokens(admin, purpose);
  const clients = new Map<string, ApiClient>();
  return (userId) => {
    let client = clients.get(userId);
    if (!client) clients.set(userId, (client = admin.withAuth(tokens.forOwner(userId))));
    return client;
  };
}

async function status(ctx: CommandContext, runId: string, o: { journalDir?: string }): Promise<number> {
  const journal = openRun(runId, o.journalDir);
  try {
    const run = journal.run();
    if (!run) throw new CliError("run_not_found", `the journal of ${runId} holds no run`);
    const counts = journal.counts();
    const rows = journal.entries();
    const bytes = { total: 0, done: 0 };
    const owners = new Map<
      string,
      { userId: string; decision: string | null; files: number; done: number; bytes: number; doneBytes: number }
    >();
    for (const o of journal.owners())
      owners.set(o.user_id, { userId: o.user_id, decision: o.decision, files: 0, done: 0, bytes: 0, doneBytes: 0 });
    for (const r of rows) {
      bytes.total += r.size ?? 0;
      if (r.state === "done") bytes.done += r.size ?? 0;
      const owner = owners.get(r.user_id);
      if (!owner) continue;
      owner.files++;
      owner.bytes += r.size ?? 0;
      if (r.state === "done") {
        owner.done++;
        owner.doneBytes += r.size ?? 0;
      }
    }
    const activePid = journal.busyElsewhere();
    // A run left "running" by a process that is gone was killed: say so rather than repeat the journal.
    const state = run.state === "running" && activePid === null ? "interrupted" : run.state;
    const paths = runPaths(journalDir(o.journalDir), runId);
    const problems = rows
      .filter((r) => r.state === "failed" || r.state === "refused" || r.state === "skipped")
      .map(reportFile);
    const document = {
      runId,
      source: run.source,
      server: run.server_url,
      state,
      active: activePid !== null,
      pid: activePid,
      createdAt: new Date(run.created_at).toISOString(),
      updatedAt: new Date(run.updated_at).toISOString(),
      files: rows.length,
      counts,
      bytes,
      owners: [...owners.values()],
      problems,
      journal: journal.path,
      report: { json: paths.reportJson, csv: paths.reportCsv },
    };
    ctx.out.info(
      [
        `run ${runId} (${state}${activePid ? `, driven by process ${activePid}` : ""}) ` +
          `from ${run.source} to ${run.server_url}`,
        `files: ${rows.length}; done ${counts.done}, in progress ${counts.creating + counts.uploading}, ` +
          `pending ${counts.pending}, refused ${counts.refused}, failed ${counts.failed}, ` +
          `skipped ${counts.skipped}, rolled back ${counts.rolled_back}`,
        `bytes: ${formatBytes(bytes.done)} of ${formatBytes(bytes.total)}`,
        table([
          ["OWNER", "DECISION", "DONE", "BYTES"],
          ...[...owners.values()].map((x) => [
            x.userId,
            x.decision ?? "-",
            `${x.done}/${x.files}`,
            `${formatBytes(x.doneBytes)}/${formatBytes(x.bytes)}`,
          ]),
        ]),
        ...problems.slice(0, 20).map((p) => `  ${p.outcome}: ${p.path}: ${p.reasonCode}: ${p.reason}`),
        ...(problems.length > 20 ? [`  … and ${problems.length - 20} more (see --json)`] : []),
      ].join("\n"),
    );
    ctx.out.result(document, "");
    return EXIT.ok;
  } finally {
    journal.close();
  }
}

async function verify(
  ctx: CommandContext,
  runId: string,
  o: { journalDir?: string; deep?: boolean; concurrency: string },
): Promise<number> {
  const concurrency = whole(o.concurrency, "--concurrency", 64);
  const journal = openRun(runId, o.journalDir);
  try {
    const clientFor = ownerClients(ctx, `migrate-verify:${runId}`);
    const report = await verifyRun(ctx, journal, clientFor, { deep: Boolean(o.deep), concurrency });
    const bad = report.files.filter((f) => !f.ok);
    ctx.out.info(
      [
        `verify ${runId}${report.deep ? " (deep)" : ""}: ${report.ok} of ${report.checked} imported file(s) ok; ` +
          `${report.notImported} never imported; ${report.unexpected.length} unexpected file(s) on the server`,
        ...bad.map((f) => `  ${f.userId} ${f.fileId} ${f.path}: ${f.problems.join("; ")}`),
        ...report.unexpected.map((u) => `  unexpected: ${u.userId} ${u.fileId} ${u.filename}`),
      ].join("\n"),
    );
    ctx.out.result(report, "");
    return bad.length === 0 && report.unexpected.length === 0 ? EXIT.ok : EXIT.failed;
  } finally {
    journal.close();
  }
}

async function rollback(
  ctx: CommandContext,
  runId: string,
  o: { journalDir?: string; yes?: boolean },
): Promise<number> {
  const journal = openRun(runId, o.journalDir);
  try {
    const busy = journal.busyElsewhere();
    if (busy) throw new CliError("run_in_progress", `run ${runId} is being driven by process ${busy}; stop it first`);
    const clientFor = ownerClients(ctx, `migrate-rollback:${runId}`);
    const report = await rollbackRun(ctx, journal, clientFor, { apply: Boolean(o.yes) });
    const bytes = report.removed.reduce((s, f) => s + (f.size ?? 0), 0);
    const files = `${report.removed.length} file(s) (${formatBytes(bytes)})`;
    const uploads = `${report.abortedUploads.length} upload(s)`;
    ctx.out.info(
      [
        report.applied
          ? `rollback ${runId}: removed ${files}, aborted ${uploads}; ${report.alreadyGone} already gone`
          : `rollback ${runId} (preview, nothing changed): would remove ${files} and abort ${uploads}; ` +
            "pass --yes to do it",
        ...report.owners.map(
          (x) =>
            `  ${x.userId}: used ${formatBytes(x.usageBefore?.usedBytes ?? 0)} → ` +
            formatBytes(x.usageAfter?.usedBytes ?? 0) +
            (x.usageAtRunStart ? ` (before the run: ${formatBytes(x.usageAtRunStart.usedBytes)})` : ""),
        ),
      ].join("\n"),
    );
    ctx.out.result(report, "");
    return EXIT.ok;
  } finally {
    journal.close();
  }
}
