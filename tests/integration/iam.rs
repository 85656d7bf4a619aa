//! IAM as the emulator enforces it: every function of the suite signs with an identity holding
//! its policy from `template.yaml` (the stack's `TASTYSYNC_IDENTITY_*`), so a grant the
//! template lacks fails here as it would on AWS. These tests show the enforcement bites.

use std::collections::BTreeSet;

use tastysync_local::identity;
use tastysync_local::template::{self, TEMPLATE};
use tastysync_shared::adapters::dynamo::DynamoTasks;
use tastysync_shared::adapters::sqs::SqsQueue;
use tastysync_shared::domain::tasks::{NewTask, TaskKind, TaskStatus};
use tastysync_shared::ports::{TaskCreator, TaskError, TaskHistory, TaskReader};
use tastysync_shared::secrets::KmsEnvelope;
use tastysync_shared::sync::{self, Outcome};
use tastysync_shared::wiring::{Function, SyncWorker};
use tastytrade_sim::data::Sizes;
use uuid::Uuid;

use crate::link::{World, link_personal, world_with};
use crate::sync::worker;

/// The worker's actions in `template.yaml`, as the local stack renders them, less `removed`.
fn worker_policy_without(removed: &str) -> BTreeSet<String> {
    let template = template::parse(TEMPLATE).unwrap();
    let granted = template::policies(&template).unwrap()["sync-worker"].clone();
    assert!(granted.contains(removed), "the template grants {removed}");
    identity::emulator_actions(granted.iter().map(String::as_str).filter(|a| *a != removed))
}

/// The worker's dependencies signed by a fresh identity allowed only `actions`.
async fn worker_with_policy(w: &World, actions: &BTreeSet<String>) -> SyncWorker {
    let user = format!("worker-{}", Uuid::new_v4().simple());
    let key = identity::create(&w.aws.sdk, &user, actions).await.unwrap();
    let sdk = key.sdk(&w.aws.sdk);
    SyncWorker {
        cipher: KmsEnvelope::new(aws_sdk_kms::Client::new(&sdk), &w.aws.stack.kms_key_arn),
        tasks: DynamoTasks::new(aws_sdk_dynamodb::Client::new(&sdk), &w.aws.stack.table),
        queue: SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), &w.aws.stack.queue_url),
        ..worker(w)
    }
}

#[tokio::test]
async fn a_worker_whose_policy_lacks_get_item_fails_with_access_denied_and_the_templates_policy_completes()
 {
    let w = world_with(Sizes {
        accounts: 1,
        transactions: 20,
        orders: 4,
        years: 1,
    })
    .await;
    let linked = link_personal(&w, "user-a").await;
    let account_id: Uuid = linked[0]["id"].as_str().unwrap().parse().unwrap();
    let queued = w.aws.tasks().recent(account_id, 1).await.unwrap();
    let full = queued[0].clone();
    let message = tastysync_shared::domain::tasks::TaskMessage {
        task_id: full.task_id,
        account_id,
        kind: full.kind,
        cursor: None,
    };

    let crippled = worker_with_policy(&w, &worker_policy_without("dynamodb:GetItem")).await;
    let refused = sync::run(&crippled, &message, None)
        .await
        .expect_err("the task read is refused");
    println!("without dynamodb:GetItem: {refused}");
    assert!(
        refused
            .to_string()
            .contains("access denied: this function's IAM policy does not grant dynamodb:GetItem"),
        "{refused}"
    );
    let untouched = w.aws.tasks().recent(account_id, 1).await.unwrap();
    assert_eq!(untouched[0].status, TaskStatus::Pending, "nothing ran");

    let outcome = sync::run(&worker(&w), &message, None).await.unwrap();
    assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
    let transactions: i64 =
        w.db.client()
            .await
            .query_one(
                "SELECT count(*) FROM transactions WHERE account_id = $1",
                &[&account_id],
            )
            .await
            .unwrap()
            .get(0);
    println!("with the template's policy: completed, {transactions} transactions stored");
    assert!(transactions > 0);
}

#[tokio::test]
async fn the_status_function_reads_tasks_and_may_not_write_them() {
    let aws = tastysync_tests::TestAws::provisioned().await;
    let task = NewTask::new("user-a", Uuid::new_v4(), TaskKind::Manual);
    aws.tasks().create(&task).await.unwrap();
    let status = aws.tasks_of(Function::SyncStatus);

    let read = status.get(task.task_id).await.unwrap();
    let write = status
        .create(&NewTask::new("user-a", Uuid::new_v4(), TaskKind::Manual))
        .await;

    assert_eq!(read.map(|t| t.task_id), Some(task.task_id));
    assert!(
        matches!(
            write,
            Err(TaskError::Denied {
                action: "dynamodb:PutItem"
            })
        ),
        "{write:?}"
    );
}
