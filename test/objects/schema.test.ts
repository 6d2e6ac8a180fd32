// How an object's SQLite schema moves forward (objects/shared/schema.ts): each missing step once, in order,
// all or nothing; and storage written by newer code is refused rather than guessed at, so rolling back a
// deploy that migrated stops the object instead of letting old code misread new data.
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { migrateSchema } from "../../objects/shared/schema";

/** The schema version stored in an object's own storage. */
const versionOf = (storage: DurableObjectStorage) =>
  storage.sql.exec<{ version: number }>("SELECT version FROM _schema WHERE id = 1").one().version;

const probeRows = (storage: DurableObjectStorage) =>
  storage.sql
    .exec<{ step: number }>("SELECT step FROM probe ORDER BY rowid")
    .toArray()
    .map((r) => r.step);

/**
 * Runs `fn` in a new upload session, whose constructor has already brought its storage to the current
 * schema, with that schema's steps stood in for by statements that fail if they are ever run again,
 * followed by three new steps.
 */
function withMigratedObject(fn: (storage: DurableObjectStorage, steps: string[]) => void): Promise<void> {
  return runInDurableObject(env.UPLOAD_SESSION.get(env.UPLOAD_SESSION.newUniqueId()), (_o, state) => {
    const current = versionOf(state.storage);
    expect(current).toBeGreaterThan(0);
    const shipped = Array.from({ length: current }, (_, i) => `NOT SQL: shipped step ${i} must never run again`);
    fn(state.storage, [
      ...shipped,
      "CREATE TABLE probe (step INTEGER NOT NULL)",
      "INSERT INTO probe (step) VALUES (1)",
      "INSERT INTO probe (step) VALUES (2)",
    ]);
  });
}

describe("migrateSchema", () => {
  it("runs only the steps the storage lacks, once each and in order", async () => {
    await withMigratedObject((storage, steps) => {
      migrateSchema(storage, steps);
      expect(versionOf(storage)).toBe(steps.length);
      expect(probeRows(storage)).toEqual([1, 2]);
      // Run again (the next construction of the object): nothing is left to do.
      migrateSchema(storage, steps);
      expect(versionOf(storage)).toBe(steps.length);
      expect(probeRows(storage)).toEqual([1, 2]);
    });
  });

  it("is all or nothing: a failing step leaves neither the steps before it nor a version bump", async () => {
    await withMigratedObject((storage, steps) => {
      const before = versionOf(storage);
      expect(() => migrateSchema(storage, [...steps, "NOT SQL"])).toThrow();
      expect(versionOf(storage)).toBe(before);
      expect(storage.sql.exec("SELECT name FROM sqlite_master WHERE name = 'probe'").toArray()).toEqual([]);
    });
  });

  it("refuses a stored schema newer than the code, and changes nothing", async () => {
    await withMigratedObject((storage, steps) => {
      migrateSchema(storage, steps);
      const older = steps.slice(0, -1);
      expect(() => migrateSchema(storage, older)).toThrow(
        `object schema version ${steps.length} is newer than this code (${older.length})`,
      );
      expect(versionOf(storage)).toBe(steps.length);
      expect(probeRows(storage)).toEqual([1, 2]);
    });
  });
});

/**
 * Marks the object's storage as migrated by a newer deploy, then constructs the object's class again on
 * that storage, as the runtime does after a rollback to this code: it must refuse to start. (Evicting the
 * live instance would do the same, but the runtime then reports the refusal as an unhandled rejection.)
 */
async function refusesNewerStorage(stub: DurableObjectStub, className: string): Promise<void> {
  await runInDurableObject(stub, (instance: object, state) => {
    expect(instance.constructor.name).toBe(className);
    const newer = versionOf(state.storage) + 1;
    state.storage.sql.exec("UPDATE _schema SET version = ? WHERE id = 1", newer);
    const Class = instance.constructor as new (ctx: DurableObjectState, env: Env) => object;
    expect(() => new Class(state, env)).toThrow(`object schema version ${newer} is newer than this code`);
    expect(versionOf(state.storage)).toBe(newer);
  });
}

describe("an object whose storage a newer deploy migrated", () => {
  it("UploadSession refuses to start rather than run on a schema it does not know", async () => {
    await refusesNewerStorage(env.UPLOAD_SESSION.get(env.UPLOAD_SESSION.newUniqueId()), "UploadSession");
  });

  it("UserAccount refuses to start rather than run on a schema it does not know", async () => {
    await refusesNewerStorage(env.USER_ACCOUNT.get(env.USER_ACCOUNT.newUniqueId()), "UserAccount");
  });
});
