-- The broker's transaction history, one row per tastytrade transaction id. Rows change after
-- the fact (estimated fees finalised, corrections), so every write is an upsert on
-- (account_id, tastytrade_transaction_id). Money columns are signed (Debit negative) and keep
-- the broker's effect beside them; the unsigned magnitude is abs() of the signed value, and
-- the payload as received stays in raw.

CREATE TABLE transactions (
    account_id                      uuid NOT NULL REFERENCES tastytrade_accounts (id) ON DELETE CASCADE,
    tastytrade_transaction_id       bigint NOT NULL,
    account_number                  text NOT NULL,
    transaction_type                text NOT NULL,
    transaction_sub_type            text,
    description                     text,
    executed_at                     timestamptz NOT NULL,
    transaction_date                date NOT NULL,
    value                           numeric,
    value_effect                    text,
    net_value                       numeric,
    net_value_effect                text,
    is_estimated_fee                boolean NOT NULL DEFAULT false,
    symbol                          text,
    underlying_symbol               text,
    instrument_type                 text,
    action                          text,
    quantity                        numeric,
    price                           numeric,
    commission                      numeric,
    commission_effect               text,
    clearing_fees                   numeric,
    clearing_fees_effect            text,
    regulatory_fees                 numeric,
    regulatory_fees_effect          text,
    proprietary_index_option_fees   numeric,
    proprietary_index_option_fees_effect text,
    currency_conversion_fees        numeric,
    currency_conversion_fees_effect text,
    other_charge                    numeric,
    other_charge_effect             text,
    other_charge_description        text,
    currency                        text,
    order_id                        bigint,
    leg_count                       integer,
    reverses_id                     bigint,
    exec_id                         text,
    ext_exec_id                     text,
    ext_group_id                    text,
    ext_group_fill_id               text,
    ext_exchange_order_number       text,
    ext_global_order_number         bigint,
    exchange                        text,
    destination_venue               text,
    agency_price                    numeric,
    principal_price                 numeric,
    cost_basis_reconciliation_date  date,
    broker_created_at               timestamptz,
    raw                             jsonb NOT NULL,
    created_at                      timestamptz NOT NULL DEFAULT now(),
    updated_at                      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, tastytrade_transaction_id)
);
CREATE INDEX transactions_executed_at ON transactions (account_id, executed_at);
CREATE INDEX transactions_transaction_date ON transactions (account_id, transaction_date);
CREATE INDEX transactions_underlying ON transactions (account_id, underlying_symbol)
    WHERE underlying_symbol IS NOT NULL;
CREATE INDEX transactions_order ON transactions (account_id, order_id) WHERE order_id IS NOT NULL;
CREATE INDEX transactions_reverses ON transactions (account_id, reverses_id) WHERE reverses_id IS NOT NULL;
CREATE TRIGGER transactions_updated_at BEFORE UPDATE ON transactions
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
