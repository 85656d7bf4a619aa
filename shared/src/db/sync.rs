//! What the sync reads from and writes to Postgres: the account to sync and its sealed grant,
//! one batched upsert per page for each entity, and the account's status and watermarks.

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::{GenericClient, Pool};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::DbError;
use super::batch::Batch;
use crate::secrets::{Purpose, Sealed};
use crate::tastytrade::Environment;
use crate::tastytrade::model::{Balance, Order, Position, Record, Transaction};
use crate::tastytrade::occ::{self, OptionSymbol};

/// An account with what the worker needs to act for its owner.
#[derive(Debug)]
pub struct SyncAccount {
    pub id: Uuid,
    pub user_id: String,
    pub account_number: String,
    pub environment: Environment,
    pub credential_id: Uuid,
    pub personal_grant: bool,
    pub opened_at: Option<DateTime<Utc>>,
    pub transactions_synced_to: Option<DateTime<Utc>>,
    pub orders_synced_to: Option<DateTime<Utc>>,
    pub snapshots_synced_to: Option<NaiveDate>,
    pub refresh_token: Sealed,
    pub client_secret: Option<Sealed>,
    /// The access token cached by an earlier sync, sealed, with its expiry.
    pub access_token: Option<(Sealed, DateTime<Utc>)>,
}

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
    let environment: &str = row.get(3);
    Ok(Some(SyncAccount {
        id: row.get(0),
        user_id: row.get(1),
        account_number: row.get(2),
        environment: if environment == "production" {
            Environment::Production
        } else {
            Environment::Sandbox
        },
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
    status: &str,
    error: &str,
) -> Result<(), DbError> {
    pool.get()
        .await?
        .execute(MARK_FAILED, &[&account_id, &status, &error])
        .await?;
    Ok(())
}

fn effect(e: Option<crate::tastytrade::model::Effect>) -> Option<String> {
    e.map(|e| e.as_str().to_owned())
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
    let t =
        |f: fn(&Transaction) -> Option<String>| rows.iter().map(|r| f(&r.item)).collect::<Vec<_>>();
    let d = |f: fn(&Transaction) -> Option<Decimal>| {
        rows.iter().map(|r| f(&r.item)).collect::<Vec<_>>()
    };
    let mut b = Batch::default();
    b.col("account_id", "uuid", vec![account_id; rows.len()])
        .col(
            "tastytrade_transaction_id",
            "bigint",
            rows.iter().map(|r| r.item.id).collect(),
        )
        .col(
            "account_number",
            "text",
            rows.iter()
                .map(|r| {
                    r.item
                        .account_number
                        .clone()
                        .unwrap_or_else(|| account_number.to_owned())
                })
                .collect(),
        )
        .col(
            "transaction_type",
            "text",
            rows.iter()
                .map(|r| {
                    r.item
                        .transaction_type
                        .clone()
                        .unwrap_or_else(|| "Unknown".into())
                })
                .collect(),
        )
        .col(
            "transaction_sub_type",
            "text",
            t(|x| x.transaction_sub_type.clone()),
        )
        .col("description", "text", t(|x| x.description.clone()))
        .col(
            "executed_at",
            "timestamptz",
            rows.iter().map(|r| executed_at(&r.item)).collect(),
        )
        .col(
            "transaction_date",
            "date",
            rows.iter()
                .map(|r| {
                    r.item
                        .transaction_date
                        .unwrap_or_else(|| executed_at(&r.item).date_naive())
                })
                .collect(),
        )
        .col("value", "numeric", d(Transaction::signed_value))
        .col("value_effect", "text", t(|x| effect(x.value_effect)))
        .col("net_value", "numeric", d(Transaction::signed_net_value))
        .col(
            "net_value_effect",
            "text",
            t(|x| effect(x.net_value_effect)),
        )
        .col(
            "is_estimated_fee",
            "boolean",
            rows.iter()
                .map(|r| r.item.is_estimated_fee.unwrap_or(false))
                .collect(),
        )
        .col("symbol", "text", t(|x| x.symbol.clone()))
        .col(
            "underlying_symbol",
            "text",
            t(|x| x.underlying_symbol.clone()),
        )
        .col("instrument_type", "text", t(|x| x.instrument_type.clone()))
        .col("action", "text", t(|x| x.action.clone()))
        .col("quantity", "numeric", d(|x| x.quantity))
        .col("price", "numeric", d(|x| x.price))
        .col("commission", "numeric", d(Transaction::signed_commission))
        .col(
            "commission_effect",
            "text",
            t(|x| effect(x.commission_effect)),
        )
        .col(
            "clearing_fees",
            "numeric",
            d(Transaction::signed_clearing_fees),
        )
        .col(
            "clearing_fees_effect",
            "text",
            t(|x| effect(x.clearing_fees_effect)),
        )
        .col(
            "regulatory_fees",
            "numeric",
            d(Transaction::signed_regulatory_fees),
        )
        .col(
            "regulatory_fees_effect",
            "text",
            t(|x| effect(x.regulatory_fees_effect)),
        )
        .col(
            "proprietary_index_option_fees",
            "numeric",
            d(Transaction::signed_proprietary_index_option_fees),
        )
        .col(
            "proprietary_index_option_fees_effect",
            "text",
            t(|x| effect(x.proprietary_index_option_fees_effect)),
        )
        .col(
            "currency_conversion_fees",
            "numeric",
            d(Transaction::signed_currency_conversion_fees),
        )
        .col(
            "currency_conversion_fees_effect",
            "text",
            t(|x| effect(x.currency_conversion_fees_effect)),
        )
        .col(
            "other_charge",
            "numeric",
            d(Transaction::signed_other_charge),
        )
        .col(
            "other_charge_effect",
            "text",
            t(|x| effect(x.other_charge_effect)),
        )
        .col(
            "other_charge_description",
            "text",
            t(|x| x.other_charge_description.clone()),
        )
        .col("currency", "text", t(|x| x.currency.clone()))
        .col(
            "order_id",
            "bigint",
            rows.iter().map(|r| r.item.order_id).collect(),
        )
        .col(
            "leg_count",
            "integer",
            rows.iter()
                .map(|r| r.item.leg_count.and_then(|n| i32::try_from(n).ok()))
                .collect(),
        )
        .col(
            "reverses_id",
            "bigint",
            rows.iter().map(|r| r.item.reverses_id).collect(),
        )
        .col("exec_id", "text", t(|x| x.exec_id.clone()))
        .col("ext_exec_id", "text", t(|x| x.ext_exec_id.clone()))
        .col("ext_group_id", "text", t(|x| x.ext_group_id.clone()))
        .col(
            "ext_group_fill_id",
            "text",
            t(|x| x.ext_group_fill_id.clone()),
        )
        .col(
            "ext_exchange_order_number",
            "text",
            t(|x| x.ext_exchange_order_number.clone()),
        )
        .col(
            "ext_global_order_number",
            "bigint",
            rows.iter()
                .map(|r| r.item.ext_global_order_number)
                .collect(),
        )
        .col("exchange", "text", t(|x| x.exchange.clone()))
        .col(
            "destination_venue",
            "text",
            t(|x| x.destination_venue.clone()),
        )
        .col("agency_price", "numeric", d(|x| x.agency_price))
        .col("principal_price", "numeric", d(|x| x.principal_price))
        .col(
            "cost_basis_reconciliation_date",
            "date",
            rows.iter()
                .map(|r| r.item.cost_basis_reconciliation_date)
                .collect(),
        )
        .col(
            "broker_created_at",
            "timestamptz",
            rows.iter().map(|r| r.item.created_at).collect(),
        )
        .col("raw", "jsonb", rows.iter().map(|r| r.raw.clone()).collect());
    execute(
        client,
        &b,
        "transactions",
        &["account_id", "tastytrade_transaction_id"],
    )
    .await
}

/// A transaction without an execution time is dated by its trade date, then by its creation.
fn executed_at(t: &Transaction) -> DateTime<Utc> {
    t.executed_at
        .or(t.created_at)
        .or_else(|| {
            t.transaction_date
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc())
        })
        .unwrap_or(DateTime::UNIX_EPOCH)
}

async fn execute(
    client: &impl GenericClient,
    batch: &Batch,
    table: &str,
    key: &[&str],
) -> Result<u64, DbError> {
    let statement = client.prepare_cached(&batch.upsert_sql(table, key)).await?;
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
    let t = |f: fn(&Order) -> Option<String>| rows.iter().map(|r| f(&r.item)).collect::<Vec<_>>();
    let d = |f: fn(&Order) -> Option<Decimal>| rows.iter().map(|r| f(&r.item)).collect::<Vec<_>>();
    let ts = |f: fn(&Order) -> Option<DateTime<Utc>>| {
        rows.iter().map(|r| f(&r.item)).collect::<Vec<_>>()
    };
    let mut b = Batch::default();
    b.col("account_id", "uuid", vec![account_id; rows.len()])
        .col(
            "tastytrade_order_id",
            "bigint",
            rows.iter().map(|r| r.item.id).collect(),
        )
        .col(
            "account_number",
            "text",
            rows.iter()
                .map(|r| {
                    r.item
                        .account_number
                        .clone()
                        .unwrap_or_else(|| account_number.to_owned())
                })
                .collect(),
        )
        .col(
            "status",
            "text",
            rows.iter()
                .map(|r| r.item.status.clone().unwrap_or_else(|| "Unknown".into()))
                .collect(),
        )
        .col("order_type", "text", t(|o| o.order_type.clone()))
        .col("time_in_force", "text", t(|o| o.time_in_force.clone()))
        .col("size", "numeric", d(|o| o.size))
        .col(
            "underlying_symbol",
            "text",
            t(|o| o.underlying_symbol.clone()),
        )
        .col(
            "underlying_instrument_type",
            "text",
            t(|o| o.underlying_instrument_type.clone()),
        )
        .col("price", "numeric", d(Order::signed_price))
        .col("price_effect", "text", t(|o| effect(o.price_effect)))
        .col("value", "numeric", d(Order::signed_value))
        .col("value_effect", "text", t(|o| effect(o.value_effect)))
        .col("stop_trigger", "numeric", d(|o| o.stop_trigger))
        .col(
            "gtc_date",
            "date",
            rows.iter().map(|r| r.item.gtc_date).collect(),
        )
        .col(
            "cancellable",
            "boolean",
            rows.iter().map(|r| r.item.cancellable).collect(),
        )
        .col(
            "editable",
            "boolean",
            rows.iter().map(|r| r.item.editable).collect(),
        )
        .col(
            "edited",
            "boolean",
            rows.iter().map(|r| r.item.edited).collect(),
        )
        .col(
            "contingent_status",
            "text",
            t(|o| o.contingent_status.clone()),
        )
        .col(
            "confirmation_status",
            "text",
            t(|o| o.confirmation_status.clone()),
        )
        .col("reject_reason", "text", t(|o| o.reject_reason.clone()))
        .col("received_at", "timestamptz", ts(|o| o.received_at))
        .col("in_flight_at", "timestamptz", ts(|o| o.in_flight_at))
        .col("live_at", "timestamptz", ts(|o| o.live_at))
        .col("cancelled_at", "timestamptz", ts(|o| o.cancelled_at))
        .col("terminal_at", "timestamptz", ts(|o| o.terminal_at))
        .col("broker_updated_at", "timestamptz", ts(|o| o.updated_at))
        .col(
            "replaces_order_id",
            "bigint",
            rows.iter().map(|r| r.item.replaces_order_id).collect(),
        )
        .col(
            "replacing_order_id",
            "bigint",
            rows.iter().map(|r| r.item.replacing_order_id).collect(),
        )
        .col(
            "complex_order_id",
            "bigint",
            rows.iter().map(|r| r.item.complex_order_id).collect(),
        )
        .col(
            "complex_order_tag",
            "text",
            t(|o| o.complex_order_tag.clone()),
        )
        .col("source", "text", t(|o| o.source.clone()))
        .col(
            "external_identifier",
            "text",
            t(|o| o.external_identifier.clone()),
        )
        .col("raw", "jsonb", rows.iter().map(|r| r.raw.clone()).collect());
    let mut changed = execute(client, &b, "orders", &["account_id", "tastytrade_order_id"]).await?;

    let legs: Vec<(i64, i16, &crate::tastytrade::model::Leg)> = rows
        .iter()
        .flat_map(|r| {
            r.item
                .legs
                .iter()
                .enumerate()
                .map(move |(i, leg)| (r.item.id, i16::try_from(i).unwrap_or(i16::MAX), leg))
        })
        .collect();
    if !legs.is_empty() {
        let mut b = Batch::default();
        b.col("account_id", "uuid", vec![account_id; legs.len()])
            .col(
                "tastytrade_order_id",
                "bigint",
                legs.iter().map(|l| l.0).collect(),
            )
            .col("leg_index", "smallint", legs.iter().map(|l| l.1).collect())
            .col(
                "symbol",
                "text",
                legs.iter()
                    .map(|l| l.2.symbol.clone().unwrap_or_default())
                    .collect(),
            )
            .col(
                "instrument_type",
                "text",
                legs.iter().map(|l| l.2.instrument_type.clone()).collect(),
            )
            .col(
                "action",
                "text",
                legs.iter().map(|l| l.2.action.clone()).collect(),
            )
            .col(
                "quantity",
                "numeric",
                legs.iter().map(|l| l.2.quantity).collect(),
            )
            .col(
                "remaining_quantity",
                "numeric",
                legs.iter().map(|l| l.2.remaining_quantity).collect(),
            );
        changed += execute(
            client,
            &b,
            "order_legs",
            &["account_id", "tastytrade_order_id", "leg_index"],
        )
        .await?;
    }
    let fills: Vec<(i64, i16, &crate::tastytrade::model::Fill)> = legs
        .iter()
        .flat_map(|(order, index, leg)| leg.fills.iter().map(move |f| (*order, *index, f)))
        .collect();
    if !fills.is_empty() {
        let mut b = Batch::default();
        b.col("account_id", "uuid", vec![account_id; fills.len()])
            .col(
                "tastytrade_order_id",
                "bigint",
                fills.iter().map(|f| f.0).collect(),
            )
            .col("leg_index", "smallint", fills.iter().map(|f| f.1).collect())
            .col(
                "fill_id",
                "text",
                fills.iter().map(|f| f.2.fill_id.clone()).collect(),
            )
            .col(
                "quantity",
                "numeric",
                fills
                    .iter()
                    .map(|f| f.2.quantity.unwrap_or_default())
                    .collect(),
            )
            .col(
                "fill_price",
                "numeric",
                fills.iter().map(|f| f.2.fill_price).collect(),
            )
            .col(
                "filled_at",
                "timestamptz",
                fills
                    .iter()
                    .map(|f| f.2.filled_at.unwrap_or(DateTime::UNIX_EPOCH))
                    .collect(),
            )
            .col(
                "destination_venue",
                "text",
                fills
                    .iter()
                    .map(|f| f.2.destination_venue.clone())
                    .collect(),
            )
            .col(
                "ext_group_fill_id",
                "text",
                fills
                    .iter()
                    .map(|f| f.2.ext_group_fill_id.clone())
                    .collect(),
            )
            .col(
                "ext_exec_id",
                "text",
                fills.iter().map(|f| f.2.ext_exec_id.clone()).collect(),
            );
        changed += execute(
            client,
            &b,
            "order_fills",
            &["account_id", "tastytrade_order_id", "leg_index", "fill_id"],
        )
        .await?;
    }
    Ok(changed)
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
        let options: Vec<Option<occ::OccOption>> = rows
            .iter()
            .map(|r| match occ::parse(&r.item.symbol) {
                Some(OptionSymbol::Occ(o)) => Some(o),
                _ => None,
            })
            .collect();
        let d = |f: fn(&Position) -> Option<Decimal>| {
            rows.iter().map(|r| f(&r.item)).collect::<Vec<_>>()
        };
        let t = |f: fn(&Position) -> Option<String>| {
            rows.iter().map(|r| f(&r.item)).collect::<Vec<_>>()
        };
        let mut b = Batch::default();
        b.col("account_id", "uuid", vec![account_id; rows.len()])
            .col("symbol", "text", symbols.clone())
            .col(
                "account_number",
                "text",
                rows.iter()
                    .map(|r| {
                        r.item
                            .account_number
                            .clone()
                            .unwrap_or_else(|| account_number.to_owned())
                    })
                    .collect(),
            )
            .col(
                "underlying_symbol",
                "text",
                t(|p| p.underlying_symbol.clone()),
            )
            .col("instrument_type", "text", t(|p| p.instrument_type.clone()))
            .col(
                "quantity",
                "numeric",
                rows.iter()
                    .map(|r| r.item.signed_quantity().unwrap_or_default())
                    .collect(),
            )
            .col(
                "quantity_direction",
                "text",
                t(|p| p.quantity_direction.clone()),
            )
            .col("multiplier", "numeric", d(|p| p.multiplier))
            .col("average_open_price", "numeric", d(|p| p.average_open_price))
            .col(
                "average_daily_market_close_price",
                "numeric",
                d(|p| p.average_daily_market_close_price),
            )
            .col(
                "average_yearly_market_close_price",
                "numeric",
                d(|p| p.average_yearly_market_close_price),
            )
            .col("close_price", "numeric", d(|p| p.close_price))
            .col("mark", "numeric", d(|p| p.mark))
            .col("mark_price", "numeric", d(|p| p.mark_price))
            .col("cost_effect", "text", t(|p| effect(p.cost_effect)))
            .col(
                "realized_day_gain",
                "numeric",
                d(Position::signed_realized_day_gain),
            )
            .col(
                "realized_day_gain_effect",
                "text",
                t(|p| effect(p.realized_day_gain_effect)),
            )
            .col(
                "realized_day_gain_date",
                "date",
                rows.iter().map(|r| r.item.realized_day_gain_date).collect(),
            )
            .col(
                "realized_today",
                "numeric",
                d(Position::signed_realized_today),
            )
            .col(
                "realized_today_effect",
                "text",
                t(|p| effect(p.realized_today_effect)),
            )
            .col(
                "realized_today_date",
                "date",
                rows.iter().map(|r| r.item.realized_today_date).collect(),
            )
            .col(
                "restricted_quantity",
                "numeric",
                d(|p| p.restricted_quantity),
            )
            .col(
                "is_suppressed",
                "boolean",
                rows.iter().map(|r| r.item.is_suppressed).collect(),
            )
            .col(
                "is_frozen",
                "boolean",
                rows.iter().map(|r| r.item.is_frozen).collect(),
            )
            .col(
                "expires_at",
                "timestamptz",
                rows.iter().map(|r| r.item.expires_at).collect(),
            )
            .col(
                "option_root",
                "text",
                options
                    .iter()
                    .map(|o| o.as_ref().map(|o| o.root.clone()))
                    .collect(),
            )
            .col(
                "option_expiration",
                "date",
                options
                    .iter()
                    .map(|o| o.as_ref().map(|o| o.expiration))
                    .collect(),
            )
            .col(
                "option_type",
                "text",
                options
                    .iter()
                    .map(|o| o.as_ref().map(|o| o.kind.as_char().to_owned()))
                    .collect(),
            )
            .col(
                "strike_price",
                "numeric",
                options
                    .iter()
                    .map(|o| o.as_ref().map(|o| o.strike))
                    .collect(),
            )
            .col(
                "broker_created_at",
                "timestamptz",
                rows.iter().map(|r| r.item.created_at).collect(),
            )
            .col(
                "broker_updated_at",
                "timestamptz",
                rows.iter().map(|r| r.item.updated_at).collect(),
            )
            .col("raw", "jsonb", rows.iter().map(|r| r.raw.clone()).collect());
        changed += execute(&tx, &b, "positions", &["account_id", "symbol"]).await?;
    }
    changed += tx
        .execute(DELETE_CLOSED_POSITIONS, &[&account_id, &symbols])
        .await?;
    tx.commit().await?;
    Ok(changed)
}

