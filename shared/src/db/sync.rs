//! What the sync reads from and writes to Postgres: the account to sync and its sealed grant,
//! one batched upsert per page for each entity, and the account's status and watermarks.

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::{GenericClient, Pool};
use uuid::Uuid;

use super::DbError;
use super::batch::Columns;
use crate::domain::accounts::AccountStatus;
use crate::domain::accounts::{BalanceTarget, SyncAccount};
use crate::secrets::{Purpose, Sealed};
use crate::tastytrade::model::{Balance, Fill, Leg, Order, Position, Record, Transaction};
use crate::tastytrade::occ::{self, OptionSymbol};

const LOAD_ACCOUNT: &str = "
    SELECT a.id, a.user_id, a.account_number, a.environment, a.credential_id,
           c.grant_kind = 'personal', a.opened_at, a.transactions_synced_to, a.orders_synced_to,
           a.balance_snapshots_synced_to
    FROM tastytrade_accounts a JOIN tastytrade_credentials c ON c.id = a.credential_id
    WHERE a.id = $1 AND a.unlinked_at IS NULL";

const LOAD_SECRETS: &str = "
    SELECT purpose, scheme_version, kms_key_id, wrapped_key, nonce, ciphertext, expires_at
    FROM tastytrade_credential_secrets WHERE credential_id = $1";

const STORE_ACCESS_TOKEN: &str = "
    INSERT INTO tastytrade_credential_secrets
        (credential_id, purpose, scheme_version, kms_key_id, wrapped_key, nonce, ciphertext, expires_at)
    VALUES ($1, 'access_token', $2, $3, $4, $5, $6, $7)
    ON CONFLICT (credential_id, purpose) DO UPDATE SET
        scheme_version = EXCLUDED.scheme_version, kms_key_id = EXCLUDED.kms_key_id,
        wrapped_key = EXCLUDED.wrapped_key, nonce = EXCLUDED.nonce,
        ciphertext = EXCLUDED.ciphertext, expires_at = EXCLUDED.expires_at";

/// Caches the grant's current access token, sealed, so the next sync within its lifetime does
/// not mint another one.
pub async fn store_access_token(
    pool: &Pool,
    credential_id: Uuid,
    sealed: &Sealed,
    expires_at: DateTime<Utc>,
) -> Result<(), DbError> {
    let client = pool.get().await?;
    client
        .execute(
            STORE_ACCESS_TOKEN,
            &[
                &credential_id,
                &sealed.scheme_version,
                &sealed.kms_key_id,
                &sealed.wrapped_key,
                &sealed.nonce,
                &sealed.ciphertext,
                &expires_at,
            ],
        )
        .await?;
    Ok(())
}

/// The account and its sealed grant; `None` when it was unlinked or deleted since queued.
pub async fn load_account(pool: &Pool, account_id: Uuid) -> Result<Option<SyncAccount>, DbError> {
    let client = pool.get().await?;
    let Some(row) = client.query_opt(LOAD_ACCOUNT, &[&account_id]).await? else {
        return Ok(None);
    };
    let credential_id: Uuid = row.get(4);
    let mut refresh_token = None;
    let mut client_secret = None;
    let mut access_token = None;
    for s in client.query(LOAD_SECRETS, &[&credential_id]).await? {
        let sealed = Sealed {
            scheme_version: s.get(1),
            kms_key_id: s.get(2),
            wrapped_key: s.get(3),
            nonce: s.get(4),
            ciphertext: s.get(5),
        };
        match s.get::<_, &str>(0) {
            p if p == Purpose::RefreshToken.as_str() => refresh_token = Some(sealed),
            p if p == Purpose::ClientSecret.as_str() => client_secret = Some(sealed),
            p if p == Purpose::AccessToken.as_str() => {
                access_token = s
                    .get::<_, Option<DateTime<Utc>>>(6)
                    .map(|expires| (sealed, expires));
            }
            _ => {}
        }
    }
    let Some(refresh_token) = refresh_token else {
        return Ok(None);
    };
    let environment = super::environment(row.try_get(3)?)?;
    Ok(Some(SyncAccount {
        id: row.get(0),
        user_id: row.get(1),
        account_number: row.get(2),
        environment,
        credential_id,
        personal_grant: row.get(5),
        opened_at: row.get(6),
        transactions_synced_to: row.get(7),
        orders_synced_to: row.get(8),
        snapshots_synced_to: row.get(9),
        refresh_token,
        client_secret,
        access_token,
    }))
}

