-- What the account holds now and what it was worth over time. Positions are replaced as a set
-- per sync (in one transaction), keyed by symbol; option positions carry the fields parsed from
-- the OCC symbol and the greeks from the market-data stream. Balances keep one current row per
-- currency; snapshots keep the broker's end-of-day history and our own intraday captures.

CREATE TABLE positions (
    account_id                          uuid NOT NULL REFERENCES tastytrade_accounts (id) ON DELETE CASCADE,
    symbol                              text NOT NULL,
    account_number                      text NOT NULL,
    underlying_symbol                   text,
    instrument_type                     text,
    -- Signed: negative when quantity_direction is Short.
    quantity                            numeric NOT NULL,
    quantity_direction                  text,
    multiplier                          numeric,
    average_open_price                  numeric,
    average_daily_market_close_price    numeric,
    average_yearly_market_close_price   numeric,
    close_price                         numeric,
    mark                                numeric,
    mark_price                          numeric,
    cost_effect                         text,
    realized_day_gain                   numeric,
    realized_day_gain_effect            text,
    realized_day_gain_date              date,
    realized_today                      numeric,
    realized_today_effect               text,
    realized_today_date                 date,
    restricted_quantity                 numeric,
    is_suppressed                       boolean,
    is_frozen                           boolean,
    expires_at                          timestamptz,
    -- Parsed from the OCC symbol; NULL for anything that is not an equity or index option.
    option_root                         text,
    option_expiration                   date,
    option_type                         text CHECK (option_type IN ('C', 'P')),
    strike_price                        numeric,
    -- From DXLink Greeks events; NULL until the first one arrives.
    delta                               numeric,
    gamma                               numeric,
    theta                               numeric,
    vega                                numeric,
    rho                                 numeric,
    implied_volatility                  numeric,
    greeks_updated_at                   timestamptz,
    broker_created_at                   timestamptz,
    broker_updated_at                   timestamptz,
    raw                                 jsonb NOT NULL,
    created_at                          timestamptz NOT NULL DEFAULT now(),
    updated_at                          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, symbol)
);
CREATE INDEX positions_underlying ON positions (account_id, underlying_symbol);
CREATE INDEX positions_expiration ON positions (account_id, option_expiration)
    WHERE option_expiration IS NOT NULL;
CREATE TRIGGER positions_updated_at BEFORE UPDATE ON positions
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE account_balances (
    account_id                  uuid NOT NULL REFERENCES tastytrade_accounts (id) ON DELETE CASCADE,
    currency                    text NOT NULL,
    account_number              text NOT NULL,
    cash_balance                numeric,
    net_liquidating_value       numeric,
    long_equity_value           numeric,
    short_equity_value          numeric,
    long_derivative_value       numeric,
    short_derivative_value      numeric,
    margin_equity               numeric,
    equity_buying_power         numeric,
    derivative_buying_power     numeric,
    day_trading_buying_power    numeric,
    available_trading_funds     numeric,
    cash_available_to_withdraw  numeric,
    maintenance_requirement     numeric,
    maintenance_excess          numeric,
    pending_cash                numeric,
    pending_cash_effect         text,
    snapshot_date               date,
    broker_updated_at           timestamptz,
    raw                         jsonb NOT NULL,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, currency)
);
CREATE TRIGGER account_balances_updated_at BEFORE UPDATE ON account_balances
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- The broker's EOD rows can be sparse (most amounts absent), so every amount is nullable.
CREATE TABLE account_balance_snapshots (
    account_id                  uuid NOT NULL REFERENCES tastytrade_accounts (id) ON DELETE CASCADE,
    snapshot_date               date NOT NULL,
    time_of_day                 text NOT NULL CHECK (time_of_day IN ('BOD', 'EOD', 'Intraday')),
    currency                    text NOT NULL,
    account_number              text NOT NULL,
    -- broker: read from balance-snapshots; capture: our own reading of the current balance.
    source                      text NOT NULL CHECK (source IN ('broker', 'capture')),
    captured_at                 timestamptz,
    cash_balance                numeric,
    net_liquidating_value       numeric,
    long_equity_value           numeric,
    short_equity_value          numeric,
    long_derivative_value       numeric,
    short_derivative_value      numeric,
    margin_equity               numeric,
    equity_buying_power         numeric,
    derivative_buying_power     numeric,
    day_trading_buying_power    numeric,
    maintenance_requirement     numeric,
    pending_cash                numeric,
    pending_cash_effect         text,
    raw                         jsonb NOT NULL,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, snapshot_date, time_of_day, currency)
);
CREATE TRIGGER account_balance_snapshots_updated_at BEFORE UPDATE ON account_balance_snapshots
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
