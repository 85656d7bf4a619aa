-- The read API pages orders newest first by when they were received (or, for an order the
-- broker sent without that time, when we stored it), then id: the keyset its cursor carries.
CREATE INDEX orders_newest_first ON orders
    (account_id, (coalesce(received_at, created_at)) DESC, tastytrade_order_id DESC)
    WHERE removed_at IS NULL;
