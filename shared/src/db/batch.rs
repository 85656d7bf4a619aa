//! One statement per page: columns gathered as arrays, unnested, and upserted on the table's
//! natural key. A row whose values equal the stored ones is not rewritten (and keeps its
//! `updated_at`), so re-reading a window costs reads, not writes.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use tokio_postgres::types::ToSql;

use super::DbError;
use crate::tastytrade::model::Effect;

/// The columns of one batched upsert, each with its SQL type and its values.
#[derive(Default)]
pub(crate) struct Batch {
    columns: Vec<(&'static str, &'static str)>,
    values: Vec<Box<dyn ToSql + Sync + Send>>,
    /// Written when the row is inserted, never compared or updated afterwards.
    insert_only: Vec<&'static str>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("columns", &self.columns)
            .finish()
    }
}

impl Batch {
    pub(crate) fn col<T: ToSql + Sync + Send + 'static>(
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
        self.values
            .iter()
            .map(|v| v.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }

    /// `INSERT ... SELECT FROM UNNEST(...) ON CONFLICT (key) DO UPDATE ... WHERE changed`.
    /// The text depends only on the columns, so the prepared statement is reused.
    pub(crate) fn upsert_sql(&self, table: &str, key: &[&str]) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(n, _)| *n).collect();
        let arrays: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, t))| format!("${}::{t}[]", i + 1))
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
        let current: Vec<String> = updated.iter().map(|n| format!("{table}.{n}")).collect();
        let incoming: Vec<String> = updated.iter().map(|n| format!("EXCLUDED.{n}")).collect();
        format!(
            "INSERT INTO {table} ({cols}) SELECT * FROM UNNEST({arrays}) \
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
    batch: Batch,
}

impl<'r, R> Columns<'r, R> {
    pub(crate) fn new(table: &'static str, rows: impl IntoIterator<Item = &'r R>) -> Self {
        Self {
            table,
            rows: rows.into_iter().collect(),
            batch: Batch::default(),
        }
    }

    pub(crate) fn table(&self) -> &'static str {
        self.table
    }

    pub(crate) fn col<V: ToSql + Sync + Send + 'static>(
        &mut self,
        name: &'static str,
        sql_type: &'static str,
        value: impl Fn(&R) -> V,
    ) -> &mut Self {
        let values: Vec<V> = self.rows.iter().map(|r| value(r)).collect();
        self.batch.col(name, sql_type, values);
        self
    }

    /// Values gathered elsewhere, one per row.
    pub(crate) fn values<V: ToSql + Sync + Send + 'static>(
        &mut self,
        name: &'static str,
        sql_type: &'static str,
        values: Vec<V>,
    ) -> &mut Self {
        debug_assert_eq!(values.len(), self.rows.len(), "{name}: one value per row");
        self.batch.col(name, sql_type, values);
        self
    }

    /// The same value on every row.
    pub(crate) fn constant<V: ToSql + Clone + Sync + Send + 'static>(
        &mut self,
        name: &'static str,
        sql_type: &'static str,
        value: V,
    ) -> &mut Self {
        self.batch.col(name, sql_type, vec![value; self.rows.len()]);
        self
    }

    /// A column the table requires: a row without it is an error, never a made-up value.
    pub(crate) fn required<V: ToSql + Sync + Send + 'static>(
        &mut self,
        name: &'static str,
        sql_type: &'static str,
        value: impl Fn(&R) -> Option<V>,
    ) -> Result<&mut Self, DbError> {
        let values = self
            .rows
            .iter()
            .map(|r| value(r))
            .collect::<Option<Vec<V>>>()
            .ok_or(DbError::MissingField {
                table: self.table,
                column: name,
            })?;
        self.batch.col(name, sql_type, values);
        Ok(self)
    }

    pub(crate) fn text(
        &mut self,
        name: &'static str,
        value: impl Fn(&R) -> Option<String>,
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

    pub(crate) fn batch(&self) -> &Batch {
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
            "INSERT INTO positions (account_id, symbol, quantity) SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::numeric[]) \
             ON CONFLICT (account_id, symbol) DO UPDATE SET quantity = EXCLUDED.quantity \
             WHERE (positions.quantity) IS DISTINCT FROM (EXCLUDED.quantity)"
        );
    }
}
