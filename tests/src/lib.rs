//! The test harness: real Postgres databases and real (emulated) AWS resources, one set per
//! test, so tests run in parallel without seeing each other's rows or messages.
//!
//! # Layout
//!
//! - [`TestDb`]: a new database in the private cluster `make test` started, empty or migrated.
//! - [`TestAws`]: the stack's AWS resources under a prefix of their own, on the moto server
//!   `make test` started.
//!
//! Both read the addresses from the environment that `infra/local/stack.sh` writes; run the
//! tests through `make test` (or source `.local/<stack>/env` first).

use deadpool_postgres::Pool;
use secrecy::SecretString;
use tastysync_local::provision::{self, Names, Stack};
use tastysync_shared::aws::{self, SdkConfig};
use tastysync_shared::config::DatabaseConfig;
use tastysync_shared::db;

fn stack_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with `make test`, which starts the local stack")
    })
}

fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// A database of its own in the test cluster. It is left behind when the test ends: the whole
/// cluster is deleted when `make test` finishes.
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
    pub pool: Pool,
}

impl TestDb {
    /// A new database with no schema at all.
    pub async fn empty() -> Self {
        let admin_url = stack_var("TASTYSYNC_PG_ADMIN_URL");
        let name = format!("t_{}", unique_suffix());
        let (admin, connection) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
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
        let config = DatabaseConfig {
            url: SecretString::from(format!("{base}/{name}")),
            max_connections: 8,
        };
        let pool = db::pool(&config).expect("the test database URL is valid");
        Self { name, pool }
    }

    /// A new database with every migration applied.
    pub async fn migrated() -> Self {
        let db = Self::empty().await;
        db::migrations::apply(&db.pool)
            .await
            .expect("migrations apply to a new database");
        db
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
        // Fail early with the harness's message rather than the SDK's.
        stack_var("AWS_ENDPOINT_URL");
        let sdk = aws::sdk_config().await;
        let names = Names::with_prefix(&format!("t{}-", unique_suffix()));
        let oauth_client = serde_json_client();
        let stack = provision::provision(&sdk, &names, &oauth_client)
            .await
            .expect("the emulator accepts the stack's resources");
        Self { sdk, names, stack }
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk)
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk)
    }
}

fn serde_json_client() -> serde_json::Value {
    serde_json::json!({ "client_id": "test-client", "client_secret": "test-client-secret" })
}