const MARK_RUNNING: &str = "UPDATE tastytrade_accounts SET last_sync_status = 'RUNNING', last_sync_at = now() WHERE id = $1";

const MARK_SUCCESS: &str = "
    UPDATE tastytrade_accounts SET last_sync_status = 'SUCCESS', last_successful_sync_at = now(),
        last_error = NULL, transactions_synced_to = $2, orders_synced_to = $3,
        balance_snapshots_synced_to = $4, sync_queued_at = NULL
    WHERE id = $1";

/// A finished sync, good or bad, clears the queued marker: the account is due again.
const MARK_FAILED: &str = "
    UPDATE tastytrade_accounts SET last_sync_status = $2, last_error = $3, sync_queued_at = NULL
    WHERE id = $1";

pub async fn mark_running(pool: &Pool, account_id: Uuid) -> Result<(), DbError> {
    pool.get()
        .await?
        .execute(MARK_RUNNING, &[&account_id])
        .await?;
    Ok(())
}

pub async fn mark_success(
    pool: &Pool,
    account_id: Uuid,
    transactions_to: DateTime<Utc>,
    orders_to: DateTime<Utc>,
    snapshots_to: NaiveDate,
) -> Result<(), DbError> {
    pool.get()
        .await?
        .execute(
            MARK_SUCCESS,
            &[&account_id, &transactions_to, &orders_to, &snapshots_to],
        )
        .await?;
    Ok(())
}

/// `status` is FAILED or NEEDS_REAUTH; `error` is shown to the user, so it names no internals.
pub async fn mark_failed(
    pool: &Pool,
    account_id: Uuid,
    status: AccountStatus,
    error: &str,
) -> Result<(), DbError> {
    pool.get()
        .await?
        .execute(MARK_FAILED, &[&account_id, &status.as_str(), &error])
        .await?;
    Ok(())
}

/// Upserts one page of transactions; returns the rows inserted or changed.
pub async fn upsert_transactions(
    client: &impl GenericClient,
    account_id: Uuid,
    account_number: &str,
    rows: &[Record<Transaction>],
) -> Result<u64, DbError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut c = Columns::new("transactions", rows.iter().map(|r| &r.item));
    c.constant("account_id", "uuid", account_id)
        .col("tastytrade_transaction_id", "bigint", |x| x.id)
        .col("account_number", "text", |x| {
            x.account_number
                .clone()
                .unwrap_or_else(|| account_number.to_owned())
        })
        .required("transaction_type", "text", |x| x.transaction_type.clone())?
        .text("transaction_sub_type", |x| x.transaction_sub_type.clone())
        .text("description", |x| x.description.clone())
        .required("executed_at", "timestamptz", executed_at)?
        .required("transaction_date", "date", |x| {
            x.transaction_date
                .or_else(|| executed_at(x).map(|t| t.date_naive()))
        })?
        .numeric("value", Transaction::signed_value)
        .effect("value_effect", |x| x.value_effect)
        .numeric("net_value", Transaction::signed_net_value)
        .effect("net_value_effect", |x| x.net_value_effect)
        .col("is_estimated_fee", "boolean", |x| {
            x.is_estimated_fee.unwrap_or(false)
        })
        .text("symbol", |x| x.symbol.clone())
        .text("underlying_symbol", |x| x.underlying_symbol.clone())
        .text("instrument_type", |x| x.instrument_type.clone())
        .text("action", |x| x.action.clone())
        .numeric("quantity", |x| x.quantity)
        .numeric("price", |x| x.price)
        .text("currency", |x| x.currency.clone())
        .col("order_id", "bigint", |x| x.order_id)
        .col("leg_count", "integer", |x| {
            x.leg_count.and_then(|n| i32::try_from(n).ok())
        })
        .col("reverses_id", "bigint", |x| x.reverses_id)
        .col("cost_basis_reconciliation_date", "date", |x| {
            x.cost_basis_reconciliation_date
        })
        .col("broker_created_at", "timestamptz", |x| x.created_at)
        .values("raw", "jsonb", rows.iter().map(|r| r.raw.clone()).collect());
    transaction_fees(&mut c);
    transaction_execution(&mut c);
    execute(client, &c, &["account_id", "tastytrade_transaction_id"]).await
}

