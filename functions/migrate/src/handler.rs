//! `migrate`'s handler: applies the embedded migrations, and speaks CloudFormation's
//! custom-resource protocol when the deploy invokes it (`SchemaMigration` in `template.yaml`).
//!
//! CloudFormation waits up to an hour for an answer at the request's presigned `ResponseURL`,
//! so every request is answered, failures included; a failed migration fails the deploy, which
//! rolls back before any function that needs the new schema is updated.

use aws_lambda_events::event::cloudformation::{
    CloudFormationCustomResourceRequest as Request, CloudFormationCustomResourceResponse,
    CloudFormationCustomResourceResponseStatus as Status,
};
use serde::Serialize;
use serde_json::Value;
use tastysync_shared::db::{self, DbError, PgPool};

/// The one schema this resource stands for. It never changes: a new id would make
/// CloudFormation delete the "old" resource.
pub const PHYSICAL_ID: &str = "tastysync-schema";

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

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("could not answer CloudFormation")]
    Respond(#[from] reqwest::Error),
}

/// One invocation: a custom-resource request from the deploy, or any other event (a person's
/// `aws lambda invoke`), which simply migrates.
pub async fn handle(
    pool: &PgPool,
    http: &reqwest::Client,
    event: Value,
) -> Result<Value, MigrateError> {
    let request = match serde_json::from_value::<Request>(event) {
        Ok(request) => request,
        Err(_) => return Ok(serde_json::to_value(run(pool).await?).unwrap_or_default()),
    };
    // Deleting the stack (or rolling back a create) must never drop data: Delete only answers.
    let (url, mut response, migrate) = match &request {
        Request::Create(r) => (
            &r.response_url,
            answer(&r.stack_id, &r.request_id, &r.logical_resource_id),
            true,
        ),
        Request::Update(r) => (
            &r.response_url,
            answer(&r.stack_id, &r.request_id, &r.logical_resource_id),
            true,
        ),
        Request::Delete(r) => (
            &r.response_url,
            answer(&r.stack_id, &r.request_id, &r.logical_resource_id),
            false,
        ),
        // The enum is open for request types CloudFormation may add; none exists today.
        _ => return Ok(Value::Null),
    };
    if migrate {
        match run(pool).await {
            Ok(outcome) => {
                response
                    .data
                    .insert("Applied".into(), outcome.applied.len().to_string());
                response.data.insert(
                    "Latest".into(),
                    outcome.known.last().cloned().unwrap_or_default(),
                );
            }
            Err(e) => {
                response.status = Status::Failed;
                // The reason shows in the stack's events: the category only, never a detail
                // that could carry connection settings.
                response.reason = Some(format!("{e}; see the migrate function's logs"));
            }
        }
    }
    http.put(url.as_str())
        .body(serde_json::to_vec(&response).unwrap_or_default())
        .send()
        .await?
        .error_for_status()?;
    Ok(serde_json::to_value(&response).unwrap_or_default())
}

fn answer(
    stack_id: &str,
    request_id: &str,
    logical_id: &str,
) -> CloudFormationCustomResourceResponse {
    let mut response = CloudFormationCustomResourceResponse::default();
    response.status = Status::Success;
    response.physical_resource_id = PHYSICAL_ID.into();
    response.stack_id = stack_id.into();
    response.request_id = request_id.into();
    response.logical_resource_id = logical_id.into();
    response
}
