-- Rows the broker sent that could not be stored (unparseable, lacking a required value, or
-- refused by a constraint), set aside so that the rest of their page is stored and the sync
-- completes. row_key is the broker's id when the row has one, else a digest of its JSON.
-- raw is text, not jsonb: jsonb cannot hold the NUL characters some of these rows carry
-- (their JSON text escapes them). A row leaves when a later sync stores it (by broker id) or
-- when a completed full sync no longer sees it.
CREATE TABLE quarantined_rows (
    account_id     uuid NOT NULL REFERENCES tastytrade_accounts (id) ON DELETE CASCADE,
    entity         text NOT NULL
        CHECK (entity IN ('transactions', 'orders', 'positions', 'balances', 'balance_snapshots')),
    row_key        text NOT NULL,
    broker_id      bigint,
    reason         text NOT NULL,
    raw            text NOT NULL,
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, entity, row_key)
);
CREATE INDEX quarantined_rows_broker_id ON quarantined_rows (account_id, entity, broker_id)
    WHERE broker_id IS NOT NULL;
