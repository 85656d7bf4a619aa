-- Rows the broker stops returning (a busted trade, an order leg replaced, a currency closed)
-- are kept but marked removed: when, and by which sync task. Every count and read leaves them
-- out (`removed_at IS NULL`); a row the broker returns again is restored by its next upsert.
ALTER TABLE transactions ADD COLUMN removed_at timestamptz, ADD COLUMN removed_by_task uuid;
ALTER TABLE orders ADD COLUMN removed_at timestamptz, ADD COLUMN removed_by_task uuid;
ALTER TABLE order_legs ADD COLUMN removed_at timestamptz, ADD COLUMN removed_by_task uuid;
ALTER TABLE order_fills ADD COLUMN removed_at timestamptz, ADD COLUMN removed_by_task uuid;
ALTER TABLE account_balances ADD COLUMN removed_at timestamptz, ADD COLUMN removed_by_task uuid;

-- A leg's place in the order's legs[] is not its identity: when the broker drops or reorders a
-- leg, the others would take each other's rows. A leg is its symbol and action; the rare
-- order that repeats both tells the repeats apart by their turn (`#2`, `#3`).
ALTER TABLE order_legs ADD COLUMN leg_key text;
UPDATE order_legs l SET leg_key = k.leg_key
FROM (SELECT account_id, tastytrade_order_id, leg_index,
             symbol || '|' || coalesce(action, '')
             || CASE WHEN row_number() OVER w > 1 THEN '#' || row_number() OVER w ELSE '' END
                AS leg_key
      FROM order_legs
      WINDOW w AS (PARTITION BY account_id, tastytrade_order_id, symbol, action
                   ORDER BY leg_index)) k
WHERE (l.account_id, l.tastytrade_order_id, l.leg_index)
    = (k.account_id, k.tastytrade_order_id, k.leg_index);
ALTER TABLE order_legs ALTER COLUMN leg_key SET NOT NULL;

ALTER TABLE order_fills ADD COLUMN leg_key text;
UPDATE order_fills f SET leg_key = l.leg_key
FROM order_legs l
WHERE (f.account_id, f.tastytrade_order_id, f.leg_index)
    = (l.account_id, l.tastytrade_order_id, l.leg_index);
ALTER TABLE order_fills ALTER COLUMN leg_key SET NOT NULL;
-- Dropping the column drops the fills' key and their reference to the legs' old key.
ALTER TABLE order_fills DROP COLUMN leg_index;
ALTER TABLE order_legs DROP CONSTRAINT order_legs_pkey;
ALTER TABLE order_legs ADD PRIMARY KEY (account_id, tastytrade_order_id, leg_key);
ALTER TABLE order_fills ADD PRIMARY KEY (account_id, tastytrade_order_id, leg_key, fill_id);
ALTER TABLE order_fills ADD FOREIGN KEY (account_id, tastytrade_order_id, leg_key)
    REFERENCES order_legs (account_id, tastytrade_order_id, leg_key) ON DELETE CASCADE;