/// The fees and charges, each signed by its own `*-effect`.
fn transaction_fees(c: &mut Columns<'_, Transaction>) {
    c.numeric("commission", Transaction::signed_commission)
        .effect("commission_effect", |x| x.commission_effect)
        .numeric("clearing_fees", Transaction::signed_clearing_fees)
        .effect("clearing_fees_effect", |x| x.clearing_fees_effect)
        .numeric("regulatory_fees", Transaction::signed_regulatory_fees)
        .effect("regulatory_fees_effect", |x| x.regulatory_fees_effect)
        .numeric(
            "proprietary_index_option_fees",
            Transaction::signed_proprietary_index_option_fees,
        )
        .effect("proprietary_index_option_fees_effect", |x| {
            x.proprietary_index_option_fees_effect
        })
        .numeric(
            "currency_conversion_fees",
            Transaction::signed_currency_conversion_fees,
        )
        .effect("currency_conversion_fees_effect", |x| {
            x.currency_conversion_fees_effect
        })
        .numeric("other_charge", Transaction::signed_other_charge)
        .effect("other_charge_effect", |x| x.other_charge_effect)
        .text("other_charge_description", |x| {
            x.other_charge_description.clone()
        });
}

/// Where and how the trade was executed, as the exchange reported it.
fn transaction_execution(c: &mut Columns<'_, Transaction>) {
    c.text("exec_id", |x| x.exec_id.clone())
        .text("ext_exec_id", |x| x.ext_exec_id.clone())
        .text("ext_group_id", |x| x.ext_group_id.clone())
        .text("ext_group_fill_id", |x| x.ext_group_fill_id.clone())
        .text("ext_exchange_order_number", |x| {
            x.ext_exchange_order_number.clone()
        })
        .col("ext_global_order_number", "bigint", |x| {
            x.ext_global_order_number
        })
        .text("exchange", |x| x.exchange.clone())
        .text("destination_venue", |x| x.destination_venue.clone())
        .numeric("agency_price", |x| x.agency_price)
        .numeric("principal_price", |x| x.principal_price);
}

/// A transaction without an execution time is dated by its trade date, then by its creation;
/// with none of the three it has no time at all.
fn executed_at(t: &Transaction) -> Option<DateTime<Utc>> {
    t.executed_at.or(t.created_at).or_else(|| {
        t.transaction_date
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|d| d.and_utc())
    })
}

async fn execute<R>(
    client: &impl GenericClient,
    columns: &Columns<'_, R>,
    key: &[&str],
) -> Result<u64, DbError> {
    let batch = columns.batch();
    let statement = client
        .prepare_cached(&batch.upsert_sql(columns.table(), key))
        .await?;
    Ok(client.execute(&statement, &batch.params()).await?)
}

