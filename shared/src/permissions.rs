//! The AWS actions each function's ports call: the source of its least-privilege IAM policy.
//!
//! Each constant names the IAM actions of one adapter operation (next to the trait method that
//! calls them), and [`FUNCTIONS`] lists, per function, the operations its handler reaches.
//! `template.yaml` grants each function's role exactly these actions in its `Ports` policy, and
//! a test fails when the two differ in either direction: a grant nothing calls is a privilege
//! too many, a call nothing grants is an `AccessDenied` in production.
//!
//! Batch and transactional calls are authorised per item: `SendMessageBatch` needs
//! `sqs:SendMessage`, a `TransactWriteItems` of puts needs `dynamodb:PutItem`.

/// One adapter operation and the IAM actions it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    pub name: &'static str,
    pub actions: &'static [&'static str],
}

/// Reading the RDS-managed database credentials at cold start ([`crate::db::pool`]).
pub const DATABASE_CREDENTIALS: Operation = Operation {
    name: "db::pool (secret source)",
    actions: &["secretsmanager:GetSecretValue"],
};
/// The OAuth client and the state-signing key ([`crate::secrets::DeploymentSecrets`], and
/// [`crate::secrets::OAuthClient`] alone in the worker).
pub const DEPLOYMENT_SECRETS: Operation = Operation {
    name: "DeploymentSecrets::load / OAuthClient::load",
    actions: &["secretsmanager:GetSecretValue"],
};
/// `TokenCipher::seal`: a fresh data key per secret.
pub const SEAL_SECRET: Operation = Operation {
    name: "TokenCipher::seal",
    actions: &["kms:GenerateDataKey"],
};
/// `TokenCipher::open`: unwrapping the data key.
pub const OPEN_SECRET: Operation = Operation {
    name: "TokenCipher::open",
    actions: &["kms:Decrypt"],
};
/// `TaskStore::create`, `acquire_lease` and `create_manual` (a transaction of two puts).
pub const PUT_TASK_ITEM: Operation = Operation {
    name: "TaskStore::create / acquire_lease / create_manual",
    actions: &["dynamodb:PutItem"],
};
/// `TaskStore::update`.
pub const UPDATE_TASK: Operation = Operation {
    name: "TaskStore::update",
    actions: &["dynamodb:UpdateItem"],
};
/// `TaskStore::release_lease` and `release_cooldown`.
pub const DELETE_TASK_ITEM: Operation = Operation {
    name: "TaskStore::release_lease / release_cooldown",
    actions: &["dynamodb:DeleteItem"],
};
/// `TaskStore::get` (the status route; the scheduler's check of a redelivered tick's task) and
/// `create_manual`'s read of the cooldown.
pub const GET_TASK_ITEM: Operation = Operation {
    name: "TaskStore::get / create_manual",
    actions: &["dynamodb:GetItem"],
};
/// `TaskStore::recent`, on the `account-tasks` index (the status route; the trigger's look for
/// a task already on its way).
pub const QUERY_TASKS: Operation = Operation {
    name: "TaskStore::recent",
    actions: &["dynamodb:Query"],
};
/// `SyncQueue::enqueue` and `enqueue_batch`.
pub const ENQUEUE: Operation = Operation {
    name: "SyncQueue::enqueue / enqueue_batch",
    actions: &["sqs:SendMessage"],
};
/// `SyncQueue::delay_redelivery`: the worker's back-off.
pub const DELAY_REDELIVERY: Operation = Operation {
    name: "SyncQueue::delay_redelivery",
    actions: &["sqs:ChangeMessageVisibility"],
};
/// Lambda's event source mapping polls the queue with the worker's role (and so does the local
/// poller, `sync_worker::local`).
pub const CONSUME_QUEUE: Operation = Operation {
    name: "event source mapping",
    actions: &[
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
    ],
};

/// Every function (its crate under `functions/`) and the operations its handler reaches.
pub const FUNCTIONS: &[(&str, &[Operation])] = &[
    ("accounts", &[DATABASE_CREDENTIALS]),
    (
        "link-account",
        &[
            DATABASE_CREDENTIALS,
            DEPLOYMENT_SECRETS,
            SEAL_SECRET,
            PUT_TASK_ITEM,
            ENQUEUE,
        ],
    ),
    (
        "sync-trigger",
        &[
            DATABASE_CREDENTIALS,
            QUERY_TASKS,
            GET_TASK_ITEM,
            PUT_TASK_ITEM,
            UPDATE_TASK,
            DELETE_TASK_ITEM,
            ENQUEUE,
        ],
    ),
    (
        "sync-status",
        &[DATABASE_CREDENTIALS, GET_TASK_ITEM, QUERY_TASKS],
    ),
    (
        "sync-scheduler",
        &[
            DATABASE_CREDENTIALS,
            PUT_TASK_ITEM,
            GET_TASK_ITEM,
            UPDATE_TASK,
            ENQUEUE,
        ],
    ),
    (
        "sync-worker",
        &[
            DATABASE_CREDENTIALS,
            DEPLOYMENT_SECRETS,
            OPEN_SECRET,
            SEAL_SECRET,
            PUT_TASK_ITEM,
            UPDATE_TASK,
            DELETE_TASK_ITEM,
            ENQUEUE,
            DELAY_REDELIVERY,
            CONSUME_QUEUE,
        ],
    ),
    ("migrate", &[DATABASE_CREDENTIALS]),
];

/// The distinct actions `function` needs, sorted; `None` for an unknown function.
pub fn actions_of(function: &str) -> Option<Vec<&'static str>> {
    let (_, operations) = FUNCTIONS.iter().find(|(name, _)| *name == function)?;
    let mut actions: Vec<&'static str> = operations
        .iter()
        .flat_map(|op| op.actions.iter().copied())
        .collect();
    actions.sort_unstable();
    actions.dedup();
    Some(actions)
}
