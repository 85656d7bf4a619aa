"""The peer of `make bench`: the tastyware `tastytrade` SDK fetches an account's full transaction
and order history from a tastytrade-compatible base URL (the simulator), and psycopg writes the
same rows tastysync writes, the fastest honest way Python offers: per table, COPY into a staging
table and one upsert on the table's natural key.

Like for like: the rows go into copies of tastysync's own tables (schema `peer`, created `LIKE`
the migrated ones), so the peer stores transactions, orders, order legs and order fills as rows,
with every column of ours that the SDK's models carry (signs applied, effects derived from
them, the model as JSON in `raw`). The bench then checks the peer's tables against the
simulator's truth with the same assertions it applies to ours.

Input (environment): TT_BASE_URL, TT_SECRET, TT_REFRESH, DATABASE_URL, PEER_ACCOUNT_ID (the
account id its rows carry), TT_PER_PAGE (2000, the broker's maximum, as tastysync asks).
Output: one JSON line of counts, columns written and seconds.
"""

import asyncio
import json
import os
import time
from datetime import date
from enum import Enum

import psycopg
from tastytrade import Account, Session

TABLES = {
    "transactions": ["account_id", "tastytrade_transaction_id"],
    "orders": ["account_id", "tastytrade_order_id"],
    "order_legs": ["account_id", "tastytrade_order_id", "leg_key"],
    "order_fills": ["account_id", "tastytrade_order_id", "leg_key", "fill_id"],
}

# Our column names that differ from the SDK's field names.
RENAMED = {
    "tastytrade_transaction_id": "id",
    "tastytrade_order_id": "id",
    "broker_updated_at": "updated_at",
    "broker_created_at": "created_at",
}


def plain(value):
    """What psycopg stores for a model's value: enums as their text."""
    return value.value if isinstance(value, Enum) else value


def effect(value):
    """The SDK signs amounts and drops their `*-effect`; ours keeps both."""
    if value is None:
        return None
    return "Credit" if value > 0 else "Debit" if value < 0 else "None"


# Our row's own times (their defaults), which tastysync does not write either.
BOOKKEEPING = {"created_at", "updated_at"}


def getters(columns, fields, fixed):
    """For each of `columns` that the model can fill: the function that reads it from a row."""
    chosen = {}
    for column in columns:
        if column in BOOKKEEPING:
            continue
        if column in fixed:
            chosen[column] = fixed[column]
        elif RENAMED.get(column, column) in fields:
            field = RENAMED.get(column, column)
            chosen[column] = lambda row, f=field: plain(getattr(row, f))
        elif column.endswith("_effect") and column[: -len("_effect")] in fields:
            field = column[: -len("_effect")]
            chosen[column] = lambda row, f=field: effect(getattr(row, f))
    return chosen


def leg_keys(legs):
    """tastysync's key of an order's legs: symbol|action, numbered when it repeats."""
    seen, keys = {}, []
    for leg in legs:
        base = f"{leg.symbol or ''}|{plain(leg.action) or ''}"
        seen[base] = seen.get(base, 0) + 1
        keys.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return keys


def write(conn, table, chosen, rows):
    """COPY into a temporary staging table, then one INSERT ... ON CONFLICT into the table."""
    names = list(chosen)
    getters_ = [chosen[n] for n in names]
    listed = ", ".join(names)
    key = TABLES[table]
    with conn.cursor() as cur:
        cur.execute(f"CREATE TEMP TABLE staging (LIKE peer.{table} INCLUDING DEFAULTS) ON COMMIT DROP")
        with cur.copy(f"COPY staging ({listed}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([get(row) for get in getters_])
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in names if c not in key)
        cur.execute(
            f"INSERT INTO peer.{table} ({listed}) SELECT {listed} FROM staging "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
        )
    conn.commit()


def table_columns(conn, table):
    return [
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'peer' AND table_name = %s ORDER BY ordinal_position",
            (table,),
        )
    ]


async def main():
    per_page = int(os.environ.get("TT_PER_PAGE", "2000"))
    account_id = os.environ["PEER_ACCOUNT_ID"]
    session = Session(os.environ["TT_SECRET"], os.environ["TT_REFRESH"])
    # The SDK knows only tastytrade's two hosts; point its one client at the given base URL.
    session._client.base_url = os.environ["TT_BASE_URL"]
    started = time.perf_counter()
    accounts = await Account.get(session)
    transactions, orders = [], []
    for account in accounts:
        opened = account.opened_at.date() if account.opened_at else date(2000, 1, 1)
        transactions += await account.get_history(
            session, start_date=opened, per_page=per_page, page_offset=None
        )
        orders += await account.get_order_history(
            session, start_date=opened, per_page=min(per_page, 200), page_offset=None
        )
    fetched = time.perf_counter()

    # Legs and fills as rows, each with its order's id and its leg's key.
    legs, fills = [], []
    for order in orders:
        for index, (leg, key) in enumerate(zip(order.legs, leg_keys(order.legs))):
            legs.append((order.id, index, key, leg))
            for fill in leg.fills or []:
                fills.append((order.id, key, fill))

    written = {}
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS peer")
        for table in TABLES:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS peer.{table} (LIKE public.{table} INCLUDING ALL)"
            )
        conn.commit()
        own = {"account_id": lambda _row: account_id, "removed_at": lambda _row: None}
        as_json = {"raw": lambda row: row.model_dump_json(by_alias=True)}
        plan = [
            (
                "transactions",
                type(transactions[0]).model_fields if transactions else {},
                {**own, **as_json},
                transactions,
            ),
            (
                "orders",
                type(orders[0]).model_fields if orders else {},
                {**own, **as_json},
                orders,
            ),
        ]
        for table, fields, fixed, rows in plan:
            chosen = getters(table_columns(conn, table), fields, fixed)
            write(conn, table, chosen, rows)
            written[table] = len(chosen)
        leg_columns = {
            **own,
            "tastytrade_order_id": lambda r: r[0],
            "leg_index": lambda r: r[1],
            "leg_key": lambda r: r[2],
            "symbol": lambda r: r[3].symbol,
            "instrument_type": lambda r: plain(r[3].instrument_type),
            "action": lambda r: plain(r[3].action),
            "quantity": lambda r: r[3].quantity,
            "remaining_quantity": lambda r: r[3].remaining_quantity,
        }
        fill_columns = {
            **own,
            "tastytrade_order_id": lambda r: r[0],
            "leg_key": lambda r: r[1],
            **{
                name: (lambda r, f=name: getattr(r[2], f))
                for name in [
                    "fill_id",
                    "quantity",
                    "fill_price",
                    "filled_at",
                    "destination_venue",
                    "ext_group_fill_id",
                    "ext_exec_id",
                ]
            },
        }
        for table, fixed, rows in [
            ("order_legs", leg_columns, legs),
            ("order_fills", fill_columns, fills),
        ]:
            present = set(table_columns(conn, table))
            chosen = {c: get for c, get in fixed.items() if c in present}
            write(conn, table, chosen, rows)
            written[table] = len(chosen)
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "rows": {
                    "transactions": len(transactions),
                    "orders": len(orders),
                    "order_legs": len(legs),
                    "order_fills": len(fills),
                },
                "columns": written,
                "fetch_seconds": fetched - started,
                "write_seconds": done - fetched,
                "seconds": done - started,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