/// Upserts one page of orders with their legs and fills; returns the rows inserted or changed.
pub async fn upsert_orders(
    client: &impl GenericClient,
    account_id: Uuid,
    account_number: &str,
    rows: &[Record<Order>],
) -> Result<u64, DbError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut c = Columns::new("orders", rows.iter().map(|r| &r.item));
    c.constant("account_id", "uuid", account_id)
        .col("tastytrade_order_id", "bigint", |x| x.id)
        .col("account_number", "text", |x| {
            x.account_number
                .clone()
                .unwrap_or_else(|| account_number.to_owned())
        })
        .required("status", "text", |x| x.status.clone())?
        .text("order_type", |o| o.order_type.clone())
        .text("time_in_force", |o| o.time_in_force.clone())
        .numeric("size", |o| o.size)
        .text("underlying_symbol", |o| o.underlying_symbol.clone())
        .text("underlying_instrument_type", |o| {
            o.underlying_instrument_type.clone()
        })
        .numeric("price", Order::signed_price)
        .effect("price_effect", |o| o.price_effect)
        .numeric("value", Order::signed_value)
        .effect("value_effect", |o| o.value_effect)
        .numeric("stop_trigger", |o| o.stop_trigger)
        .col("gtc_date", "date", |x| x.gtc_date)
        .col("cancellable", "boolean", |x| x.cancellable)
        .col("editable", "boolean", |x| x.editable)
        .col("edited", "boolean", |x| x.edited)
        .text("contingent_status", |o| o.contingent_status.clone())
        .text("confirmation_status", |o| o.confirmation_status.clone())
        .text("reject_reason", |o| o.reject_reason.clone())
        .timestamptz("received_at", |o| o.received_at)
        .timestamptz("in_flight_at", |o| o.in_flight_at)
        .timestamptz("live_at", |o| o.live_at)
        .timestamptz("cancelled_at", |o| o.cancelled_at)
        .timestamptz("terminal_at", |o| o.terminal_at)
        .timestamptz("broker_updated_at", |o| o.updated_at)
        .col("replaces_order_id", "bigint", |x| x.replaces_order_id)
        .col("replacing_order_id", "bigint", |x| x.replacing_order_id)
        .col("complex_order_id", "bigint", |x| x.complex_order_id)
        .text("complex_order_tag", |o| o.complex_order_tag.clone())
        .text("source", |o| o.source.clone())
        .text("external_identifier", |o| o.external_identifier.clone())
        .values("raw", "jsonb", rows.iter().map(|r| r.raw.clone()).collect());
    let changed = execute(client, &c, &["account_id", "tastytrade_order_id"]).await?;
    let legs: Vec<OrderLeg<'_>> = rows
        .iter()
        .flat_map(|r| {
            r.item
                .legs
                .iter()
                .enumerate()
                .map(move |(i, leg)| (r.item.id, i16::try_from(i).unwrap_or(i16::MAX), leg))
        })
        .collect();
    Ok(changed + upsert_legs(client, account_id, &legs).await?)
}

/// An order's leg: the order's id, the leg's index in it, the leg.
type OrderLeg<'a> = (i64, i16, &'a Leg);

