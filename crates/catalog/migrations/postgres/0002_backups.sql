-- Logical backups of registered instances.
-- status: 0 queued, 1 running, 2 succeeded, 3 failed, 4 deleted.
-- backup_type: 0 automatic, 1 manual. method: 0 logical.
CREATE TABLE backups (
    id               BIGSERIAL PRIMARY KEY,  -- BackId
    instance_id      TEXT NOT NULL,
    name             TEXT NOT NULL,
    method           BIGINT NOT NULL,
    backup_type      BIGINT NOT NULL,
    status           BIGINT NOT NULL,
    remark           TEXT NOT NULL DEFAULT '',
    async_request_id TEXT NOT NULL UNIQUE,
    storage_prefix   TEXT NOT NULL,
    created_at       BIGINT NOT NULL,                   -- unix seconds
    started_at       BIGINT,
    finished_at      BIGINT,
    expires_at       BIGINT,                            -- NULL: kept until deleted
    retention_days   BIGINT NOT NULL,                   -- as requested (-2 forever, 0 the rule's)
    percent          BIGINT NOT NULL DEFAULT 0,
    raw_bytes        BIGINT NOT NULL DEFAULT 0,
    stored_bytes     BIGINT NOT NULL DEFAULT 0,
    failure          TEXT,
    UNIQUE (instance_id, name)
);

CREATE INDEX backups_instance ON backups (instance_id, status);
CREATE INDEX backups_status ON backups (status);
