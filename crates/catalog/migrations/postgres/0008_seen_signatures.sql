-- Signatures that passed verification, remembered by every node of a
-- cluster until their timestamp leaves the clock window, so that a
-- replayed or re-aimed request is refused whichever node it reaches.
-- UNLOGGED: the memory is worth nothing after a crash (its entries live
-- five minutes) and is not written to the WAL.
CREATE UNLOGGED TABLE seen_signatures (
    fingerprint BYTEA PRIMARY KEY,   -- SHA-256 of style, SecretId, signature
    action      TEXT NOT NULL,       -- the action of its first use
    expires_at  BIGINT NOT NULL      -- unix seconds
);

CREATE INDEX seen_signatures_expiry ON seen_signatures (expires_at);

-- Records a use of `p_fingerprint` for `p_action` at `p_now` and returns
-- NULL when it is the first (or its earlier entry expired), else the action
-- of the first use. One round trip; concurrent first uses of one
-- fingerprint are ordered by the primary key, so exactly one is first.
-- Each call also forgets up to 16 expired entries, skipping any another
-- call holds: the cost per call stays bounded and the table holds no more
-- than the live entries plus a little.
CREATE FUNCTION mongobak_remember_signature(
    p_fingerprint BYTEA, p_action TEXT, p_expires_at BIGINT, p_now BIGINT)
RETURNS TEXT AS $$
DECLARE
    first_action TEXT;
BEGIN
    DELETE FROM seen_signatures WHERE ctid IN (
        SELECT ctid FROM seen_signatures WHERE expires_at <= p_now
        LIMIT 16 FOR UPDATE SKIP LOCKED);
    INSERT INTO seen_signatures (fingerprint, action, expires_at)
        VALUES (p_fingerprint, p_action, p_expires_at)
        ON CONFLICT (fingerprint) DO NOTHING;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    SELECT action INTO first_action FROM seen_signatures
        WHERE fingerprint = p_fingerprint AND expires_at > p_now FOR UPDATE;
    IF NOT FOUND THEN
        -- Expired but not yet forgotten: this use is a new first use.
        UPDATE seen_signatures SET action = p_action, expires_at = p_expires_at
            WHERE fingerprint = p_fingerprint;
        RETURN NULL;
    END IF;
    RETURN first_action;
END
$$ LANGUAGE plpgsql;
