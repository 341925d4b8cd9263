-- Automatic backup rules, one per instance (SetBackupRules), and the
-- scheduler's memory of the last time slot it handled.
-- A row is created with the defaults the first time the scheduler sees an
-- instance (explicit = 0) or when SetBackupRules is called (explicit = 1).
CREATE TABLE backup_rules (
    instance_id            TEXT PRIMARY KEY NOT NULL,
    backup_method          BIGINT NOT NULL,   -- 0 logical
    backup_hour            BIGINT NOT NULL,   -- BackupTime, 0-23, in the server's time zone
    frequency_hours        BIGINT NOT NULL,   -- BackupFrequency: 12 or 24
    active_weekdays        TEXT NOT NULL,      -- CSV of 0-6, 0 = Sunday
    retention_days         BIGINT NOT NULL,   -- BackupRetentionPeriod
    notify                 BIGINT NOT NULL,   -- 0/1
    long_term_interval     TEXT NOT NULL,      -- '', 'weekly' or 'monthly'
    long_term_active_days  TEXT NOT NULL,      -- CSV: weekdays 0-6 or days of month 1-31
    long_term_expired_days BIGINT NOT NULL,
    oplog_expired_days     BIGINT NOT NULL,
    backup_version         BIGINT NOT NULL,
    alert_threshold        BIGINT NOT NULL,   -- percent
    explicit               BIGINT NOT NULL,   -- 1 once set through the API
    last_slot_at           BIGINT NOT NULL,   -- unix seconds: slots up to here are handled
    updated_at             BIGINT NOT NULL
);

-- Backups kept under the long-term rule.
ALTER TABLE backups ADD COLUMN long_term BIGINT NOT NULL DEFAULT 0;
-- Stored bytes of the oplog slices (part of stored_bytes).
ALTER TABLE backups ADD COLUMN oplog_bytes BIGINT NOT NULL DEFAULT 0;
