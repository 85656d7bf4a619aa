-- Orders with their legs and fills. An order's status changes until it is terminal, and a leg
-- gains fills as they happen, so all three tables are upserted on their natural keys and a
-- leg's or fill's parent is always the order of the same account. Deleting the order (or the
-- account) deletes its legs and fills.

CREATE TABLE orders (
    account_id                  uuid NOT NULL REFERENCES tastytrade_accounts (id) ON DELETE CASCADE,
    tastytrade_order_id         bigint NOT NULL,
    account_number              text NOT NULL,
    status                      text NOT NULL,
    order_type                  text,
    time_in_force               text,
    size                        numeric,
    underlying_symbol           text,
    underlying_instrument_type  text,
    price                       numeric,
    price_effect                text,
    value                       numeric,
    value_effect                text,
    stop_trigger                numeric,
    gtc_date                    date,
    cancellable                 boolean,
    editable                    boolean,
    edited                      boolean,
    contingent_status           text,
    confirmation_status         text,
    reject_reason               text,
    received_at                 timestamptz,
    in_flight_at                timestamptz,
    live_at                     timestamptz,
    cancelled_at                timestamptz,
    terminal_at                 timestamptz,
    -- The broker's updated-at (sent as epoch milliseconds).
    broker_updated_at           timestamptz,
    replaces_order_id           bigint,
    replacing_order_id          bigint,
    complex_order_id            bigint,
    complex_order_tag           text,
    source                      text,
    external_identifier         text,
    raw                         jsonb NOT NULL,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, tastytrade_order_id)
);
CREATE INDEX orders_received_at ON orders (account_id, received_at);
CREATE INDEX orders_status ON orders (account_id, status);
CREATE INDEX orders_underlying ON orders (account_id, underlying_symbol)
    WHERE underlying_symbol IS NOT NULL;
CREATE TRIGGER orders_updated_at BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- Legs have no broker id: their position in the order's legs[] is their identity.
CREATE TABLE order_legs (
    account_id           uuid NOT NULL,
    tastytrade_order_id  bigint NOT NULL,
    leg_index            smallint NOT NULL CHECK (leg_index >= 0),
    symbol               text NOT NULL,
    instrument_type      text,
    action               text,
    quantity             numeric,
    remaining_quantity   numeric,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, tastytrade_order_id, leg_index),
    FOREIGN KEY (account_id, tastytrade_order_id)
        REFERENCES orders (account_id, tastytrade_order_id) ON DELETE CASCADE
);
CREATE INDEX order_legs_symbol ON order_legs (account_id, symbol);
CREATE TRIGGER order_legs_updated_at BEFORE UPDATE ON order_legs
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

CREATE TABLE order_fills (
    account_id           uuid NOT NULL,
    tastytrade_order_id  bigint NOT NULL,
    leg_index            smallint NOT NULL,
    fill_id              text NOT NULL,
    quantity             numeric NOT NULL,
    fill_price           numeric,
    filled_at            timestamptz NOT NULL,
    destination_venue    text,
    ext_group_fill_id    text,
    ext_exec_id          text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, tastytrade_order_id, leg_index, fill_id),
    FOREIGN KEY (account_id, tastytrade_order_id, leg_index)
        REFERENCES order_legs (account_id, tastytrade_order_id, leg_index) ON DELETE CASCADE
);
CREATE INDEX order_fills_filled_at ON order_fills (account_id, filled_at);
CREATE TRIGGER order_fills_updated_at BEFORE UPDATE ON order_fills
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
