// The metadata keys every imported file carries, so the server side (and verify, rollback) can find a
// run's files: the run id, the journal entry, and the path below the owner's folder (the server keeps
// only the last segment as the filename).
export const META_RUN = "migrationRunId";
export const META_ENTRY = "migrationEntry";
export const META_PATH = "migrationPath";
