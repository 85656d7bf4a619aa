use serde::Serialize;
use tastysync_shared::db::{self, DbError, PgPool};

#[derive(Debug, Serialize)]
pub struct Outcome {
    /// Migrations this run applied; empty when the schema was already current.
    applied: Vec<String>,
    /// Every migration the binary carries, so a deploy log shows the schema it expects.
    known: Vec<String>,
}

pub async fn run(pool: &PgPool) -> Result<Outcome, DbError> {
    let applied = db::migrations::apply(pool).await.inspect_err(|e| {
        tracing::error!(error = ?e, "migration failed");
    })?;
    tracing::info!(applied = applied.len(), "schema is current");
    Ok(Outcome {
        applied,
        known: db::migrations::embedded(),
    })
}
