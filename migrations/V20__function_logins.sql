-- Each function logs in as its own role instead of logging in as the master user and dropping
-- to it with SET ROLE: a session that logged in as the master could RESET ROLE and so do
-- anything, while one that logged in as its function's role can only ever be that role.
-- On Aurora the functions log in through RDS Proxy with IAM tokens (end-to-end IAM
-- authentication), which needs each login role to be a member of rds_iam; such a role has no
-- password and cannot log in with one. Plain Postgres (the local stack, the tests) has no
-- rds_iam, so a stand-in is made there and the roles log in through the cluster's trusted
-- loopback instead. Roles are cluster-wide, hence the checks: several databases of one cluster
-- run these migrations at once in the test suite, and changing a role that is already as
-- wanted would still rewrite its catalog row, which concurrent runs refuse.
DO $$
DECLARE
    role text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_iam') THEN
        CREATE ROLE rds_iam NOLOGIN;
    END IF;
    FOREACH role IN ARRAY ARRAY['tastysync_reader', 'tastysync_link', 'tastysync_accounts',
                                'tastysync_trigger', 'tastysync_scheduler', 'tastysync_worker'] LOOP
        IF NOT (SELECT rolcanlogin FROM pg_roles WHERE rolname = role) THEN
            EXECUTE format('ALTER ROLE %I LOGIN', role);
        END IF;
        IF NOT pg_has_role(role, 'rds_iam', 'MEMBER') THEN
            EXECUTE format('GRANT rds_iam TO %I', role);
        END IF;
    END LOOP;
END
$$;
