//! The local stack's Rust side.
//!
//! # Layout
//!
//! - [`provision`]: creates the queue, DLQ, tasks table, KMS key and secrets on the AWS
//!   emulator, with the settings `template.yaml` declares for the deployment. Both
//!   `make stack` and the test harness use it, so tests run against the resources production
//!   will have.
//! - [`gateway`]: plays API Gateway (routes, JWT authorizer), the SQS event source mapping and
//!   the EventBridge schedule for the functions, in one process.
//! - [`demo`]: `make demo`, the product end to end against the simulator or a real account.
//!
//! The shell side (`stack.sh`) starts and stops Postgres and moto.

pub mod demo;
pub mod gateway;
pub mod identity;
pub mod provision;
pub mod template;
