-- The first answer to each request a user sent with an `Idempotency-Key` (POST /link and the
-- manual trigger), for 24 hours: a retried request gets that answer again instead of linking
-- or queueing twice. `status` is NULL while the first request runs. The bodies hold what the
-- answer held (account ids and numbers, never a secret), and a purge deletes them with the
-- rest of the user's rows.
CREATE TABLE idempotency_keys (
    user_id      text NOT NULL CHECK (user_id <> ''),
    key          text NOT NULL CHECK (key <> ''),
    -- A hash of the method, path and body: one key for two different requests is refused.
    fingerprint  text NOT NULL,
    status       smallint,
    body         text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (created_at);