/// Upserts the legs of a page of orders, then their fills; the rows inserted or changed.
async fn upsert_legs(
    client: &impl GenericClient,
    account_id: Uuid,
    legs: &[OrderLeg<'_>],
) -> Result<u64, DbError> {
    if legs.is_empty() {
        return Ok(0);
    }
    let mut c = Columns::new("order_legs", legs);
    c.constant("account_id", "uuid", account_id)
        .col("tastytrade_order_id", "bigint", |l| l.0)
        .col("leg_index", "smallint", |l| l.1)
        .required("symbol", "text", |l| l.2.symbol.clone())?
        .text("instrument_type", |l| l.2.instrument_type.clone())
        .text("action", |l| l.2.action.clone())
        .numeric("quantity", |l| l.2.quantity)
        .numeric("remaining_quantity", |l| l.2.remaining_quantity);
    let key = ["account_id", "tastytrade_order_id", "leg_index"];
    let changed = execute(client, &c, &key).await?;
    let fills: Vec<(i64, i16, &Fill)> = legs
        .iter()
        .flat_map(|(order, index, leg)| leg.fills.iter().map(move |f| (*order, *index, f)))
        .collect();
    if fills.is_empty() {
        return Ok(changed);
    }
    let mut c = Columns::new("order_fills", &fills);
    c.constant("account_id", "uuid", account_id)
        .col("tastytrade_order_id", "bigint", |f| f.0)
        .col("leg_index", "smallint", |f| f.1)
        .col("fill_id", "text", |f| f.2.fill_id.clone())
        .required("quantity", "numeric", |f| f.2.quantity)?
        .numeric("fill_price", |f| f.2.fill_price)
        .required("filled_at", "timestamptz", |f| f.2.filled_at)?
        .text("destination_venue", |f| f.2.destination_venue.clone())
        .text("ext_group_fill_id", |f| f.2.ext_group_fill_id.clone())
        .text("ext_exec_id", |f| f.2.ext_exec_id.clone());
    let key = ["account_id", "tastytrade_order_id", "leg_index", "fill_id"];
    Ok(changed + execute(client, &c, &key).await?)
}

/// The option a position's symbol names, when it is an OCC option symbol.
fn occ_option(position: &Position) -> Option<occ::OccOption> {
    match occ::parse(&position.symbol) {
        Some(OptionSymbol::Occ(option)) => Some(option),
        _ => None,
    }
}

const DELETE_CLOSED_POSITIONS: &str =
    "DELETE FROM positions WHERE account_id = $1 AND NOT (symbol = ANY($2))";

/// Replaces the account's positions with `rows`, in one transaction: upserts what is held,
/// deletes what is not. Returns the rows inserted, changed or deleted.
pub async fn replace_positions(
    pool: &Pool,
    account_id: Uuid,
    account_number: &str,
    rows: &[Record<Position>],
) -> Result<u64, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let symbols: Vec<String> = rows.iter().map(|r| r.item.symbol.clone()).collect();
    let mut changed = 0;
    if !rows.is_empty() {
        let mut c = Columns::new("positions", rows.iter().map(|r| &r.item));
        c.constant("account_id", "uuid", account_id)
            .col("symbol", "text", |x| x.symbol.clone())
            .col("account_number", "text", |x| {
                x.account_number
                    .clone()
                    .unwrap_or_else(|| account_number.to_owned())
            })
            .text("underlying_symbol", |p| p.underlying_symbol.clone())
            .text("instrument_type", |p| p.instrument_type.clone())
            .required("quantity", "numeric", Position::signed_quantity)?
            .text("quantity_direction", |p| p.quantity_direction.clone())
            .numeric("multiplier", |p| p.multiplier)
            .numeric("average_open_price", |p| p.average_open_price)
            .numeric("average_daily_market_close_price", |p| {
                p.average_daily_market_close_price
            })
            .numeric("average_yearly_market_close_price", |p| {
                p.average_yearly_market_close_price
            })
            .numeric("close_price", |p| p.close_price)
            .numeric("mark", |p| p.mark)
            .numeric("mark_price", |p| p.mark_price)
            .effect("cost_effect", |p| p.cost_effect)
            .numeric("realized_day_gain", Position::signed_realized_day_gain)
            .effect("realized_day_gain_effect", |p| p.realized_day_gain_effect)
            .col("realized_day_gain_date", "date", |x| {
                x.realized_day_gain_date
            })
            .numeric("realized_today", Position::signed_realized_today)
            .effect("realized_today_effect", |p| p.realized_today_effect)
            .col("realized_today_date", "date", |x| x.realized_today_date)
            .numeric("restricted_quantity", |p| p.restricted_quantity)
            .col("is_suppressed", "boolean", |x| x.is_suppressed)
            .col("is_frozen", "boolean", |x| x.is_frozen)
            .col("expires_at", "timestamptz", |x| x.expires_at)
            .text("option_root", |p| occ_option(p).map(|o| o.root))
            .date("option_expiration", |p| occ_option(p).map(|o| o.expiration))
            .text("option_type", |p| {
                occ_option(p).map(|o| o.kind.as_char().to_owned())
            })
            .numeric("strike_price", |p| occ_option(p).map(|o| o.strike))
            .col("broker_created_at", "timestamptz", |x| x.created_at)
            .col("broker_updated_at", "timestamptz", |x| x.updated_at)
            .values("raw", "jsonb", rows.iter().map(|r| r.raw.clone()).collect());
        changed += execute(&tx, &c, &["account_id", "symbol"]).await?;
    }
    changed += tx
        .execute(DELETE_CLOSED_POSITIONS, &[&account_id, &symbols])
        .await?;
    tx.commit().await?;
    Ok(changed)
}

