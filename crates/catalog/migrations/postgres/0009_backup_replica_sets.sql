-- The replica set IDs (`<instance>_<n>`) a succeeded backup holds, as a
-- JSON array; NULL for backups that finished before this was recorded
-- (their instance's current replica sets stand in for them).
ALTER TABLE backups ADD COLUMN replica_set_ids TEXT;
