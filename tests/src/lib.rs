//! The test harness: real Postgres databases and real (emulated) AWS resources, one set per
//! test, so tests run in parallel without seeing each other's rows or messages.
//!
//! # Layout
//!
//! - [`TestDb`]: a new database in the private cluster `make test` started, empty or migrated.
//! - [`TestAws`]: the stack's AWS resources under a prefix of their own, on the moto server
//!   `make test` started.
//! - [`event`] and [`request`]: API Gateway events from `events/`, for handler tests.
//!
//! Both read the addresses from the environment that `infra/local/stack.sh` writes; run the
//! tests through `make test` (or source `.local/<stack>/env` first).

pub mod leaks;
pub mod truth;

use deadpool_postgres::Pool;
use secrecy::SecretString;
use tastysync_local::provision::{self, Names, Stack};
use tastysync_shared::adapters::dynamo::DynamoTasks;
use tastysync_shared::adapters::eventbridge::EventBridgeBus;
use tastysync_shared::adapters::sqs::SqsQueue;
use tastysync_shared::aws::{self, SdkConfig};
use tastysync_shared::config::{DatabaseConfig, DatabaseSource, Env};
use tastysync_shared::db;
use tastysync_shared::secrets::KmsEnvelope;
use tastysync_shared::wiring::Function;

fn stack_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with `make test`, which starts the local stack")
    })
}

/// `env` with the stack's function identities (`TASTYSYNC_IDENTITY_*`) from this process's
/// environment, for functions configured from a hand-made environment.
pub fn with_identities(env: Env) -> Env {
    let process = Env::process();
    Function::ALL.into_iter().fold(env, |env, function| {
        let name = function.identity_variable();
        match process.optional(&name) {
            Some(keys) => env.with(&name, keys),
            None => env,
        }
    })
}

/// The first column of every row `sql` returns, as text.
pub async fn texts(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .await
        .expect("the query runs")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// What the suite logs for the secrets scan after it: `debug` from our crates, `info` from
/// the libraries under them.
pub const SUITE_LOG_FILTER: &str = "info,tastysync_shared=debug,tastysync_local=debug,\
    tastytrade_sim=debug,accounts=debug,link_account=debug,migrate=debug,sync_scheduler=debug,\
    sync_status=debug,sync_trigger=debug,sync_worker=debug,account_data=debug,account_streamer=debug";

/// Where this test process and the workers it starts write their logs: a file each in
/// `TASTYSYNC_SUITE_LOGS`, which `make test` sets and scans for secrets after the suite.
/// `None` outside `make test`.
pub fn suite_log_file(kind: &str) -> Option<std::fs::File> {
    let dir = std::env::var_os("TASTYSYNC_SUITE_LOGS")?;
    let path = std::path::Path::new(&dir).join(format!("{kind}-{}.log", unique_suffix()));
    Some(std::fs::File::create(&path).expect("the suite log directory takes files"))
}

/// Keeps output a test read from a worker (which therefore did not go to a suite log file)
/// for the scan after the suite.
pub fn keep_for_the_scan(output: &std::process::Output) {
    use std::io::Write;
    if let Some(mut file) = suite_log_file("worker") {
        file.write_all(&output.stdout)
            .and_then(|()| file.write_all(&output.stderr))
            .expect("the suite log directory takes files");
    }
}

/// Sends this process's logs to its suite log file (once; every harness constructor calls it).
pub fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Some(file) = suite_log_file("test") {
            let _already_set = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(SUITE_LOG_FILTER))
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false)
                .try_init();
        }
    });
}

fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// A database of its own in the test cluster. It is left behind when the test ends: the whole
/// cluster is deleted when `make test` finishes.
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
    /// For functions configured from the environment (`DATABASE_URL`).
    pub url: String,
    pub pool: Pool,
}

impl TestDb {
    /// A new database with no schema at all.
    pub async fn empty() -> Self {
        Self::empty_on(&stack_var("TASTYSYNC_PG_ADMIN_URL")).await
    }