/// Where a balance row goes: the current balance, a broker snapshot, or our own capture.
#[derive(Debug, Clone, Copy)]
pub enum BalanceTarget {
    Current,
    BrokerSnapshot,
    /// The current balance recorded as today's `Intraday` snapshot.
    Capture(DateTime<Utc>),
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
    let d =
        |f: fn(&Balance) -> Option<Decimal>| rows.iter().map(|r| f(&r.item)).collect::<Vec<_>>();
    let mut b = Batch::default();
    b.col("account_id", "uuid", vec![account_id; rows.len()])
        .col(
            "currency",
            "text",
            rows.iter()
                .map(|r| r.item.currency.clone().unwrap_or_else(|| "USD".into()))
                .collect(),
        )
        .col(
            "account_number",
            "text",
            rows.iter()
                .map(|r| {
                    r.item
                        .account_number
                        .clone()
                        .unwrap_or_else(|| account_number.to_owned())
                })
                .collect(),
        )
        .col("cash_balance", "numeric", d(|x| x.cash_balance))
        .col(
            "net_liquidating_value",
            "numeric",
            d(|x| x.net_liquidating_value),
        )
        .col("long_equity_value", "numeric", d(|x| x.long_equity_value))
        .col("short_equity_value", "numeric", d(|x| x.short_equity_value))
        .col(
            "long_derivative_value",
            "numeric",
            d(|x| x.long_derivative_value),
        )
        .col(
            "short_derivative_value",
            "numeric",
            d(|x| x.short_derivative_value),
        )
        .col("margin_equity", "numeric", d(|x| x.margin_equity))
        .col(
            "equity_buying_power",
            "numeric",
            d(|x| x.equity_buying_power),
        )
        .col(
            "derivative_buying_power",
            "numeric",
            d(|x| x.derivative_buying_power),
        )
        .col(
            "day_trading_buying_power",
            "numeric",
            d(|x| x.day_trading_buying_power),
        )
        .col(
            "maintenance_requirement",
            "numeric",
            d(|x| x.maintenance_requirement),
        )
        .col("pending_cash", "numeric", d(Balance::signed_pending_cash))
        .col(
            "pending_cash_effect",
            "text",
            rows.iter()
                .map(|r| effect(r.item.pending_cash_effect))
                .collect(),
        )
        .col("raw", "jsonb", rows.iter().map(|r| r.raw.clone()).collect());
    match target {
        BalanceTarget::Current => {
            b.col(
                "available_trading_funds",
                "numeric",
                d(|x| x.available_trading_funds),
            )
            .col(
                "cash_available_to_withdraw",
                "numeric",
                d(|x| x.cash_available_to_withdraw),
            )
            .col("maintenance_excess", "numeric", d(|x| x.maintenance_excess))
            .col(
                "snapshot_date",
                "date",
                rows.iter().map(|r| r.item.snapshot_date).collect(),
            )
            .col(
                "broker_updated_at",
                "timestamptz",
                rows.iter().map(|r| r.item.updated_at).collect(),
            );
            execute(client, &b, "account_balances", &["account_id", "currency"]).await
        }
        BalanceTarget::BrokerSnapshot | BalanceTarget::Capture(_) => {
            let (source, captured_at, time_of_day, date): (
                &str,
                Option<DateTime<Utc>>,
                Vec<String>,
                Vec<NaiveDate>,
            ) = match target {
                BalanceTarget::Capture(at) => (
                    "capture",
                    Some(at),
                    vec!["Intraday".into(); rows.len()],
                    vec![at.date_naive(); rows.len()],
                ),
                _ => (
                    "broker",
                    None,
                    rows.iter()
                        .map(|r| r.item.time_of_day.clone().unwrap_or_else(|| "EOD".into()))
                        .collect(),
                    rows.iter()
                        .map(|r| r.item.snapshot_date.unwrap_or(NaiveDate::MIN))
                        .collect(),
                ),
            };
            b.col("snapshot_date", "date", date)
                .col("time_of_day", "text", time_of_day)
                .col("source", "text", vec![source.to_owned(); rows.len()])
                .col("captured_at", "timestamptz", vec![captured_at; rows.len()])
                // The first capture of the day keeps its time; `updated_at` tells the last change,
                // and an unchanged balance is not rewritten.
                .insert_only("captured_at");
            execute(
                client,
                &b,
                "account_balance_snapshots",
                &["account_id", "snapshot_date", "time_of_day", "currency"],
            )
            .await
        }
    }
}
