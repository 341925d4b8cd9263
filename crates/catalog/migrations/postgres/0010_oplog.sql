-- Continuous oplog backup (point-in-time recovery).
--
-- Oplog timestamps are stored as one integer, seconds << 32 | increment,
-- which orders as the timestamps do.
--
-- oplog_positions: per replica set, how far its oplog is saved. sealed_ts
-- only moves after the slice that reaches it is durable in storage (or, for
-- a stretch of no-op entries only, with no slice at all); every slice
-- starts exactly where the position stood (after_ts), so slices never
-- overlap and never leave a hole.
CREATE TABLE oplog_positions (
    replica_set_id TEXT PRIMARY KEY NOT NULL,
    instance_id    TEXT NOT NULL,
    sealed_ts      BIGINT NOT NULL,
    sealed_wall    BIGINT NOT NULL,         -- unix seconds of sealed_ts
    updated_at     BIGINT NOT NULL
);

-- oplog_slices: the entries with after_ts < ts <= last_ts of one replica
-- set, in one object of the blob store.
CREATE TABLE oplog_slices (
    id             BIGSERIAL PRIMARY KEY,
    instance_id    TEXT NOT NULL,
    replica_set_id TEXT NOT NULL,
    after_ts       BIGINT NOT NULL,
    last_ts        BIGINT NOT NULL,
    last_wall      BIGINT NOT NULL,         -- unix seconds of last_ts
    entries        BIGINT NOT NULL,
    raw_bytes      BIGINT NOT NULL,
    stored_bytes   BIGINT NOT NULL,
    path           TEXT NOT NULL,
    sha256         TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);

CREATE UNIQUE INDEX oplog_slices_order ON oplog_slices (replica_set_id, after_ts);

-- oplog_gaps: stretches of a replica set's oplog that were lost (the saved
-- position left the source's oplog before it was read): no time in
-- from_ts < t < to_ts can be restored.
CREATE TABLE oplog_gaps (
    id             BIGSERIAL PRIMARY KEY,
    instance_id    TEXT NOT NULL,
    replica_set_id TEXT NOT NULL,
    from_ts        BIGINT NOT NULL,
    to_ts          BIGINT NOT NULL,
    detected_at    BIGINT NOT NULL
);

CREATE INDEX oplog_gaps_replica_set ON oplog_gaps (replica_set_id, from_ts);
