-- Every row's `raw` (the broker's JSON for it) becomes `json`: the text as the broker sent it,
-- checked to be JSON and stored as is. As `jsonb`, Postgres parsed each payload into its binary
-- tree on the way in (sorting its keys, unescaping its strings): 15% of Postgres's time in a
-- full sync (`make bench`, perf), for a column the product never queries into; it is kept to
-- answer "what did the broker say" later, which the text answers better (key order, numbers'
-- spelling and duplicate keys survive). Rows compare it as text (db::batch).
DO $$
DECLARE
    col record;
BEGIN
    FOR col IN
        SELECT table_name, column_default FROM information_schema.columns
        WHERE table_schema = 'public' AND column_name = 'raw' AND data_type = 'jsonb'
    LOOP
        EXECUTE format('ALTER TABLE %I ALTER COLUMN raw DROP DEFAULT', col.table_name);
        EXECUTE format('ALTER TABLE %I ALTER COLUMN raw TYPE json USING raw::json', col.table_name);
        IF col.column_default IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %I ALTER COLUMN raw SET DEFAULT ''{}''::json', col.table_name);
        END IF;
    END LOOP;
END
$$;
