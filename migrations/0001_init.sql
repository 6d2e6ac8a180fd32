-- durable-uploads: the queryable index.
-- The Durable Objects own the truth (ledger, session state) and checkpoint it here through their outboxes.
-- Every checkpoint write is idempotent: rows carry the version of the object state they reflect and an
-- older version never overwrites a newer one; audit rows have ids made by the object, so a retried
-- flush inserts nothing twice. Times are Unix epoch milliseconds.

CREATE TABLE files (
  id          TEXT PRIMARY KEY,
  user_id     TEXT NOT NULL,
  upload_id   TEXT,
  filename    TEXT NOT NULL,
  r2_key      TEXT NOT NULL UNIQUE,
  mime_type   TEXT NOT NULL,
  file_size   INTEGER NOT NULL CHECK (file_size >= 0),
  checksum    TEXT,                                  -- hex SHA-256 when the client declared one
  etag        TEXT,                                  -- R2's ETag of the assembled object
  metadata    TEXT,                                  -- JSON string map from the client
  status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deleted')),
  deleted_at  INTEGER,
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  version     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX files_user_created ON files (user_id, status, created_at DESC, id DESC);

CREATE TABLE multipart_uploads (
  upload_id       TEXT PRIMARY KEY,
  file_id         TEXT NOT NULL,
  user_id         TEXT NOT NULL,
  r2_key          TEXT NOT NULL,
  filename        TEXT NOT NULL,
  mime_type       TEXT NOT NULL,
  total_size      INTEGER,                             -- NULL while a tus upload defers its length
  part_size       INTEGER NOT NULL,
  parts_uploaded  INTEGER NOT NULL DEFAULT 0,
  bytes_received  INTEGER NOT NULL DEFAULT 0,
  session_data    TEXT,                                -- JSON: declared sha256, metadata, R2 upload id
  protocol        TEXT NOT NULL DEFAULT 'native' CHECK (protocol IN ('native', 'tus')),
  status          TEXT NOT NULL CHECK (status IN ('active', 'completing', 'completed', 'aborted', 'expired', 'failed')),
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL,
  expires_at      INTEGER NOT NULL,
  completed_at    INTEGER,
  version         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX multipart_uploads_user_created ON multipart_uploads (user_id, status, created_at DESC, upload_id DESC);
CREATE INDEX multipart_uploads_status_expires ON multipart_uploads (status, expires_at);

CREATE TABLE file_access_logs (
  id                 TEXT PRIMARY KEY,               -- made by the writer; retries reuse it
  file_id            TEXT,
  upload_id          TEXT,
  user_id            TEXT NOT NULL,
  action             TEXT NOT NULL,
  success            INTEGER NOT NULL CHECK (success IN (0, 1)),
  error_code         TEXT,
  error_message      TEXT,
  bytes_transferred  INTEGER NOT NULL DEFAULT 0,
  duration_ms        INTEGER,
  ip_address         TEXT,
  user_agent         TEXT,
  metadata           TEXT,
  timestamp          INTEGER NOT NULL
);
CREATE INDEX file_access_logs_user_time ON file_access_logs (user_id, timestamp DESC, id DESC);
CREATE INDEX file_access_logs_action_time ON file_access_logs (action, timestamp DESC);
CREATE INDEX file_access_logs_file ON file_access_logs (file_id);
CREATE INDEX file_access_logs_upload ON file_access_logs (upload_id);

-- Checkpoint of each user's ledger (the UserAccount object is authoritative).
CREATE TABLE user_quotas (
  user_id         TEXT PRIMARY KEY,
  limit_bytes     INTEGER NOT NULL,
  used_bytes      INTEGER NOT NULL DEFAULT 0,
  reserved_bytes  INTEGER NOT NULL DEFAULT 0,
  file_count      INTEGER NOT NULL DEFAULT 0,
  active_uploads  INTEGER NOT NULL DEFAULT 0,
  ledger_version  INTEGER NOT NULL DEFAULT 0,
  updated_at      INTEGER NOT NULL
);
