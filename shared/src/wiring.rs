//! The composition root: each function's production dependencies, built from its environment
//! once per cold start, and the AWS actions they need.
//!
//! Everything that reads the environment to build an adapter lives here, so the use cases
//! (`routes`, `sync`, `schedule`) see only ports, and the template test and the local stack
//! read each function's permissions from one place: [`Function::actions`].

use std::collections::BTreeSet;

use crate::StartupError;
use crate::adapters::dynamo::DynamoTasks;
use crate::adapters::eventbridge::EventBridgeBus;
use crate::adapters::postgres::{PgAccounts, PgSyncStore};
use crate::adapters::secrets_manager::SecretsManager;
use crate::adapters::sqs::{self, SqsQueue};
use crate::aws::SdkConfig;
use crate::config::{ConfigError, Env};
use crate::db;
use crate::domain::requests::UserLimits;
use crate::iam::Permissions;
use crate::oauth_state::StateSigner;
use crate::realtime::{StreamerDeps, StreamerSettings};
use crate::routes::account_data::AccountDataDeps;
use crate::routes::accounts::{AccountsDeps, unlink_policy};
use crate::routes::link::{LinkDeps, OAuthSettings};
use crate::routes::sync_tasks::{StatusDeps, TaskSettings, TriggerDeps};
use crate::schedule::{ScheduleSettings, SchedulerDeps};
use crate::secrets::{DeploymentSecrets, KmsEnvelope, OAuthClient};
use crate::sync::{SyncDeps, SyncSettings};
use crate::tastytrade::{BrokerConfig, TastytradeClient};

/// `accounts`' dependencies in production.
pub type Accounts = AccountsDeps<PgAccounts, DynamoTasks>;

pub type AccountData = AccountDataDeps<PgAccounts, DynamoTasks>;
/// `link-account`'s dependencies in production.
pub type LinkAccount = LinkDeps<PgAccounts, KmsEnvelope, DynamoTasks, SqsQueue, TastytradeClient>;
/// `sync-trigger`'s dependencies in production.
pub type SyncTrigger = TriggerDeps<PgAccounts, DynamoTasks, SqsQueue>;
/// `sync-status`'s dependencies in production.
pub type SyncStatus = StatusDeps<PgAccounts, DynamoTasks>;
/// `sync-scheduler`'s dependencies in production.
pub type SyncScheduler = SchedulerDeps<PgAccounts, DynamoTasks, SqsQueue>;
/// `sync-worker`'s dependencies in production.
pub type SyncWorker =
    SyncDeps<PgSyncStore, KmsEnvelope, DynamoTasks, SqsQueue, TastytradeClient, EventBridgeBus>;
/// `account-streamer`'s dependencies in production.
pub type AccountStreamer = StreamerDeps<
    PgSyncStore,
    KmsEnvelope,
    PgAccounts,
    DynamoTasks,
    SqsQueue,
    TastytradeClient,
    EventBridgeBus,
>;

/// Every function of the deployment (its crate under `functions/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Function {
    Accounts,
    AccountData,
    LinkAccount,
    SyncTrigger,
    SyncStatus,
    SyncScheduler,
    SyncWorker,
    AccountStreamer,
    Migrate,
}

impl Function {
    pub const ALL: [Function; 9] = [
        Function::Accounts,
        Function::AccountData,
        Function::LinkAccount,
        Function::SyncTrigger,
        Function::SyncStatus,
        Function::SyncScheduler,
        Function::SyncWorker,
        Function::AccountStreamer,
        Function::Migrate,
    ];

    /// The database user the function logs in as; `None`: the master user, for the
    /// migrations only. Each user is granted what its function does and nothing more (V16,
    /// V19, V20), so a missing grant fails the function's tests as it would fail it on Aurora.
    pub fn database_user(self) -> Option<&'static str> {
        match self {
            Function::AccountData | Function::SyncStatus => Some(db::READER_ROLE),
            Function::LinkAccount => Some("tastysync_link"),
            Function::Accounts => Some("tastysync_accounts"),
            Function::SyncTrigger => Some("tastysync_trigger"),
            Function::SyncScheduler => Some("tastysync_scheduler"),
            Function::SyncWorker | Function::AccountStreamer => Some("tastysync_worker"),
            Function::Migrate => None,
        }
    }

    /// The crate's name, which is also the function's name in the template's `CodeUri`.
    pub fn name(self) -> &'static str {
        match self {
            Function::Accounts => "accounts",
            Function::AccountData => "account-data",
            Function::LinkAccount => "link-account",
            Function::SyncTrigger => "sync-trigger",
            Function::SyncStatus => "sync-status",
            Function::SyncScheduler => "sync-scheduler",
            Function::SyncWorker => "sync-worker",
            Function::AccountStreamer => "account-streamer",
            Function::Migrate => "migrate",
        }
    }

    /// Where the local stack names the function's own AWS identity (see
    /// [`crate::aws::sdk_config_for`]): `TASTYSYNC_IDENTITY_SYNC_WORKER` for `sync-worker`.
    pub fn identity_variable(self) -> String {
        format!(
            "TASTYSYNC_IDENTITY_{}",
            self.name().to_uppercase().replace('-', "_")
        )
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The AWS actions the function's dependencies call: what its IAM policy must grant.
    pub fn actions(self) -> BTreeSet<&'static str> {
        match self {
            Function::Accounts => Accounts::actions(),
            Function::AccountData => AccountData::actions(),
            Function::LinkAccount => LinkAccount::actions(),
            Function::SyncTrigger => SyncTrigger::actions(),
            Function::SyncStatus => SyncStatus::actions(),
            Function::SyncScheduler => SyncScheduler::actions(),
            Function::SyncWorker => {
                // Lambda's event source mapping consumes the queue with the worker's role (and
                // the local poller does the same with the worker's identity).
                let mut actions = SyncWorker::actions();
                actions.extend(sqs::CONSUMER_ACTIONS);
                actions
            }
            Function::AccountStreamer => AccountStreamer::actions(),
            // It applies the migrations over a pool, nothing else.
            Function::Migrate => db::MIGRATION_POOL_ACTIONS.iter().copied().collect(),
        }
    }
}

