-- Cluster-wide rate limits: a sliding log per (account, action) key, shared
-- by every node. UNLOGGED: the log is worth nothing after a crash and is
-- not written to the WAL.
CREATE UNLOGGED TABLE rate_limit_events (
    key   TEXT NOT NULL,
    at_us BIGINT NOT NULL          -- the server's clock, microseconds
);

CREATE INDEX rate_limit_events_key ON rate_limit_events (key, at_us);

-- Takes a token for `p_key` if fewer than `p_limit` were taken in the last
-- `p_window_us` microseconds: one round trip, serialized per key by a
-- transaction-scoped advisory lock (class 1, apart from the catalog's
-- write lock), timed by the database's clock so node clocks do not matter.
CREATE FUNCTION mongobak_take_rate_token(p_key TEXT, p_limit BIGINT, p_window_us BIGINT)
RETURNS BOOLEAN AS $$
DECLARE
    now_us BIGINT := (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT;
    taken  BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(1, hashtext(p_key));
    DELETE FROM rate_limit_events WHERE key = p_key AND at_us <= now_us - p_window_us;
    SELECT count(*) INTO taken FROM rate_limit_events WHERE key = p_key;
    IF taken >= p_limit THEN
        RETURN FALSE;
    END IF;
    INSERT INTO rate_limit_events (key, at_us) VALUES (p_key, now_us);
    RETURN TRUE;
END
$$ LANGUAGE plpgsql;
