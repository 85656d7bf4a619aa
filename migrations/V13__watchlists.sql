-- The customer's watchlists (GET /watchlists). They belong to the tastytrade customer, not to
-- one of their accounts, so they hang off the grant (one grant is one customer's login) and
-- go with it. Each sync of one of the grant's accounts may read them; watchlists_read_at
-- lets the first sync in a quarter hour claim the read, so a grant of five accounts reads them
-- once. Entries keep the broker's order.
CREATE TABLE watchlists (
    credential_id   uuid NOT NULL REFERENCES tastytrade_credentials (id) ON DELETE CASCADE,
    name            text NOT NULL,
    group_name      text,
    order_index     bigint,
    raw             jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (credential_id, name)
);
CREATE TRIGGER watchlists_updated_at BEFORE UPDATE ON watchlists
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE watchlist_entries (
    credential_id   uuid NOT NULL,
    watchlist_name  text NOT NULL,
    position        integer NOT NULL,
    symbol          text NOT NULL,
    instrument_type text,
    PRIMARY KEY (credential_id, watchlist_name, position),
    FOREIGN KEY (credential_id, watchlist_name) REFERENCES watchlists (credential_id, name)
        ON DELETE CASCADE
);

ALTER TABLE tastytrade_credentials ADD COLUMN watchlists_read_at timestamptz;
