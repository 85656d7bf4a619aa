//! One statement per page: columns gathered as arrays, unnested, and upserted on the table's
//! natural key. A row whose values equal the stored ones is not rewritten (and keeps its
//! `updated_at`), so re-reading a window costs reads, not writes. A row that lacks a value the
//! table requires is left out of the statement and reported, never stored with a made-up one.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use tokio_postgres::types::ToSql;

use crate::domain::rows::Rejection;
use crate::tastytrade::model::{Effect, Record};

/// A row's JSON text as a `json` parameter, written as it came.
pub(crate) fn json(
    raw: &serde_json::value::RawValue,
) -> tokio_postgres::types::Json<&serde_json::value::RawValue> {
    tokio_postgres::types::Json(raw)
}

/// One column's values, which can drop the rows left out of the statement.
trait Column: Sync + Send {
    fn sql(&self) -> &(dyn ToSql + Sync);
    fn keep(&mut self, kept: &[bool]);
}

impl<V: ToSql + Sync + Send> Column for Vec<V> {
    fn sql(&self) -> &(dyn ToSql + Sync) {
        self
    }

    fn keep(&mut self, kept: &[bool]) {
        keep_flagged(self, kept);
    }
}

/// Keeps the values whose flag is true; `retain` visits them in order.
fn keep_flagged<T>(values: &mut Vec<T>, kept: &[bool]) {
    let mut flags = kept.iter();
    values.retain(|_| flags.next().copied().unwrap_or(false));
}

/// The columns of one batched upsert, each with its SQL type and its values, which may borrow
/// from the rows (`'r`), so that a page's text and raw JSON go to the statement uncopied.
#[derive(Default)]
pub(crate) struct Batch<'r> {
    columns: Vec<(&'static str, &'static str)>,
    values: Vec<Box<dyn Column + 'r>>,
    /// Written when the row is inserted, never compared or updated afterwards.
    insert_only: Vec<&'static str>,
}

impl std::fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("columns", &self.columns)
            .finish()
    }
}

impl<'r> Batch<'r> {
    pub(crate) fn col<T: ToSql + Sync + Send + 'r>(
        &mut self,
        name: &'static str,
        sql_type: &'static str,
        values: Vec<T>,
    ) -> &mut Self {
        self.columns.push((name, sql_type));
        self.values.push(Box::new(values));
        self
    }

    pub(crate) fn insert_only(&mut self, name: &'static str) -> &mut Self {
        self.insert_only.push(name);
        self
    }

    pub(crate) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.values.iter().map(|v| v.sql()).collect()
    }

    /// Leaves out the rows whose `kept` is false, in every column.
    fn keep(&mut self, kept: &[bool]) {
        for column in &mut self.values {
            column.keep(kept);
        }
    }

    /// `INSERT ... SELECT UNNEST(..), .. ON CONFLICT (key) DO UPDATE ... WHERE changed`.
    /// The text depends only on the columns, so the prepared statement is reused.
    ///
    /// The arrays are unnested in the select list, not in `FROM UNNEST(..)`: a function in
    /// `FROM` first copies every row into a tuplestore and reads it back (8% of Postgres's time
    /// in a full sync), while set-returning functions in the select list stream their rows in
    /// lockstep (the arrays have one element per row, so both forms give the same rows).
    pub(crate) fn upsert_sql(&self, table: &str, key: &[&str]) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(n, _)| *n).collect();
        let arrays: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, t))| format!("UNNEST(${}::{t}[])", i + 1))
            .collect();
        let updated: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !key.contains(n) && !self.insert_only.contains(n))
            .collect();
        let set: Vec<String> = updated
            .iter()
            .map(|n| format!("{n} = EXCLUDED.{n}"))
            .collect();
        // `json` has no equality operator: its text is compared, which is what was sent.
        let compared = |n: &str, side: &str| match self.columns.iter().find(|(c, _)| *c == n) {
            Some((_, "json")) => format!("{side}.{n}::text"),
            _ => format!("{side}.{n}"),
        };
        let current: Vec<String> = updated.iter().map(|n| compared(n, table)).collect();
        let incoming: Vec<String> = updated.iter().map(|n| compared(n, "EXCLUDED")).collect();
        format!(
            "INSERT INTO {table} ({cols}) SELECT {arrays} \
             ON CONFLICT ({key}) DO UPDATE SET {set} \
             WHERE ({current}) IS DISTINCT FROM ({incoming})",
            cols = names.join(", "),
            arrays = arrays.join(", "),
            key = key.join(", "),
            set = set.join(", "),
            current = current.join(", "),
            incoming = incoming.join(", "),
        )
    }
}

/// The columns of one upsert over `rows`, each written once as the value it takes from a row.
pub(crate) struct Columns<'r, R> {
    table: &'static str,
    rows: Vec<&'r R>,
    batch: Batch<'r>,
    /// Per row, the first required column it lacks.
    missing: Vec<Option<&'static str>>,
}

impl<'r, R> Columns<'r, R> {
    pub(crate) fn new(table: &'static str, rows: impl IntoIterator<Item = &'r R>) -> Self {
        let rows: Vec<&R> = rows.into_iter().collect();
        Self {
            table,
            missing: vec![None; rows.len()],
            rows,
            batch: Batch::default(),
        }
    }

