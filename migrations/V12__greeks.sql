-- Greeks of option positions from the market-data feed (DXLink): the option's theoretical
-- price beside the greeks columns, and greeks_updated_at holds the event's own time, so a
-- symbol the feed did not answer keeps its old numbers with their old time.
ALTER TABLE positions ADD COLUMN theoretical_price numeric;

-- The DXLink quote token is cached, sealed, like the access token: for its lifetime.
ALTER TABLE tastytrade_credential_secrets DROP CONSTRAINT tastytrade_credential_secrets_purpose_check;
ALTER TABLE tastytrade_credential_secrets ADD CONSTRAINT tastytrade_credential_secrets_purpose_check
    CHECK (purpose IN ('refresh_token', 'client_secret', 'access_token', 'quote_token'));
