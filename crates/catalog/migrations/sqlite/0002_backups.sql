-- Logical backups of registered instances.
-- status: 0 queued, 1 running, 2 succeeded, 3 failed, 4 deleted.
-- backup_type: 0 automatic, 1 manual. method: 0 logical.
CREATE TABLE backups (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,  -- BackId
    instance_id      TEXT NOT NULL,
    name             TEXT NOT NULL,
    method           INTEGER NOT NULL,
    backup_type      INTEGER NOT NULL,
    status           INTEGER NOT NULL,
    remark           TEXT NOT NULL DEFAULT '',
    async_request_id TEXT NOT NULL UNIQUE,
    storage_prefix   TEXT NOT NULL,
    created_at       INTEGER NOT NULL,                   -- unix seconds
    started_at       INTEGER,
    finished_at      INTEGER,
    expires_at       INTEGER,                            -- NULL: kept until deleted
    retention_days   INTEGER NOT NULL,                   -- as requested (-2 forever, 0 the rule's)
    percent          INTEGER NOT NULL DEFAULT 0,
    raw_bytes        INTEGER NOT NULL DEFAULT 0,
    stored_bytes     INTEGER NOT NULL DEFAULT 0,
    failure          TEXT,
    UNIQUE (instance_id, name)
);

CREATE INDEX backups_instance ON backups (instance_id, status);
CREATE INDEX backups_status ON backups (status);
