-- Backup download tasks: one file per (backup, replica set).
-- status: 0 waiting, 1 running, 2 done, 3 failed, 4 waiting to retry
-- (the API's BackupDownloadTask.Status).
CREATE TABLE download_tasks (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    backup_id        INTEGER NOT NULL REFERENCES backups (id),
    instance_id      TEXT NOT NULL,
    replica_set_id   TEXT NOT NULL,
    status           INTEGER NOT NULL,
    percent          INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,          -- unix seconds; when it may be claimed
    lease_owner      TEXT,                      -- worker holding it while running
    lease_expires_at INTEGER,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    file_path        TEXT,                      -- published file, once done
    file_size        INTEGER,
    file_sha256      TEXT,
    file_expires_at  INTEGER,
    failure          TEXT
);

CREATE INDEX download_tasks_instance ON download_tasks (instance_id, created_at);
CREATE INDEX download_tasks_backup ON download_tasks (backup_id, replica_set_id);
CREATE INDEX download_tasks_queue ON download_tasks (status, next_attempt_at);
