// Finding a run's traces on the server by the metadata every imported file carries: the journal says
// what the run created, the server says what exists; verify and rollback look at both.
import type { ApiClient } from "../api-client.ts";
import { type FileInfo, getUpload, listActiveUploads, listFiles, type UploadView } from "../server-api.ts";
import { META_RUN } from "./metadata.ts";

/** The owner's live files whose metadata names this run. */
export async function filesOfRun(api: ApiClient, runId: string): Promise<FileInfo[]> {
  const found: FileInfo[] = [];
  for await (const file of listFiles(api)) if (file.metadata?.[META_RUN] === runId) found.push(file);
  return found;
}

/** The owner's uploads still holding a reservation that this run created. */
export async function activeUploadsOfRun(api: ApiClient, runId: string): Promise<UploadView[]> {
  const found: UploadView[] = [];
  for await (const upload of listActiveUploads(api)) {
    const view = await getUpload(api, upload.uploadId);
    if (view?.metadata?.[META_RUN] === runId) found.push(view);
  }
  return found;
}
