-- Backup download tasks: one file per (backup, replica set).
-- status: 0 waiting, 1 running, 2 done, 3 failed, 4 waiting to retry
-- (the API's BackupDownloadTask.Status).
CREATE TABLE download_tasks (
    id               BIGSERIAL PRIMARY KEY,
    backup_id        BIGINT NOT NULL REFERENCES backups (id),
    instance_id      TEXT NOT NULL,
    replica_set_id   TEXT NOT NULL,
    status           BIGINT NOT NULL,
    percent          BIGINT NOT NULL DEFAULT 0,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,          -- unix seconds; when it may be claimed
    lease_owner      TEXT,                      -- worker holding it while running
    lease_expires_at BIGINT,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    file_path        TEXT,                      -- published file, once done
    file_size        BIGINT,
    file_sha256      TEXT,
    file_expires_at  BIGINT,
    failure          TEXT
);

CREATE INDEX download_tasks_instance ON download_tasks (instance_id, created_at);
CREATE INDEX download_tasks_backup ON download_tasks (backup_id, replica_set_id);
CREATE INDEX download_tasks_queue ON download_tasks (status, next_attempt_at);
