-- The read API's access paths. Transactions are paged newest first by (executed_at, id), the
-- keyset the cursor carries, over the rows the broker still returns.
CREATE INDEX transactions_newest_first ON transactions
    (account_id, executed_at DESC, tastytrade_transaction_id DESC) WHERE removed_at IS NULL;
