-- Complex orders the broker stops listing are kept, marked removed by the sync that noticed,
-- as the other synced rows are (V7); a group listed again is present again.
ALTER TABLE complex_orders
    ADD COLUMN removed_at timestamptz,
    ADD COLUMN removed_by_task uuid;
