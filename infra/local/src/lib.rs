//! The local stack's Rust side.
//!
//! # Layout
//!
//! - [`provision`]: creates the queue, DLQ, tasks table, KMS key and secrets on the AWS
//!   emulator, with the settings `template.yaml` declares for the deployment. Both
//!   `make stack` and the test harness use it, so tests run against the resources production
//!   will have.
//!
//! The shell side (`stack.sh`) starts and stops Postgres and moto.

pub mod provision;
