-- The account's net liquidating value over time as the broker charts it
-- (GET /accounts/{n}/net-liq/history): one OHLC bar per time, with the pending cash and the
-- total (value plus pending cash) beside it. Bars are upserted by time, so the bar the broker
-- still moves (today's) is rewritten until it settles and a re-read window writes nothing.
CREATE TABLE net_liq_history (
    account_id          uuid NOT NULL REFERENCES tastytrade_accounts (id) ON DELETE CASCADE,
    time                timestamptz NOT NULL,
    open                numeric,
    high                numeric,
    low                 numeric,
    close               numeric,
    pending_cash_open   numeric,
    pending_cash_high   numeric,
    pending_cash_low    numeric,
    pending_cash_close  numeric,
    total_open          numeric,
    total_high          numeric,
    total_low           numeric,
    total_close         numeric,
    raw                 jsonb NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, time)
);
CREATE TRIGGER net_liq_history_updated_at BEFORE UPDATE ON net_liq_history
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- A bar the model cannot read is set aside like any other row.
ALTER TABLE quarantined_rows DROP CONSTRAINT quarantined_rows_entity_check;
ALTER TABLE quarantined_rows ADD CONSTRAINT quarantined_rows_entity_check
    CHECK (entity IN ('transactions', 'orders', 'positions', 'balances', 'balance_snapshots',
                      'net_liq_history'));
