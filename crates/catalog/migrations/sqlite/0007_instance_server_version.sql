-- The server version (`buildInfo.version`) a probe or a backup last saw;
-- empty until one has connected.
ALTER TABLE instances ADD COLUMN server_version TEXT NOT NULL DEFAULT '';
