-- Point-in-time restores (RestoreDBInstance) and flashbacks by key
-- (FlashBackDBInstance): durable leased tasks, as download tasks are. A
-- task that loses its worker (its lease lapses) is taken again by another
-- and redone from the start; it reaches status 2 only once every target
-- collection is complete under its final name.
--
-- flow_id: the FlowId the API answers, and the AsyncRequestId that
-- DescribeAsyncRequestInfo takes (100000000 + id: nine digits or more,
-- never one of the sixteen-digit IDs of backups).
-- kind: 'restore' or 'flashback'.
-- restore_time: unix seconds; the state restored holds every write in or
-- before that second and none after.
-- plan: JSON, the collections to restore (and the keys of a flashback).
-- status: 0 queued, 1 running, 2 succeeded, 3 failed.
CREATE TABLE restore_tasks (
    id                 BIGSERIAL PRIMARY KEY,
    flow_id            BIGINT,
    kind               TEXT NOT NULL,
    instance_id        TEXT NOT NULL,
    target_instance_id TEXT NOT NULL,
    restore_time       BIGINT NOT NULL,
    plan               TEXT NOT NULL,
    status             INTEGER NOT NULL,
    percent            INTEGER NOT NULL DEFAULT 0,
    failure            TEXT NOT NULL DEFAULT '',
    attempts           INTEGER NOT NULL DEFAULT 0,
    lease_owner        TEXT,
    lease_expires_at   BIGINT,
    created_at         BIGINT NOT NULL,
    started_at         BIGINT,
    finished_at        BIGINT
);

CREATE UNIQUE INDEX restore_tasks_flow ON restore_tasks (flow_id);
CREATE INDEX restore_tasks_status ON restore_tasks (status, lease_expires_at);
