/**
 * R2 clean-up an object owes after a state change (an aborted multipart upload, a removed file, a tus
 * upload's temporary tail objects). Jobs wait in the object's outbox under the `r2` topic until they
 * succeed, so each one must be idempotent: deleting what is already gone, or aborting what R2 no longer
 * knows, is success.
 */

/** One R2 clean-up job. */
export type R2Job =
  /** Abort a multipart upload (its uploaded parts go with it). */
  | { op: "abort"; key: string; uploadId: string }
  /** Delete one object. */
  | { op: "delete"; key: string }
  /** Every object under a prefix: the temporary tail objects of a tus upload, including any a dead writer left. */
  | { op: "deletePrefix"; prefix: string };

/**
 * Runs a batch of jobs against the bucket, one after another in order. Throws on the first job that
 * fails, so the outbox retries the whole batch later (the jobs before it are idempotent).
 */
export async function runR2Jobs(bucket: R2Bucket, jobs: readonly R2Job[]): Promise<void> {
  for (const job of jobs) {
    if (job.op === "delete") await bucket.delete(job.key);
    else if (job.op === "deletePrefix") await deletePrefix(bucket, job.prefix);
    else await abortMultipart(bucket, job.key, job.uploadId);
  }
}

/** Deletes every object under `prefix`, a page at a time. */
async function deletePrefix(bucket: R2Bucket, prefix: string): Promise<void> {
  let cursor: string | undefined;
  do {
    const listed = await bucket.list({ prefix, cursor, limit: 1000 });
    if (listed.objects.length > 0) await bucket.delete(listed.objects.map((o) => o.key));
    cursor = listed.truncated ? listed.cursor : undefined;
  } while (cursor);
}

/** Aborts an R2 multipart upload; one that R2 no longer knows (already aborted or completed) is done. */
async function abortMultipart(bucket: R2Bucket, key: string, uploadId: string): Promise<void> {
  try {
    await bucket.resumeMultipartUpload(key, uploadId).abort();
  } catch (err) {
    if (/NoSuchUpload|does not exist|not found/i.test(String(err))) return;
    throw err;
  }
}
