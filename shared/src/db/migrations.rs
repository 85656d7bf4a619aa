//! The schema migrations in `migrations/`, embedded at build time so the `migrate` function
//! carries exactly the schema its code was built against.

use deadpool_postgres::Pool;

use super::DbError;

refinery::embed_migrations!("../migrations");

/// Any fixed number will do, as long as nothing else in the database takes the same lock.
const MIGRATION_LOCK: i64 = 0x7461_7374_7973_796e; // "tastysyn"

/// Applies the pending migrations and returns their names, oldest first; none pending is `[]`.
///
/// All pending migrations run in one transaction, so a failed deploy leaves the schema as it
/// was. An advisory lock makes a second concurrent run wait and then find nothing to do,
/// instead of racing the first one on the history table.
pub async fn apply(pool: &Pool) -> Result<Vec<String>, DbError> {
    let mut client = pool.get().await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = migrations::runner()
        .set_grouped(true)
        .run_async(&mut **client)
        .await;
    // Unlock even when the run failed; if the unlock itself fails the connection is broken
    // and the server drops the lock with it.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    Ok(report?
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect())
}

/// The names of every embedded migration, oldest first.
pub fn embedded() -> Vec<String> {
    // The runner lists them in file-name order, which puts V10 before V2.
    let mut all = migrations::runner().get_migrations().clone();
    all.sort_by_key(|m| m.version());
    all.iter().map(|m| m.to_string()).collect()
}
