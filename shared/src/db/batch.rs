//! One statement per page: columns gathered as arrays, unnested, and upserted on the table's
//! natural key. A row whose values equal the stored ones is not rewritten (and keeps its
//! `updated_at`), so re-reading a window costs reads, not writes.

use tokio_postgres::types::ToSql;

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
