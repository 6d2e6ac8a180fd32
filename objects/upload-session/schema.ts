import { OUTBOX_SCHEMA } from "../shared/outbox";

/**
 * Schema steps of the session object (see `migrateSchema`). Append-only: a shipped step has run in live
 * objects, so never edit or reorder one; add a new step at the end.
 */
export const SESSION_SCHEMA: readonly string[] = [
  `CREATE TABLE session (
     id            INTEGER PRIMARY KEY CHECK (id = 1),
     upload_id     TEXT NOT NULL,
     user_id       TEXT NOT NULL,
     file_id       TEXT NOT NULL,
     r2_key        TEXT NOT NULL,
     r2_upload_id  TEXT,                 -- NULL for an empty file: nothing to assemble
     filename      TEXT NOT NULL,
     content_type  TEXT NOT NULL,
     size          INTEGER NOT NULL,
     part_size     INTEGER NOT NULL,
     part_count    INTEGER NOT NULL,
     sha256        TEXT,
     metadata      TEXT,
     protocol      TEXT NOT NULL,
     status        TEXT NOT NULL,
     ttl_ms        INTEGER NOT NULL,
     created_at    INTEGER NOT NULL,
     updated_at    INTEGER NOT NULL,
     expires_at    INTEGER NOT NULL,
     completed_at  INTEGER,
     file          TEXT,                 -- the FileRecord as JSON, once completed
     failure       TEXT,                 -- why it failed or was aborted
     version       INTEGER NOT NULL DEFAULT 0
   );
   CREATE TABLE parts (
     part_number  INTEGER PRIMARY KEY,
     size         INTEGER NOT NULL,
     etag         TEXT NOT NULL,
     uploaded_at  INTEGER NOT NULL
   );`,
  OUTBOX_SCHEMA,
  // The tus front door: a length the client may declare later, the creation metadata as sent, the lease
  // that makes one writer at a time the only one allowed to add bytes, and the unaligned tail of the
  // bytes received: the bytes past the last whole part, in temporary R2 objects (a new key per write),
  // in order.
  `ALTER TABLE session ADD COLUMN length_deferred INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE session ADD COLUMN tus_metadata TEXT;
   ALTER TABLE session ADD COLUMN write_seq INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE session ADD COLUMN lease_token TEXT;
   ALTER TABLE session ADD COLUMN lease_expires_at INTEGER;
   ALTER TABLE session ADD COLUMN terminated_at INTEGER;
   ALTER TABLE session ADD COLUMN max_length INTEGER;
   CREATE TABLE tail_segments (
     seq   INTEGER PRIMARY KEY,
     key   TEXT NOT NULL UNIQUE,
     size  INTEGER NOT NULL CHECK (size > 0)
   );`,
  // Keeping the parts record true to R2 (issue 17). R2 replaces part n the moment a write of n reaches
  // uploadPart, before the Worker knows whether it will be accepted; each ticket for part n is numbered
  // (`part_attempts`), and only the write of the latest ticket, with no other write of n reported since,
  // may record n (see native-upload.ts). `completion_attempts` numbers the completions begun, so a
  // Worker whose assembly succeeded after its completion was handed back can still finish it.
  `CREATE TABLE part_attempts (
     part_number  INTEGER PRIMARY KEY,
     attempt      INTEGER NOT NULL
   );
   ALTER TABLE session ADD COLUMN completion_attempts INTEGER NOT NULL DEFAULT 0;`,
];