/// The function's pool: the database settings of the environment, logged in as the function's
/// [`Function::database_user`].
async fn pool_for(
    function: Function,
    env: &Env,
    sdk: &SdkConfig,
) -> Result<deadpool_postgres::Pool, StartupError> {
    let mut config = crate::config::DatabaseConfig::from_env(env)?;
    config.user = function.database_user();
    Ok(db::pool(&config, sdk).await?)
}

async fn accounts_for(
    function: Function,
    env: &Env,
    sdk: &SdkConfig,
) -> Result<PgAccounts, StartupError> {
    Ok(PgAccounts::new(pool_for(function, env, sdk).await?))
}

fn secrets_from(sdk: &SdkConfig) -> SecretsManager {
    SecretsManager::new(aws_sdk_secretsmanager::Client::new(sdk))
}

/// The deployment's OAuth client (`OAUTH_CLIENT_SECRET_ARN`), when authorization-code grants
/// are linked.
async fn oauth_client_from_env(
    env: &Env,
    sdk: &SdkConfig,
) -> Result<Option<OAuthClient>, StartupError> {
    match env.optional("OAUTH_CLIENT_SECRET_ARN") {
        Some(arn) => Ok(Some(OAuthClient::load(&secrets_from(sdk), arn).await?)),
        None => Ok(None),
    }
}

fn tasks_from_env(env: &Env, sdk: &SdkConfig) -> Result<DynamoTasks, ConfigError> {
    Ok(DynamoTasks::new(
        aws_sdk_dynamodb::Client::new(sdk),
        env.required("TASKS_TABLE")?,
    ))
}

fn queue_from_env(env: &Env, sdk: &SdkConfig) -> Result<SqsQueue, ConfigError> {
    Ok(SqsQueue::new(
        aws_sdk_sqs::Client::new(sdk),
        env.required("SYNC_QUEUE_URL")?,
    ))
}

fn events_from_env(env: &Env, sdk: &SdkConfig) -> Result<EventBridgeBus, ConfigError> {
    Ok(EventBridgeBus::new(
        aws_sdk_eventbridge::Client::new(sdk),
        env.required("EVENT_BUS_NAME")?,
    ))
}

fn cipher_from_env(env: &Env, sdk: &SdkConfig) -> Result<KmsEnvelope, ConfigError> {
    Ok(KmsEnvelope::new(
        aws_sdk_kms::Client::new(sdk),
        env.required("TOKEN_KMS_KEY_ID")?,
    ))
}

impl Accounts {
    /// The database settings ([`crate::config::DatabaseConfig`]), `TASKS_TABLE` and
    /// `UNLINK_SYNCED_DATA`.
    pub async fn from_env(env: &Env, sdk: &SdkConfig) -> Result<Self, StartupError> {
        Ok(Self {
            accounts: accounts_for(Function::Accounts, env, sdk).await?,
            tasks: tasks_from_env(env, sdk)?,
            unlink_data: unlink_policy(env)?,
            limit: UserLimits::from_env(env)?.reads,
        })
    }
}

impl AccountData {
    /// The database settings.
    pub async fn from_env(env: &Env, sdk: &SdkConfig) -> Result<Self, StartupError> {
        Ok(Self {
            accounts: accounts_for(Function::AccountData, env, sdk).await?,
            limits: tasks_from_env(env, sdk)?,
            limit: UserLimits::from_env(env)?.reads,
        })
    }
}

