-- The synced history's four tables (transactions, orders, order_legs, order_fills) check that
-- their rows' parents exist once per statement instead of once per row.
--
-- A foreign key runs a query of its own for every inserted row, and locks the row's parent once
-- per row. A sync writes these tables 2,000 rows to a statement, and the checks were the largest
-- single share of Postgres's time in a full sync (perf, README): a page of 2,000 transactions
-- inserted in 2.4 s per 100k rows with the key and 1.6 s with this check. The
-- promises stay the same:
-- * a row whose parent is missing fails its statement with foreign_key_violation (23503), as
--   the key did (the sync reads that code as "the account went away", not as a bad row);
-- * the check locks each parent FOR KEY SHARE, as the key's check does. A delete of the parent
--   waits for the inserting transaction, then takes its rows with it. A delete that came first
--   fails the insert;
-- * deleting a parent deletes its children: the account its history, an order its legs, a leg
--   its fills;
-- * no key a child names, on either side, changes: the keys refused it, and so do triggers here.
-- The functions run as their owner, as the key's checks and cascades did: a function's role
-- needs no rights on the parent to have its rows checked, nor on the children to delete a parent.
-- The tables that get a few rows per sync keep their keys.

ALTER TABLE order_fills DROP CONSTRAINT order_fills_account_id_tastytrade_order_id_leg_key_fkey;
ALTER TABLE order_legs DROP CONSTRAINT order_legs_account_id_tastytrade_order_id_fkey;
ALTER TABLE orders DROP CONSTRAINT orders_account_id_fkey;
ALTER TABLE transactions DROP CONSTRAINT transactions_account_id_fkey;

-- Each inserting statement's distinct parents, looked up and locked; any one not found fails
-- the statement. The transition table is `inserted` in every trigger that runs these.
CREATE FUNCTION inserted_rows_have_their_account() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF EXISTS (
        SELECT FROM (SELECT DISTINCT account_id FROM inserted) n
        LEFT JOIN LATERAL (
            SELECT a.id FROM tastytrade_accounts a WHERE a.id = n.account_id FOR KEY SHARE
        ) a ON true
        WHERE a.id IS NULL
    ) THEN
        RAISE foreign_key_violation USING MESSAGE = format('a row of %I has no account', TG_TABLE_NAME);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION inserted_legs_have_their_order() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF EXISTS (
        SELECT FROM (SELECT DISTINCT account_id, tastytrade_order_id FROM inserted) n
        LEFT JOIN LATERAL (
            SELECT o.account_id FROM orders o
            WHERE o.account_id = n.account_id AND o.tastytrade_order_id = n.tastytrade_order_id
            FOR KEY SHARE
        ) o ON true
        WHERE o.account_id IS NULL
    ) THEN
        RAISE foreign_key_violation USING MESSAGE = 'a leg has no order';
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION inserted_fills_have_their_leg() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF EXISTS (
        SELECT FROM (SELECT DISTINCT account_id, tastytrade_order_id, leg_key FROM inserted) n
        LEFT JOIN LATERAL (
            SELECT l.account_id FROM order_legs l
            WHERE l.account_id = n.account_id AND l.tastytrade_order_id = n.tastytrade_order_id
              AND l.leg_key = n.leg_key
            FOR KEY SHARE
        ) l ON true
        WHERE l.account_id IS NULL
    ) THEN
        RAISE foreign_key_violation USING MESSAGE = 'a fill has no leg';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER transactions_account AFTER INSERT ON transactions
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT
    EXECUTE FUNCTION inserted_rows_have_their_account();
CREATE TRIGGER orders_account AFTER INSERT ON orders
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT
    EXECUTE FUNCTION inserted_rows_have_their_account();
CREATE TRIGGER order_legs_order AFTER INSERT ON order_legs
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT
    EXECUTE FUNCTION inserted_legs_have_their_order();
CREATE TRIGGER order_fills_leg AFTER INSERT ON order_fills
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT
    EXECUTE FUNCTION inserted_fills_have_their_leg();

-- The cascades. Each deletes the children of the statement's deleted rows; an order's delete
-- reaches its fills through its legs' own trigger.
CREATE FUNCTION deleted_accounts_take_their_history() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    DELETE FROM transactions WHERE account_id IN (SELECT id FROM deleted);
    DELETE FROM orders WHERE account_id IN (SELECT id FROM deleted);
    RETURN NULL;
END
$$;

CREATE FUNCTION deleted_orders_take_their_legs() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    DELETE FROM order_legs l USING deleted o
    WHERE l.account_id = o.account_id AND l.tastytrade_order_id = o.tastytrade_order_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION deleted_legs_take_their_fills() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    DELETE FROM order_fills f USING deleted l
    WHERE f.account_id = l.account_id AND f.tastytrade_order_id = l.tastytrade_order_id
      AND f.leg_key = l.leg_key;
    RETURN NULL;
END
$$;

CREATE TRIGGER tastytrade_accounts_history AFTER DELETE ON tastytrade_accounts
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT
    EXECUTE FUNCTION deleted_accounts_take_their_history();
CREATE TRIGGER orders_legs AFTER DELETE ON orders
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT
    EXECUTE FUNCTION deleted_orders_take_their_legs();
CREATE TRIGGER order_legs_fills AFTER DELETE ON order_legs
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT
    EXECUTE FUNCTION deleted_legs_take_their_fills();

-- No row moves to another parent, and no parent changes the key its children name: the keys
-- refused both, and no writer does either.
CREATE FUNCTION keys_are_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE foreign_key_violation USING MESSAGE = format('a row of %I cannot change its key', TG_TABLE_NAME);
END
$$;

CREATE TRIGGER tastytrade_accounts_key_fixed BEFORE UPDATE OF id ON tastytrade_accounts
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION keys_are_fixed();
CREATE TRIGGER transactions_key_fixed BEFORE UPDATE OF account_id ON transactions
    FOR EACH ROW WHEN (OLD.account_id IS DISTINCT FROM NEW.account_id)
    EXECUTE FUNCTION keys_are_fixed();
CREATE TRIGGER orders_key_fixed BEFORE UPDATE OF account_id, tastytrade_order_id ON orders
    FOR EACH ROW WHEN ((OLD.account_id, OLD.tastytrade_order_id)
                       IS DISTINCT FROM (NEW.account_id, NEW.tastytrade_order_id))
    EXECUTE FUNCTION keys_are_fixed();
CREATE TRIGGER order_legs_key_fixed BEFORE UPDATE OF account_id, tastytrade_order_id, leg_key
    ON order_legs
    FOR EACH ROW WHEN ((OLD.account_id, OLD.tastytrade_order_id, OLD.leg_key)
                       IS DISTINCT FROM (NEW.account_id, NEW.tastytrade_order_id, NEW.leg_key))
    EXECUTE FUNCTION keys_are_fixed();
CREATE TRIGGER order_fills_key_fixed BEFORE UPDATE OF account_id, tastytrade_order_id, leg_key
    ON order_fills
    FOR EACH ROW WHEN ((OLD.account_id, OLD.tastytrade_order_id, OLD.leg_key)
                       IS DISTINCT FROM (NEW.account_id, NEW.tastytrade_order_id, NEW.leg_key))
    EXECUTE FUNCTION keys_are_fixed();
