-- Scheduling state of an account's syncs. sync_queued_at is set when a sync task is queued
-- (by the link, the manual trigger or the scheduler) and cleared when a sync of the account
-- finishes, so the scheduler can skip accounts that already have a sync on its way without
-- asking the task store about each one. A marker older than the staleness bound the scheduler
-- applies counts as lost (its message went to the DLQ) and no longer blocks anything.
ALTER TABLE tastytrade_accounts ADD COLUMN sync_queued_at timestamptz;

-- The scheduler's walk: syncable accounts in id order, keyset-paginated. Replaces the V1 index
-- with one that also carries what the due check reads, so a tick is an index-only scan.
DROP INDEX tastytrade_accounts_syncable;
CREATE INDEX tastytrade_accounts_syncable ON tastytrade_accounts (id)
    INCLUDE (user_id, last_sync_at, sync_queued_at)
    WHERE credential_id IS NOT NULL AND NOT is_closed AND unlinked_at IS NULL
      AND last_sync_status <> 'NEEDS_REAUTH';