    pub(crate) fn table(&self) -> &'static str {
        self.table
    }

    pub(crate) fn col<V: ToSql + Sync + Send + 'r>(
        &mut self,
        name: &'static str,
        sql_type: &'static str,
        value: impl Fn(&'r R) -> V,
    ) -> &mut Self {
        let values: Vec<V> = self.rows.iter().map(|r| value(r)).collect();
        self.batch.col(name, sql_type, values);
        self
    }

    /// Values gathered elsewhere, one per row.
    pub(crate) fn values<V: ToSql + Sync + Send + 'r>(
        &mut self,
        name: &'static str,
        sql_type: &'static str,
        values: Vec<V>,
    ) -> &mut Self {
        debug_assert_eq!(values.len(), self.rows.len(), "{name}: one value per row");
        self.batch.col(name, sql_type, values);
        self
    }

    /// The rows' JSON as the broker sent it, to the `raw json` column as its text.
    pub(crate) fn raw<T>(&mut self, records: &'r [Record<T>]) -> &mut Self {
        self.values(
            "raw",
            "json",
            records.iter().map(|r| json(&r.raw)).collect(),
        )
    }

    /// The same value on every row.
    pub(crate) fn constant<V: ToSql + Clone + Sync + Send + 'r>(
        &mut self,
        name: &'static str,
        sql_type: &'static str,
        value: V,
    ) -> &mut Self {
        self.batch.col(name, sql_type, vec![value; self.rows.len()]);
        self
    }

    /// The row is one the broker returns: not removed, or no longer (see the removed rows
    /// migration).
    pub(crate) fn present(&mut self) -> &mut Self {
        self.constant("removed_at", "timestamptz", None::<DateTime<Utc>>)
            .constant("removed_by_task", "uuid", None::<uuid::Uuid>)
    }

    /// A column the table requires: a row without it is rejected (see [`Columns::rejected`]),
    /// never given a made-up value.
    pub(crate) fn required<V: ToSql + Sync + Send + 'r>(
        &mut self,
        name: &'static str,
        sql_type: &'static str,
        value: impl Fn(&'r R) -> Option<V>,
    ) -> &mut Self {
        let values: Vec<Option<V>> = self.rows.iter().map(|r| value(r)).collect();
        for (missing, v) in self.missing.iter_mut().zip(&values) {
            if v.is_none() {
                missing.get_or_insert(name);
            }
        }
        self.batch.col(name, sql_type, values);
        self
    }

    /// The rows that lack a required column, by index, with the column they lack.
    pub(crate) fn rejected(&self) -> Vec<Rejection> {
        self.missing
            .iter()
            .enumerate()
            .filter_map(|(index, m)| {
                m.map(|column| Rejection {
                    index,
                    reason: format!("lacks {column}, which {} requires", self.table),
                })
            })
            .collect()
    }

    /// Leaves out of the statement the rows that lack a required column; returns them.
    pub(crate) fn drop_rejected(&mut self) -> Vec<Rejection> {
        let rejected = self.rejected();
        if !rejected.is_empty() {
            let kept: Vec<bool> = self.missing.iter().map(Option::is_none).collect();
            self.keep(&kept);
        }
        rejected
    }

    /// Leaves out of the statement the rows whose `kept` is false.
    pub(crate) fn keep(&mut self, kept: &[bool]) {
        debug_assert_eq!(kept.len(), self.rows.len(), "one flag per row");
        self.batch.keep(kept);
        keep_flagged(&mut self.rows, kept);
        keep_flagged(&mut self.missing, kept);
    }

    /// How many rows the statement writes.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// A text column, borrowed from the rows.
    pub(crate) fn text(
        &mut self,
        name: &'static str,
        value: impl Fn(&'r R) -> Option<&'r str>,
    ) -> &mut Self {
        self.col(name, "text", value)
    }

    pub(crate) fn numeric(
        &mut self,
        name: &'static str,
        value: impl Fn(&R) -> Option<Decimal>,
    ) -> &mut Self {
        self.col(name, "numeric", value)
    }

    pub(crate) fn timestamptz(
        &mut self,
        name: &'static str,
        value: impl Fn(&R) -> Option<DateTime<Utc>>,
    ) -> &mut Self {
        self.col(name, "timestamptz", value)
    }

    pub(crate) fn date(
        &mut self,
        name: &'static str,
        value: impl Fn(&R) -> Option<NaiveDate>,
    ) -> &mut Self {
        self.col(name, "date", value)
    }

    /// A signed amount's `*-effect` (Debit, Credit, None) as the broker names it.
    pub(crate) fn effect(
        &mut self,
        name: &'static str,
        value: impl Fn(&R) -> Option<Effect>,
    ) -> &mut Self {
        self.col(name, "text", move |r| {
            value(r).map(|e| e.as_str().to_owned())
        })
    }

    pub(crate) fn insert_only(&mut self, name: &'static str) -> &mut Self {
        self.batch.insert_only(name);
        self
    }

    pub(crate) fn batch(&self) -> &Batch<'r> {
        &self.batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_updates_only_non_key_columns_and_only_when_changed() {
        let mut batch = Batch::default();
        batch
            .col("account_id", "uuid", Vec::<uuid::Uuid>::new())
            .col("symbol", "text", Vec::<String>::new())
            .col(
                "quantity",
                "numeric",
                Vec::<Option<rust_decimal::Decimal>>::new(),
            );
        let sql = batch.upsert_sql("positions", &["account_id", "symbol"]);
        assert_eq!(
            sql,
            "INSERT INTO positions (account_id, symbol, quantity) SELECT UNNEST($1::uuid[]), UNNEST($2::text[]), UNNEST($3::numeric[]) \
             ON CONFLICT (account_id, symbol) DO UPDATE SET quantity = EXCLUDED.quantity \
             WHERE (positions.quantity) IS DISTINCT FROM (EXCLUDED.quantity)"
        );
    }
}
