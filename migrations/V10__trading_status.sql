-- The account's trading status (GET /accounts/{n}/trading-status), refreshed by every sync: the
-- flags a portfolio screen shows as columns, the whole object as the broker sent it in
-- trading_status, and when it was read.
ALTER TABLE tastytrade_accounts
    ADD COLUMN day_trade_count bigint,
    ADD COLUMN is_pattern_day_trader boolean,
    ADD COLUMN is_closing_only boolean,
    ADD COLUMN is_frozen boolean,
    ADD COLUMN is_in_margin_call boolean,
    ADD COLUMN is_in_day_trade_equity_maintenance_call boolean,
    ADD COLUMN options_level text,
    ADD COLUMN pdt_reset_on date,
    ADD COLUMN trading_status_updated_at timestamptz,
    ADD COLUMN trading_status_read_at timestamptz,
    ADD COLUMN trading_status jsonb;
