"""The tastytrade Python SDK (tastyware `tastytrade`, pinned in infra/local/requirements.txt) as
an oracle for the simulator: every endpoint the SDK has a model for is read through the SDK's
own methods, so its pydantic models validate what the simulator answers.

Input (environment): TT_BASE_URL, TT_SECRET, TT_REFRESH. Output: one JSON line, a list of
{"endpoint", "read", "errors": [{"model", "field", "type", "message"}], "failure"} per read.
Nothing is tolerated here: the Rust test (tests/integration/sdk_oracle.rs) names the
exceptions, each with its reason.
"""

import asyncio
import json
import os
from datetime import date, timedelta

import tastytrade.account
import tastytrade.session
from pydantic import ValidationError
from tastytrade import Account, DXLinkStreamer, Session
from tastytrade.dxfeed import Greeks
from tastytrade.instruments import Option
from tastytrade.watchlists import PrivateWatchlist

RESULTS = []
# The endpoint being read, so that a model refusing a row says where the row came from.
CURRENT = {"endpoint": None}


def errors_of(e, data=None):
    return [
        {
            "endpoint": CURRENT["endpoint"],
            "model": e.title,
            "field": ".".join(str(part) for part in error["loc"]),
            "type": error["type"],
            "message": error["msg"],
            # The row's keys: a tolerated shape (the sparse EOD snapshot) is told by them.
            "keys": sorted(data) if data is not None else None,
        }
        for error in e.errors()
    ]


def recording(model):
    """`model` as the SDK calls it (`Model(**row)`), but a row it refuses is recorded and built
    unvalidated, so that one bad row does not hide the rows after it."""

    def build(**data):
        try:
            return model(**data)
        except ValidationError as e:
            errors = errors_of(e, data)
            RESULTS.append({"endpoint": CURRENT["endpoint"], "read": 0, "errors": errors})
            return model.model_construct(**data)

    return build


MODELS = (
    "Transaction",
    "CurrentPosition",
    "PlacedOrder",
    "PlacedComplexOrder",
    "AccountBalance",
    "AccountBalanceSnapshot",
    "NetLiqOhlc",
)
for name in MODELS:
    setattr(tastytrade.account, name, recording(getattr(tastytrade.account, name)))
tastytrade.session.Customer = recording(tastytrade.session.Customer)


async def check(endpoint, call):
    """Runs `call`, recording how many objects the SDK built or why it could not."""
    CURRENT["endpoint"] = endpoint
    entry = {"endpoint": endpoint, "read": 0, "errors": []}
    try:
        value = await call
        entry["read"] = len(value) if isinstance(value, list) else 1
        return value
    except ValidationError as e:
        entry["errors"] = errors_of(e)
    except Exception as e:  # noqa: BLE001 - any other failure is reported, not raised
        entry["failure"] = f"{type(e).__name__}: {e}"
    finally:
        RESULTS.append(entry)
    return None


async def quote_token(session):
    """`/api-quote-tokens` has no model: the SDK's streamer reads these two keys."""
    data = await session._get("/api-quote-tokens")
    missing = [key for key in ("token", "dxlink-url") if key not in data]
    if missing:
        raise KeyError(f"missing {missing}")
    return data


async def greeks(session, positions):
    """The SDK's own DXLink streamer against the simulator's feed: one Greeks event for each
    option held, through the handshake, COMPACT data and the SDK's Greeks model."""
    symbols = sorted(
        {
            Option.occ_to_streamer_symbol(p.symbol)
            for p in positions
            if getattr(p.instrument_type, "value", p.instrument_type) == "Equity Option"
        }
    )
    if not symbols:
        raise ValueError("no option positions to ask greeks for")
    async with DXLinkStreamer(session) as streamer:
        await streamer.subscribe(Greeks, symbols)
        events = [await asyncio.wait_for(streamer.get_event(Greeks), 10) for _ in symbols]
    missing = set(symbols) - {e.event_symbol for e in events}
    if missing:
        raise KeyError(f"no greeks for {sorted(missing)}")
    return events


async def main():
    session = Session(os.environ["TT_SECRET"], os.environ["TT_REFRESH"])
    # The SDK knows only tastytrade's two hosts; point its one client at the simulator.
    session._client.base_url = os.environ["TT_BASE_URL"]
    await check("customer", session.get_customer())
    accounts = await check("accounts", Account.get(session)) or []
    held = []
    for account in accounts:
        opened = account.opened_at.date() if account.opened_at else date(2000, 1, 1)
        await check(
            "transactions",
            account.get_history(session, start_date=opened, per_page=2000, page_offset=None),
        )
        held += await check("positions", account.get_positions(session, include_marks=True)) or []
        orders = await check(
            "orders",
            account.get_order_history(
                session, start_date=opened, per_page=200, page_offset=None
            ),
        )
        await check("live_orders", account.get_live_orders(session))
        await check(
            "complex_orders",
            account.get_complex_order_history(session, per_page=200, page_offset=None),
        )
        await check("trading_status", account.get_trading_status(session))
        await check(
            "net_liq_history",
            account.get_net_liquidating_value_history(session, time_back="all"),
        )
        if orders:
            await check("order", account.get_order(session, orders[0].id))
        for currency in ("USD", "EUR"):
            await check("balances", account.get_balances(session, currency=currency))
        await check(
            "balance_snapshots",
            account.get_balance_snapshots(
                session,
                start_date=date.today() - timedelta(days=60),
                page_offset=None,
                time_of_day="EOD",
            ),
        )
    await check("watchlists", PrivateWatchlist.get(session))
    await check("greeks", greeks(session, held))
    await check("quote_tokens", quote_token(session))
    print(json.dumps(RESULTS))


if __name__ == "__main__":
    asyncio.run(main())
