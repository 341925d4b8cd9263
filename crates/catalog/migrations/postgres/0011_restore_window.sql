-- What point-in-time recovery needs beside the slices (see 0010).
--
-- backup_oplog_ends: where each replica set of a succeeded backup ends in
-- its oplog (the backup holds that replica set as of end_ts): a base from
-- which slices can be replayed.
CREATE TABLE backup_oplog_ends (
    backup_id      BIGINT NOT NULL,
    replica_set_id TEXT NOT NULL,
    end_ts         BIGINT NOT NULL,
    PRIMARY KEY (backup_id, replica_set_id)
);

CREATE INDEX backup_oplog_ends_replica_set ON backup_oplog_ends (replica_set_id, end_ts);

-- kept_from_ts: where the kept chain of a replica set's slices begins: the
-- position its first tailer began at, raised when old slices are deleted.
ALTER TABLE oplog_positions ADD COLUMN kept_from_ts BIGINT;
