import { OUTBOX_SCHEMA } from "../shared/outbox";

/**
 * Schema steps of the account object (see `migrateSchema`). Append-only: a shipped step has run in live
 * objects, so never edit or reorder one; add a new step at the end.
 */
export const ACCOUNT_SCHEMA: readonly string[] = [
  `CREATE TABLE account (
     id       INTEGER PRIMARY KEY CHECK (id = 1),
     user_id  TEXT NOT NULL,
     version  INTEGER NOT NULL DEFAULT 0,      -- bumped on every ledger change; orders D1 checkpoints
     limit_bytes INTEGER NOT NULL DEFAULT 0    -- the quota last applied, for checkpoints made without a policy
   );
   CREATE TABLE reservations (
     upload_id   TEXT PRIMARY KEY,
     file_id     TEXT NOT NULL,
     filename    TEXT NOT NULL,
     bytes       INTEGER NOT NULL CHECK (bytes >= 0),
     state       TEXT NOT NULL CHECK (state IN ('held', 'committed', 'released')),
     created_at  INTEGER NOT NULL,
     settled_at  INTEGER,
     check_at    INTEGER                        -- when to ask the upload session whether it still needs this
   );
   CREATE INDEX reservations_held ON reservations (state, created_at DESC, upload_id DESC);
   CREATE INDEX reservations_check ON reservations (state, check_at);
   CREATE TABLE files (
     file_id     TEXT PRIMARY KEY,
     record      TEXT NOT NULL,                 -- the FileRecord as JSON
     bytes       INTEGER NOT NULL CHECK (bytes >= 0),
     state       TEXT NOT NULL CHECK (state IN ('live', 'removed')),
     removed_at  INTEGER
   );
   CREATE INDEX files_state ON files (state);`,
  OUTBOX_SCHEMA,
  `CREATE TABLE overrides (
     key    TEXT PRIMARY KEY,              -- an AccountPolicy key set for this user by an administrator
     value  TEXT NOT NULL                  -- JSON
   );
   CREATE TABLE rate_state (
     budget  TEXT PRIMARY KEY,             -- 'requests' | 'bytes'
     tat     REAL NOT NULL                 -- GCRA theoretical arrival time, epoch ms
   );`,
];