    /// A new database with no schema, in the cluster of `admin_url`.
    pub async fn empty_on(admin_url: &str) -> Self {
        capture_logs();
        let name = format!("t_{}", unique_suffix());
        let (admin, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
            .await
            .expect("the test cluster accepts connections");
        tokio::spawn(connection);
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("the test cluster creates databases");

        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("the admin URL names a database");
        let url = format!("{base}/{name}");
        let config = DatabaseConfig {
            source: DatabaseSource::Url(SecretString::from(url.clone())),
            max_connections: 8,
            user: None,
        };
        // A URL source never calls AWS.
        let pool = db::pool(&config, &aws::sdk_config().await)
            .await
            .expect("the test database URL is valid");
        Self { name, url, pool }
    }

    /// A new database with every migration applied.
    pub async fn migrated() -> Self {
        let db = Self::empty().await;
        db::migrations::apply(&db.pool)
            .await
            .expect("migrations apply to a new database");
        db
    }

    /// `count` synced accounts spread over 1,000 users with a grant each, plus a closed one
    /// (`CLOSED`) and one waiting for a re-link (`REAUTH`), which no scheduler tick may queue.
    pub async fn many_accounts(&self, count: i32) {
        self.client()
            .await
            .batch_execute(&format!(
                "INSERT INTO tastytrade_credentials (id, user_id, environment, grant_kind)
                 SELECT gen_random_uuid(), 'user-' || u, 'sandbox', 'personal'
                 FROM generate_series(0, 999) u;
                 INSERT INTO tastytrade_accounts
                     (user_id, credential_id, environment, account_number, last_sync_status)
                 SELECT c.user_id, c.id, 'sandbox', 'ACC' || i, 'SUCCESS'
                 FROM generate_series(1, {count}) i
                 JOIN tastytrade_credentials c ON c.user_id = 'user-' || (i % 1000);
                 INSERT INTO tastytrade_accounts
                     (user_id, credential_id, environment, account_number, is_closed)
                 SELECT user_id, id, 'sandbox', 'CLOSED', true FROM tastytrade_credentials LIMIT 1;
                 INSERT INTO tastytrade_accounts
                     (user_id, credential_id, environment, account_number, last_sync_status)
                 SELECT user_id, id, 'sandbox', 'REAUTH', 'NEEDS_REAUTH'
                 FROM tastytrade_credentials LIMIT 1;"
            ))
            .await
            .expect("the accounts insert");
    }

    /// A pool that acts on this database as `function` does: as its role, when it has one.
    pub async fn pool_of(
        &self,
        function: tastysync_shared::wiring::Function,
    ) -> deadpool_postgres::Pool {
        let config = DatabaseConfig {
            source: DatabaseSource::Url(SecretString::from(self.url.clone())),
            // The deployed default, so the suite shows the functions need no more.
            max_connections: tastysync_shared::config::DatabaseConfig::DEFAULT_MAX_CONNECTIONS,
            user: function.database_user(),
        };
        db::pool(&config, &aws::sdk_config().await)
            .await
            .expect("the test database URL is valid")
    }

    pub async fn client(&self) -> deadpool_postgres::Object {
        self.pool
            .get()
            .await
            .expect("the test database accepts connections")
    }
}

/// The stack's AWS resources, created for this test alone.
#[derive(Debug)]
pub struct TestAws {
    pub sdk: SdkConfig,
    pub names: Names,
    pub stack: Stack,
}

impl TestAws {
    pub async fn provisioned() -> Self {
        Self::provisioned_with(&serde_json::json!({
            "client_id": "test-client",
            "client_secret": "test-client-secret",
        }))
        .await
    }

    /// With the deployment's OAuth client set to `oauth_client` (`client_id`, `client_secret`).
    pub async fn provisioned_with(oauth_client: &serde_json::Value) -> Self {
        capture_logs();
        // Fail early with the harness's message rather than the SDK's.
        stack_var("AWS_ENDPOINT_URL");
        let sdk = aws::sdk_config().await;
        let names = Names::with_prefix(&format!("t{}-", unique_suffix()));
        let stack = provision::provision(&sdk, &names, oauth_client)
            .await
            .expect("the emulator accepts the stack's resources");
        Self { sdk, names, stack }
    }

    /// The stack's SDK config signed as `function`'s identity: a function's dependencies built
    /// on it call AWS with the function's policy from `template.yaml`, as on AWS. ([`Self::sdk`]
    /// is the stack's admin, for setting up and inspecting.)
    pub fn sdk_of(&self, function: Function) -> SdkConfig {
        aws::as_identity(&self.sdk, &Env::process(), function)
    }

    /// The task table as the test sees it: with the stack's admin, to set up and inspect.
    pub fn tasks(&self) -> DynamoTasks {
        DynamoTasks::new(self.dynamodb(), &self.stack.table)
    }

    /// The task table, as `function` reaches it.
    pub fn tasks_of(&self, function: Function) -> DynamoTasks {
        DynamoTasks::new(
            aws_sdk_dynamodb::Client::new(&self.sdk_of(function)),
            &self.stack.table,
        )
    }

    /// The sync queue, as `function` reaches it.
    pub fn queue_of(&self, function: Function) -> SqsQueue {
        SqsQueue::new(
            aws_sdk_sqs::Client::new(&self.sdk_of(function)),
            &self.stack.queue_url,
        )
    }

    /// The token cipher, as `function` reaches it.
    pub fn events_of(&self, function: Function) -> EventBridgeBus {
        EventBridgeBus::new(
            aws_sdk_eventbridge::Client::new(&self.sdk_of(function)),
            &self.stack.event_bus,
        )
    }

