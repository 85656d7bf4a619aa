-- Complex orders (GET /accounts/{n}/complex-orders): OCO, OTO, OTOCO, PAIRS and BLAST groups.
-- Their child orders (the trigger order and the others) are orders like any other and live in
-- orders, with complex_order_id and complex_order_tag; the group keeps their ids in order.
-- The endpoint takes no time filter, so every sync reads the whole list, once.
CREATE TABLE complex_orders (
    account_id                                  uuid NOT NULL REFERENCES tastytrade_accounts (id) ON DELETE CASCADE,
    tastytrade_complex_order_id                 bigint NOT NULL,
    account_number                              text NOT NULL,
    type                                        text,
    terminal_at                                 timestamptz,
    ratio_price_threshold                       numeric,
    ratio_price_comparator                      text,
    ratio_price_is_threshold_based_on_notional  boolean,
    trigger_order_id                            bigint,
    -- The other orders' ids, in the group's order (a JSON array: the batched upsert unnests
    -- its arrays, which would flatten an array of arrays).
    order_ids                                   jsonb NOT NULL,
    raw                                         jsonb NOT NULL,
    created_at                                  timestamptz NOT NULL DEFAULT now(),
    updated_at                                  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, tastytrade_complex_order_id)
);
CREATE TRIGGER complex_orders_updated_at BEFORE UPDATE ON complex_orders
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

ALTER TABLE quarantined_rows DROP CONSTRAINT quarantined_rows_entity_check;
ALTER TABLE quarantined_rows ADD CONSTRAINT quarantined_rows_entity_check
    CHECK (entity IN ('transactions', 'orders', 'positions', 'balances', 'balance_snapshots',
                      'net_liq_history', 'complex_orders'));