/// Upserts balances (current, or one page of snapshots); returns the rows inserted or changed.
pub async fn upsert_balances(
    client: &impl GenericClient,
    account_id: Uuid,
    account_number: &str,
    rows: &[Record<Balance>],
    target: BalanceTarget,
) -> Result<u64, DbError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let table = match target {
        BalanceTarget::Current => "account_balances",
        BalanceTarget::BrokerSnapshot | BalanceTarget::Capture(_) => "account_balance_snapshots",
    };
    let mut c = Columns::new(table, rows.iter().map(|r| &r.item));
    c.constant("account_id", "uuid", account_id)
        .required("currency", "text", |x| x.currency.clone())?
        .col("account_number", "text", |x| {
            x.account_number
                .clone()
                .unwrap_or_else(|| account_number.to_owned())
        })
        .numeric("cash_balance", |x| x.cash_balance)
        .numeric("net_liquidating_value", |x| x.net_liquidating_value)
        .numeric("long_equity_value", |x| x.long_equity_value)
        .numeric("short_equity_value", |x| x.short_equity_value)
        .numeric("long_derivative_value", |x| x.long_derivative_value)
        .numeric("short_derivative_value", |x| x.short_derivative_value)
        .numeric("margin_equity", |x| x.margin_equity)
        .numeric("equity_buying_power", |x| x.equity_buying_power)
        .numeric("derivative_buying_power", |x| x.derivative_buying_power)
        .numeric("day_trading_buying_power", |x| x.day_trading_buying_power)
        .numeric("maintenance_requirement", |x| x.maintenance_requirement)
        .numeric("pending_cash", Balance::signed_pending_cash)
        .effect("pending_cash_effect", |x| x.pending_cash_effect)
        .values("raw", "jsonb", rows.iter().map(|r| r.raw.clone()).collect());
    match target {
        BalanceTarget::Current => {
            c.numeric("available_trading_funds", |x| x.available_trading_funds)
                .numeric("cash_available_to_withdraw", |x| {
                    x.cash_available_to_withdraw
                })
                .numeric("maintenance_excess", |x| x.maintenance_excess)
                .col("snapshot_date", "date", |x| x.snapshot_date)
                .col("broker_updated_at", "timestamptz", |x| x.updated_at);
            execute(client, &c, &["account_id", "currency"]).await
        }
        BalanceTarget::BrokerSnapshot | BalanceTarget::Capture(_) => {
            match target {
                BalanceTarget::Capture(at) => c
                    .constant("snapshot_date", "date", at.date_naive())
                    .constant("time_of_day", "text", "Intraday".to_owned())
                    .constant("source", "text", "capture".to_owned())
                    .constant("captured_at", "timestamptz", Some(at)),
                _ => c
                    .required("snapshot_date", "date", |x| x.snapshot_date)?
                    .required("time_of_day", "text", |x| x.time_of_day.clone())?
                    .constant("source", "text", "broker".to_owned())
                    .constant("captured_at", "timestamptz", None::<DateTime<Utc>>),
            }
            // The first capture of the day keeps its time; `updated_at` tells the last change,
            // and an unchanged balance is not rewritten.
            .insert_only("captured_at");
            let key = ["account_id", "snapshot_date", "time_of_day", "currency"];
            execute(client, &c, &key).await
        }
    }
}
