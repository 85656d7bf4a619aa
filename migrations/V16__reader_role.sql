-- The read routes (account-data, sync-status) act as this role: they may read every table and
-- change none, so a bug or an injection in a read path cannot write. Roles are cluster-wide,
-- hence the existence check (several databases of one cluster run these migrations, as the
-- test suite's do). The migrating user becomes a member, so its connections may SET ROLE to
-- it: the functions still log in with the cluster's credentials, and drop to this role first.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tastysync_reader') THEN
        CREATE ROLE tastysync_reader NOLOGIN;
    END IF;
END
$$;
GRANT tastysync_reader TO CURRENT_USER;
GRANT USAGE ON SCHEMA public TO tastysync_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO tastysync_reader;
-- Tables later migrations create are readable too; what they may write is theirs to grant.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO tastysync_reader;