impl LinkAccount {
    /// The database settings, the broker's URLs, `TOKEN_KMS_KEY_ID`, `TASKS_TABLE`,
    /// `SYNC_QUEUE_URL`, the deployment's secrets and the [`OAuthSettings`].
    pub async fn from_env(env: &Env, sdk: &SdkConfig) -> Result<Self, StartupError> {
        let secrets = DeploymentSecrets::load(&secrets_from(sdk), env).await?;
        Ok(Self {
            accounts: accounts_for(Function::LinkAccount, env, sdk).await?,
            broker: TastytradeClient::new(BrokerConfig::from_env(env)?)?,
            cipher: cipher_from_env(env, sdk)?,
            tasks: tasks_from_env(env, sdk)?,
            queue: queue_from_env(env, sdk)?,
            oauth_client: secrets.oauth_client,
            state: StateSigner::new(secrets.state_signing_key),
            settings: OAuthSettings::from_env(env)?,
            limit: UserLimits::from_env(env)?.link,
        })
    }
}

impl SyncTrigger {
    /// The database settings, `TASKS_TABLE`, `SYNC_QUEUE_URL` and the [`TaskSettings`].
    pub async fn from_env(env: &Env, sdk: &SdkConfig) -> Result<Self, StartupError> {
        Ok(Self {
            accounts: accounts_for(Function::SyncTrigger, env, sdk).await?,
            tasks: tasks_from_env(env, sdk)?,
            queue: queue_from_env(env, sdk)?,
            settings: TaskSettings::from_env(env)?,
            limit: UserLimits::from_env(env)?.trigger,
        })
    }
}

impl SyncStatus {
    /// The database settings and `TASKS_TABLE`.
    pub async fn from_env(env: &Env, sdk: &SdkConfig) -> Result<Self, StartupError> {
        Ok(Self {
            accounts: accounts_for(Function::SyncStatus, env, sdk).await?,
            tasks: tasks_from_env(env, sdk)?,
            limit: UserLimits::from_env(env)?.reads,
        })
    }
}

impl SyncScheduler {
    /// The database settings, `TASKS_TABLE`, `SYNC_QUEUE_URL` and the [`ScheduleSettings`].
    pub async fn from_env(env: &Env, sdk: &SdkConfig) -> Result<Self, StartupError> {
        Ok(Self {
            accounts: accounts_for(Function::SyncScheduler, env, sdk).await?,
            tasks: tasks_from_env(env, sdk)?,
            queue: queue_from_env(env, sdk)?,
            settings: ScheduleSettings::from_env(env)?,
        })
    }
}

impl SyncWorker {
    /// The database settings, the broker's URLs, `TOKEN_KMS_KEY_ID`, `TASKS_TABLE`,
    /// `SYNC_QUEUE_URL`, `EVENT_BUS_NAME`, `OAUTH_CLIENT_SECRET_ARN` when
    /// authorization-code grants are linked, `SYNC_GRANT_CONCURRENCY` (requests of one
    /// grant in flight at once, 4 unless set) and `SYNC_MAX_CONTINUATIONS` (96).
    pub async fn from_env(env: &Env, sdk: &SdkConfig) -> Result<Self, StartupError> {
        let oauth_client = oauth_client_from_env(env, sdk).await?;
        let defaults = SyncSettings::default();
        let grant_concurrency =
            env.parsed_or("SYNC_GRANT_CONCURRENCY", defaults.grant_concurrency)?;
        let max_continuations =
            env.parsed_or("SYNC_MAX_CONTINUATIONS", defaults.max_continuations)?;
        Ok(Self {
            store: PgSyncStore::new(pool_for(Function::SyncWorker, env, sdk).await?),
            broker: TastytradeClient::new(BrokerConfig::from_env(env)?)?,
            cipher: cipher_from_env(env, sdk)?,
            tasks: tasks_from_env(env, sdk)?,
            queue: queue_from_env(env, sdk)?,
            oauth_client,
            events: events_from_env(env, sdk)?,
            settings: SyncSettings {
                grant_concurrency,
                max_continuations,
                ..defaults
            },
        })
    }
}

impl AccountStreamer {
    /// The database settings, the broker's URLs (the streamer's among them),
    /// `TOKEN_KMS_KEY_ID`, `TASKS_TABLE`, `SYNC_QUEUE_URL`, `EVENT_BUS_NAME`,
    /// `OAUTH_CLIENT_SECRET_ARN` when
    /// authorization-code grants are linked, and the [`StreamerSettings`].
    pub async fn from_env(env: &Env, sdk: &SdkConfig) -> Result<Self, StartupError> {
        let oauth_client = oauth_client_from_env(env, sdk).await?;
        let pool = pool_for(Function::AccountStreamer, env, sdk).await?;
        Ok(Self {
            store: PgSyncStore::new(pool.clone()),
            accounts: PgAccounts::new(pool),
            broker: TastytradeClient::new(BrokerConfig::from_env(env)?)?,
            cipher: cipher_from_env(env, sdk)?,
            tasks: tasks_from_env(env, sdk)?,
            queue: queue_from_env(env, sdk)?,
            oauth_client,
            events: events_from_env(env, sdk)?,
            settings: StreamerSettings::from_env(env)?,
        })
    }
}
