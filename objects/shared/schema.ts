/**
 * Brings an object's SQLite schema up to date. `steps[i]` moves the schema from version i to i + 1; the
 * version reached is stored in the object itself, so a step runs exactly once per object, in order, in
 * the same transaction as the version bump. Steps are append-only: never edit a shipped one.
 */
export function migrateSchema(storage: DurableObjectStorage, steps: readonly string[]): void {
  const sql = storage.sql;
  storage.transactionSync(() => {
    sql.exec("CREATE TABLE IF NOT EXISTS _schema (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)");
    const row = sql.exec<{ version: number }>("SELECT version FROM _schema WHERE id = 1").toArray()[0];
    const current = row?.version ?? 0;
    if (current > steps.length) {
      // Code older than the data: refuse rather than guess (a rollback of a deploy that migrated).
      throw new Error(`object schema version ${current} is newer than this code (${steps.length})`);
    }
    for (let v = current; v < steps.length; v++) sql.exec(steps[v]);
    sql.exec(
      "INSERT INTO _schema (id, version) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET version = excluded.version",
      steps.length,
    );
  });
}

/** Reads the single row of a one-row table, or null. */
export function oneRow<T extends Record<string, SqlStorageValue>>(
  sql: SqlStorage,
  query: string,
  ...params: SqlStorageValue[]
): T | null {
  return sql.exec<T>(query, ...params).toArray()[0] ?? null;
}
