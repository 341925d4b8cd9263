-- Duties that one node of a cluster performs at a time (the scheduler, the
-- janitor): the node holding a duty renews its lease while it works; when
-- it stops renewing (it died), another node takes the duty once the lease
-- has expired.
CREATE TABLE duty_leases (
    duty        TEXT PRIMARY KEY NOT NULL,
    holder      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL            -- unix seconds
);
