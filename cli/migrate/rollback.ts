// `migrate rollback`: deletes exactly the files a run created, through the public API as each owner
// (so the quota is refunded and every delete is in the owner's audit log), and aborts the run's
// unfinished uploads (so their reservations are released). What the run created is the union of the
// journal and of the files whose metadata names the run, so a file the journal lost track of is not
// left behind. Running it again finds nothing left and changes nothing.
import type { ApiClient } from "../api-client.ts";
import type { CommandContext } from "../context.ts";
import { abortUpload, deleteFile, getUpload, getUsage, type Usage } from "../server-api.ts";
import type { Journal } from "./journal.ts";
import { activeUploadsOfRun, filesOfRun } from "./server-scan.ts";

export interface RemovedFile {
  userId: string;
  fileId: string;
  path: string | null;
  filename: string | null;
  size: number | null;
}

export interface OwnerRollback {
  userId: string;
  usageBefore: Usage | null;
  usageAfter: Usage | null;
  /** The usage the run saw first: what the owner should be back to. */
  usageAtRunStart: Usage | null;
}

export interface RollbackReport {
  runId: string;
  /** False for a preview (no --yes): nothing was changed. */
  applied: boolean;
  removed: RemovedFile[];
  alreadyGone: number;
  abortedUploads: string[];
  owners: OwnerRollback[];
}

/** Rolls a run back (or, without `apply`, says what a rollback would remove). */
export async function rollbackRun(
  ctx: CommandContext,
  journal: Journal,
  clientFor: (userId: string) => ApiClient,
  options: { apply: boolean },
): Promise<RollbackReport> {
  const runId = journal.runId;
  const rows = journal.entries();
  const ownerIds = [
    ...new Set([
      ...journal.owners().map((o) => o.user_id),
      ...rows.filter((r) => r.upload_id || r.file_id).map((r) => r.user_id),
    ]),
  ];
  const report: RollbackReport = {
    runId,
    applied: options.apply,
    removed: [],
    alreadyGone: 0,
    abortedUploads: [],
    owners: [],
  };

  for (const userId of ownerIds.sort()) {
    const api = clientFor(userId);
    const mine = rows.filter((r) => r.user_id === userId);
    const usageBefore = await getUsage(api);
    const atStart = journal.owner(userId)?.usage_before;

    // Files: what the journal says the run finished, plus what the server says carries the run id.
    const targets = new Map<string, RemovedFile>();
    for (const r of mine) {
      if (r.state === "done" && r.file_id) {
        targets.set(r.file_id, { userId, fileId: r.file_id, path: r.path, filename: r.filename, size: r.size });
      }
    }
    for (const f of await filesOfRun(api, runId)) {
      if (!targets.has(f.id))
        targets.set(f.id, { userId, fileId: f.id, path: null, filename: f.filename, size: f.size });
    }
    // Uploads: the journal's unfinished ones, plus any active upload carrying the run id.
    const uploads = new Set(
      mine
        .filter((r) => r.upload_id && r.state !== "done" && r.state !== "rolled_back")
        .map((r) => r.upload_id as string),
    );
    for (const u of await activeUploadsOfRun(api, runId)) uploads.add(u.uploadId);

    if (!options.apply) {
      report.removed.push(...targets.values());
      report.abortedUploads.push(...uploads);
      report.owners.push({
        userId,
        usageBefore,
        usageAfter: usageBefore,
        usageAtRunStart: atStart ? JSON.parse(atStart) : null,
      });
      continue;
    }
    for (const uploadId of uploads) {
      const outcome = await abortUpload(api, uploadId);
      if (outcome === "aborted") report.abortedUploads.push(uploadId);
      if (outcome === "completed") {
        // It completed after the journal last looked (the run died before recording it): its file goes too.
        const view = await getUpload(api, uploadId);
        if (view?.file && !targets.has(view.file.id)) {
          targets.set(view.file.id, {
            userId,
            fileId: view.file.id,
            path: null,
            filename: view.file.filename,
            size: view.file.size,
          });
        }
      }
    }
    for (const target of targets.values()) {
      if (await deleteFile(api, target.fileId)) {
        report.removed.push(target);
        ctx.out.info(`removed ${userId}/${target.fileId} ${target.filename ?? ""}`);
      } else {
        report.alreadyGone++;
      }
    }
    // The journal remembers that these entries are gone, so a second rollback does not ask again.
    journal.db.exec("BEGIN");
    for (const r of mine) {
      if (r.state !== "skipped" && r.state !== "refused" && r.state !== "rolled_back")
        journal.update(r.entry_id, { state: "rolled_back" });
    }
    journal.db.exec("COMMIT");
    report.owners.push({
      userId,
      usageBefore,
      usageAfter: await getUsage(api),
      usageAtRunStart: atStart ? (JSON.parse(atStart) as Usage) : null,
    });
  }
  if (options.apply) journal.setRunState("rolled_back");
  return report;
}
