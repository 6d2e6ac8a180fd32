// The final report of a run: every file with its new file id, size, sha256 and outcome, as JSON (the
// --json document) and as CSV next to the journal, for whoever signs the migration off.
import { writeFileAtomic } from "../resume-state.ts";
import type { Usage } from "../server-api.ts";
import type { EntryRow, EntryState, Journal, RunRow } from "./journal.ts";

export type Outcome = "uploaded" | "refused" | "failed" | "skipped" | "unfinished" | "rolled_back";

const OUTCOME: Record<EntryState, Outcome> = {
  pending: "unfinished",
  creating: "unfinished",
  uploading: "unfinished",
  done: "uploaded",
  refused: "refused",
  failed: "failed",
  skipped: "skipped",
  rolled_back: "rolled_back",
};

export interface ReportFile {
  path: string;
  sourcePath: string;
  location: string;
  userId: string;
  filename: string;
  contentType: string;
  fileId: string | null;
  size: number | null;
  sha256: string | null;
  outcome: Outcome;
  reasonCode: string | null;
  reason: string | null;
}

export interface OwnerSummary {
  userId: string;
  decision: string | null;
  reason: string | null;
  files: number;
  uploadedFiles: number;
  uploadedBytes: number;
  usageBefore: Usage | null;
  usageAfter: Usage | null;
}

export interface RunReport {
  runId: string;
  source: string;
  server: string;
  state: RunRow["state"];
  journal: string;
  reportJson: string;
  reportCsv: string;
  generatedAt: string;
  /** What this invocation moved (a resumed run counts only its own share). */
  invocation: { seconds: number; files: number; bytes: number; filesPerSecond: number; mibPerSecond: number };
  totals: Record<Outcome, number> & { files: number; uploadedBytes: number };
  owners: OwnerSummary[];
  files: ReportFile[];
}

/** One journal entry as a report row. */
export function reportFile(row: EntryRow): ReportFile {
  return {
    path: row.path,
    sourcePath: row.source_path,
    location: row.location,
    userId: row.user_id,
    filename: row.filename,
    contentType: row.content_type,
    fileId: row.file_id,
    size: row.size,
    sha256: row.sha256,
    outcome: OUTCOME[row.state],
    reasonCode: row.reason_code,
    reason: row.reason,
  };
}

/** Builds the report from the journal (the only record that counts). */
export function buildReport(
  journal: Journal,
  paths: { reportJson: string; reportCsv: string },
  invocation: { seconds: number; files: number; bytes: number },
  usageAfter: Map<string, Usage>,
): RunReport {
  const run = journal.run() as RunRow;
  const files = journal.entries().map(reportFile);
  const totals = {
    files: files.length,
    uploadedBytes: 0,
    uploaded: 0,
    refused: 0,
    failed: 0,
    skipped: 0,
    unfinished: 0,
    rolled_back: 0,
  };
  for (const f of files) {
    totals[f.outcome]++;
    if (f.outcome === "uploaded") totals.uploadedBytes += f.size ?? 0;
  }
  const owners = new Map<string, OwnerSummary>();
  for (const o of journal.owners()) {
    owners.set(o.user_id, {
      userId: o.user_id,
      decision: o.decision,
      reason: o.reason,
      files: 0,
      uploadedFiles: 0,
      uploadedBytes: 0,
      usageBefore: o.usage_before ? (JSON.parse(o.usage_before) as Usage) : null,
      usageAfter: usageAfter.get(o.user_id) ?? null,
    });
  }
  for (const f of files) {
    const owner = owners.get(f.userId);
    if (!owner) continue;
    owner.files++;
    if (f.outcome === "uploaded") {
      owner.uploadedFiles++;
      owner.uploadedBytes += f.size ?? 0;
    }
  }
  const seconds = Math.max(invocation.seconds, 0.001);
  return {
    runId: run.run_id,
    source: run.source,
    server: run.server_url,
    state: run.state,
    journal: journal.path,
    reportJson: paths.reportJson,
    reportCsv: paths.reportCsv,
    generatedAt: new Date().toISOString(),
    invocation: {
      seconds: Math.round(invocation.seconds * 1000) / 1000,
      files: invocation.files,
      bytes: invocation.bytes,
      filesPerSecond: Math.round((invocation.files / seconds) * 100) / 100,
      mibPerSecond: Math.round((invocation.bytes / 1048576 / seconds) * 100) / 100,
    },
    totals,
    owners: [...owners.values()],
    files,
  };
}

/** One CSV field (RFC 4180): quoted when it holds a comma, quote, line break or edge space. */
function csvField(value: string | number | null): string {
  if (value === null) return "";
  const text = String(value);
  return /[",\r\n]|^\s|\s$/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export const CSV_COLUMNS = [
  "path",
  "userId",
  "filename",
  "fileId",
  "size",
  "sha256",
  "outcome",
  "reasonCode",
  "reason",
] as const;

/** The report's files as CSV (RFC 4180), one row per source entry under a header. */
export function reportCsv(files: ReportFile[]): string {
  const lines = [CSV_COLUMNS.join(",")];
  for (const f of files) {
    lines.push(
      [f.path, f.userId, f.filename, f.fileId, f.size, f.sha256, f.outcome, f.reasonCode, f.reason]
        .map(csvField)
        .join(","),
    );
  }
  return `${lines.join("\n")}\n`;
}

/** Writes both reports atomically next to the journal. */
export function writeReports(report: RunReport): void {
  writeFileAtomic(report.reportJson, `${JSON.stringify(report, null, 2)}\n`);
  writeFileAtomic(report.reportCsv, reportCsv(report.files));
}
