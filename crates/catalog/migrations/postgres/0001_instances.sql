-- Registered MongoDB deployments. `replica_sets` holds the connection URIs
-- (JSON array of strings), one per replica set / shard, in order: the
-- replica set with index n is `<id>_<n>`.
CREATE TABLE instances (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    region        TEXT NOT NULL,
    owner_uin     TEXT NOT NULL,
    cluster_type  BIGINT NOT NULL,          -- 0 replica set, 1 sharded cluster
    replica_sets  TEXT NOT NULL,             -- JSON array of URIs
    mongos_uri    TEXT,
    source        TEXT NOT NULL,             -- 'config' or 'cli'
    created_at    BIGINT NOT NULL           -- unix seconds
);

CREATE INDEX instances_owner ON instances (owner_uin, region);
