-- durable-uploads: runtime settings changed by admins, and indexes for the admin reports.
--
-- Settings are versioned and append-only: every change (an update or a rollback) adds the next version,
-- 1, 2, 3, … and nothing is ever updated or deleted, so the table is its own audit trail. A row holds
-- ONLY the keys an admin set (a partial object); the effective settings are the Worker's vars overlaid
-- with the latest row's keys, so a key an admin never set follows the vars across deploys. No row at all
-- ("version 0") means the vars apply unchanged. Times are Unix epoch milliseconds.

CREATE TABLE settings_versions (
  version         INTEGER PRIMARY KEY CHECK (version >= 1),
  -- The partial settings object after this change: the keys set by admins and their values.
  settings        TEXT NOT NULL CHECK (json_valid(settings) AND json_type(settings) = 'object'),
  changed_by      TEXT NOT NULL CHECK (length(changed_by) BETWEEN 1 AND 128),
  changed_at      INTEGER NOT NULL,
  kind            TEXT NOT NULL CHECK (kind IN ('update', 'rollback')),
  -- For a rollback: the version whose settings this one restores.
  rolled_back_to  INTEGER REFERENCES settings_versions (version),
  CHECK ((kind = 'rollback') = (rolled_back_to IS NOT NULL))
);

-- Versions are consecutive: a writer computes MAX(version) + 1 under a guard on the version it read, so a
-- gap or a reuse can only come from a bug; refuse it here too.
CREATE TRIGGER settings_versions_consecutive
BEFORE INSERT ON settings_versions
WHEN NEW.version <> (SELECT COALESCE(MAX(version), 0) + 1 FROM settings_versions)
BEGIN
  SELECT RAISE(ABORT, 'settings_versions: version must be MAX(version) + 1');
END;

-- Append-only: history is what admins audit and roll back to, so it must not be rewritten.
CREATE TRIGGER settings_versions_no_update
BEFORE UPDATE ON settings_versions
BEGIN
  SELECT RAISE(ABORT, 'settings_versions is append-only');
END;

CREATE TRIGGER settings_versions_no_delete
BEFORE DELETE ON settings_versions
BEGIN
  SELECT RAISE(ABORT, 'settings_versions is append-only');
END;

-- The admin audit search (GET /v1/admin/audit) pages across all users newest first by (timestamp, id),
-- and the admin stats read the last 24 h of events; 0001's indexes all lead with user_id, action or
-- file/upload id, so without this both would scan the whole log.
CREATE INDEX file_access_logs_time ON file_access_logs (timestamp DESC, id DESC);
