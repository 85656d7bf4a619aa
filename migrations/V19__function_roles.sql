-- Each function acts as a role of its own, as the read routes have since V16: what it may do
-- to each table is granted here and nothing else, so a query a function should not make fails
-- in the tests as it would on Aurora. The functions log in with the cluster's credentials and
-- SET ROLE first (shared::wiring::Function::database_role); only the migrate function keeps
-- the login user. Roles are cluster-wide, hence the existence checks. Referential actions
-- (ON DELETE CASCADE) run as the tables' owner, so deleting an account or a grant needs no
-- grant on the rows hanging off it.
DO $$
DECLARE
    role text;
BEGIN
    FOREACH role IN ARRAY ARRAY['tastysync_link', 'tastysync_accounts', 'tastysync_trigger',
                                'tastysync_scheduler', 'tastysync_worker'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role);
        END IF;
        EXECUTE format('GRANT %I TO CURRENT_USER', role);
        EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', role);
    END LOOP;
END
$$;

-- link-account: a grant with its sealed secrets and its accounts; the audit trail; its keys.
GRANT SELECT, INSERT, DELETE ON tastytrade_credentials TO tastysync_link;
GRANT SELECT, INSERT ON tastytrade_credential_secrets TO tastysync_link;
GRANT SELECT, INSERT, UPDATE ON tastytrade_accounts TO tastysync_link;
GRANT SELECT ON quarantined_rows TO tastysync_link;
GRANT INSERT ON audit_events TO tastysync_link;
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO tastysync_link;

-- accounts: list, unlink and purge the caller's accounts and grants; read the audit trail.
GRANT SELECT, UPDATE, DELETE ON tastytrade_accounts TO tastysync_accounts;
GRANT SELECT, DELETE ON tastytrade_credentials TO tastysync_accounts;
GRANT SELECT ON quarantined_rows TO tastysync_accounts;
GRANT SELECT, INSERT, DELETE ON audit_events TO tastysync_accounts;
GRANT SELECT, DELETE ON idempotency_keys TO tastysync_accounts;

-- sync-trigger: one account read and marked queued; the audit trail; its keys.
GRANT SELECT, UPDATE ON tastytrade_accounts TO tastysync_trigger;
GRANT SELECT ON quarantined_rows TO tastysync_trigger;
GRANT INSERT ON audit_events TO tastysync_trigger;
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO tastysync_trigger;

-- sync-scheduler: the due accounts, marked queued.
GRANT SELECT, UPDATE ON tastytrade_accounts TO tastysync_scheduler;

-- sync-worker and account-streamer: the synced tables; the account's sync state; the grant's
-- cached access token and watchlist clock; a lost grant on the audit trail.
GRANT SELECT, INSERT, UPDATE, DELETE ON
    transactions, orders, order_legs, order_fills, complex_orders, positions, account_balances,
    account_balance_snapshots, net_liq_history, watchlists, watchlist_entries, quarantined_rows
    TO tastysync_worker;
GRANT SELECT, UPDATE ON tastytrade_accounts TO tastysync_worker;
GRANT SELECT, UPDATE ON tastytrade_credentials TO tastysync_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON tastytrade_credential_secrets TO tastysync_worker;
GRANT INSERT ON audit_events TO tastysync_worker;
