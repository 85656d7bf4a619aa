//! Messages the worker can never handle: an unreadable body goes to the DLQ after
//! maxReceiveCount deliveries; a task for an account that does not exist (or was unlinked) is
//! dropped at once, as obsolete rather than poison. Both count in `SyncFailures`.

use std::time::Duration;

use tastysync_local::provision::MAX_RECEIVE_COUNT;
use tastysync_shared::domain::tasks::{NewTask, TaskKind};
use tastysync_shared::metrics::SYNC_FAILURES;
use tastysync_shared::ports::SyncQueue;
use tastysync_shared::wiring::Function;
use tastytrade_sim::data::Sizes;
use uuid::Uuid;

use crate::link::{World, world_with};
use crate::metrics::{emf_documents, metric_sum};
use crate::sync::{run_until_idle, worker_command};

/// Up to ten messages waiting on the queue at `url`.
async fn waiting(w: &World, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    w.aws
        .sqs()
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default()
}

const POISON: &str = "{\"task_id\": \"not-a-uuid\", \"oops\"";

#[tokio::test]
async fn an_unreadable_message_reaches_the_dlq_and_a_task_of_an_unknown_account_is_dropped() {
    let w = world_with(Sizes {
        accounts: 1,
        transactions: 10,
        orders: 2,
        years: 1,
    })
    .await;
    w.aws
        .sqs()
        .send_message()
        .queue_url(&w.aws.stack.queue_url)
        .message_group_id("poison")
        .message_deduplication_id("poison-1")
        .message_body(POISON)
        .send()
        .await
        .unwrap();
    let stranger = NewTask::new("user-x", Uuid::new_v4(), TaskKind::Manual);
    w.aws
        .queue_of(Function::SyncTrigger)
        .enqueue(&stranger.message())
        .await
        .unwrap();
    let mut command = worker_command(&w);
    // Redelivered after a second, so five deliveries take seconds, not the production
    // visibility timeout.
    command.env("SYNC_VISIBILITY_SECONDS", "1");

    let output = run_until_idle(command, "5", Duration::from_secs(120)).await;

    let dead = waiting(&w, &w.aws.stack.dlq_url).await;
    let left = waiting(&w, &w.aws.stack.queue_url).await;
    let documents = emf_documents(&String::from_utf8(output.stdout).unwrap());
    let unreadable = metric_sum(&documents, SYNC_FAILURES, "category", "unreadable_message");
    let gone = metric_sum(&documents, SYNC_FAILURES, "category", "gone");
    println!(
        "poison: {unreadable} failed deliveries counted, {} message(s) in the DLQ; unknown account: {gone} counted and dropped",
        dead.len()
    );
    assert_eq!(dead.len(), 1, "only the unreadable message is dead");
    assert_eq!(dead[0].body.as_deref(), Some(POISON));
    assert!(left.is_empty(), "nothing else waits on the queue");
    assert_eq!(
        unreadable,
        u64::from(MAX_RECEIVE_COUNT),
        "each delivery failed and was counted"
    );
    assert_eq!(gone, 1);
}