    pub fn cipher_of(&self, function: Function) -> KmsEnvelope {
        KmsEnvelope::new(
            aws_sdk_kms::Client::new(&self.sdk_of(function)),
            &self.stack.kms_key_arn,
        )
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk)
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk)
    }
}

/// A message taken off the queue: its group (the account id) and body.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub group: String,
    pub body: String,
}

/// Receives and deletes the stack queue's messages while a test runs, as the workers would.
///
/// Fan-out tests need it to stay fast on moto: every FIFO send there recounts the whole queue
/// (`ApproximateNumberOfMessages`, several times per message), so a send costs time in
/// proportion to the messages held, and ten thousand undrained messages take many minutes.
/// Consuming also makes the tests stricter: moto forgets a deleted message's deduplication id,
/// so a scheduler that sent a task twice would be seen twice here.
#[derive(Debug)]
pub struct QueueConsumer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Consumed>>,
}

impl QueueConsumer {
    pub fn start(aws: &TestAws) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (sqs, url) = (aws.sqs(), aws.stack.queue_url.clone());
        let stopping = stop.clone();
        let task = tokio::spawn(async move {
            let mut consumed = Vec::new();
            loop {
                let stopping = stopping.load(std::sync::atomic::Ordering::Acquire);
                let received = sqs
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .message_system_attribute_names(
                        aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId,
                    )
                    .wait_time_seconds(if stopping { 0 } else { 1 })
                    .send()
                    .await
                    .expect("the emulator answers ReceiveMessage")
                    .messages
                    .unwrap_or_default();
                if received.is_empty() && stopping {
                    return consumed;
                }
                let mut deletes = Vec::with_capacity(received.len());
                for (i, message) in received.into_iter().enumerate() {
                    deletes.push(
                        aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(message.receipt_handle.clone().unwrap_or_default())
                            .build()
                            .expect("id and receipt handle are set"),
                    );
                    let group = message
                        .attributes
                        .as_ref()
                        .and_then(|a| {
                            a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
                        })
                        .cloned()
                        .unwrap_or_default();
                    consumed.push(Consumed {
                        group,
                        body: message.body.unwrap_or_default(),
                    });
                }
                if !deletes.is_empty() {
                    sqs.delete_message_batch()
                        .queue_url(&url)
                        .set_entries(Some(deletes))
                        .send()
                        .await
                        .expect("the emulator answers DeleteMessageBatch");
                }
            }
        });
        Self { stop, task }
    }

    /// Everything consumed, once the queue is empty.
    pub async fn finish(self) -> Vec<Consumed> {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.task.await.expect("the consumer ran to the end")
    }
}

/// An API Gateway event from `events/`, as JSON to adjust before [`request`] turns it into
/// what a handler receives.
pub fn event(name: &str) -> serde_json::Value {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn request(event: &serde_json::Value) -> lambda_http::Request {
    lambda_http::request::from_str(&event.to_string()).expect("the event is an API Gateway request")
}

/// A Postgres cluster of one test's own, for tests that stop or restart the server: the
/// shared cluster serves every other test. Deleted when dropped.
#[derive(Debug)]
pub struct PrivatePostgres {
    bin: std::path::PathBuf,
    dir: std::path::PathBuf,
    pub port: u16,
}

impl PrivatePostgres {
    /// `initdb` and `pg_ctl start` on a free loopback port, with the binaries the stack uses.
    pub fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("Postgres server binaries (the stack installs them)")
            .map(|entry| entry.expect("readable").path().join("bin"))
            .filter(|bin| bin.join("initdb").exists())
            .max()
            .expect("an installed Postgres version");
        let dir = std::env::temp_dir().join(format!("tastysync-pg-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let cluster = Self { bin, dir, port };
        if running_as_root() {
            // Postgres refuses to run as root; the stack runs it as `postgres` too.
            let status = std::process::Command::new("chown")
                .args(["postgres:", cluster.dir.to_str().expect("UTF-8 path")])
                .status()
                .expect("chown runs");
            assert!(status.success());
        }
        let data = cluster.data();
        cluster.pg(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "--no-locale"],
        );
        cluster.ctl("start");
        cluster
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    /// The admin URL, for [`TestDb::empty_on`].
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A fast restart: every connection is cut, as when Aurora fails over or restarts.
    pub fn restart(&self) {
        self.ctl("restart");
    }

    fn ctl(&self, action: &str) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories= -c fsync=off",
            self.port
        );
        let log = self.dir.join("server.log").to_string_lossy().into_owned();
        let data = self.data();
        self.pg(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-m", "fast", "-w", "-o", &options, action,
            ],
        );
    }

    fn pg(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let mut command = if running_as_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            std::process::Command::new(&program)
        };
        let output = command.args(args).output().expect("the Postgres tool runs");
        assert!(
            output.status.success(),
            "{}: {}",
            program.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.pg("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        }));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}
