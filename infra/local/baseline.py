"""The peer baseline of `make bench`: the tastyware `tastytrade` SDK fetches an account's full
transaction and order history from a tastytrade-compatible base URL (the simulator), and psycopg
writes it to Postgres the fastest honest way Python offers: COPY into a staging table, then one
upsert into the real one, keeping the raw JSON as tastysync does.

Input (environment): TT_BASE_URL, TT_SECRET, TT_REFRESH, DATABASE_URL, TT_PER_PAGE (2000, the
broker's maximum, as tastysync asks). Output: one JSON line of counts and seconds.
"""

import asyncio
import json
import os
import time
from datetime import date

import psycopg
from tastytrade import Account, Session


SCHEMA = """
CREATE TABLE IF NOT EXISTS baseline_transactions (
    account_number text NOT NULL,
    id bigint NOT NULL,
    executed_at timestamptz,
    transaction_type text,
    net_value numeric,
    raw jsonb NOT NULL,
    PRIMARY KEY (account_number, id)
);
CREATE TABLE IF NOT EXISTS baseline_orders (
    account_number text NOT NULL,
    id bigint NOT NULL,
    status text,
    updated_at timestamptz,
    raw jsonb NOT NULL,
    PRIMARY KEY (account_number, id)
);
"""


def write(conn, table, columns, rows):
    """COPY into a temporary staging table, then one INSERT ... ON CONFLICT into the table."""
    names = ", ".join(columns)
    with conn.cursor() as cur:
        cur.execute(f"CREATE TEMP TABLE staging (LIKE {table}) ON COMMIT DROP")
        with cur.copy(f"COPY staging ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns[2:])
        cur.execute(
            f"INSERT INTO {table} ({names}) SELECT {names} FROM staging "
            f"ON CONFLICT (account_number, id) DO UPDATE SET {updates}"
        )
    conn.commit()


async def main():
    per_page = int(os.environ.get("TT_PER_PAGE", "2000"))
    session = Session(os.environ["TT_SECRET"], os.environ["TT_REFRESH"])
    # The SDK knows only tastytrade's two hosts; point its one client at the given base URL.
    session._client.base_url = os.environ["TT_BASE_URL"]
    started = time.perf_counter()
    accounts = await Account.get(session)
    transactions, orders = [], []
    for account in accounts:
        opened = account.opened_at.date() if account.opened_at else date(2000, 1, 1)
        for tx in await account.get_history(
            session, start_date=opened, per_page=per_page, page_offset=None
        ):
            transactions.append((account.account_number, tx))
        for order in await account.get_order_history(
            session, start_date=opened, per_page=min(per_page, 200), page_offset=None
        ):
            orders.append((account.account_number, order))
    fetched = time.perf_counter()

    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        conn.execute(SCHEMA)
        conn.commit()
        write(
            conn,
            "baseline_transactions",
            ["account_number", "id", "executed_at", "transaction_type", "net_value", "raw"],
            (
                (n, t.id, t.executed_at, t.transaction_type, t.net_value, t.model_dump_json())
                for n, t in transactions
            ),
        )
        write(
            conn,
            "baseline_orders",
            ["account_number", "id", "status", "updated_at", "raw"],
            (
                (n, o.id, str(o.status.value), o.updated_at, o.model_dump_json())
                for n, o in orders
            ),
        )
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "transactions": len(transactions),
                "orders": len(orders),
                "fetch_seconds": fetched - started,
                "write_seconds": done - fetched,
                "seconds": done - started,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
