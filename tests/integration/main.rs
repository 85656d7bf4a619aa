//! One integration-test binary (one link step) with a module per subject.

// Everything here is test code, helpers included: an unexpected error should fail loudly.
#![allow(clippy::unwrap_used)]

mod audit;
mod authorization;
mod aws_resources;
mod bounds;
mod events;
mod fuzz;
mod greeks;
mod iam;
mod link;
mod local_stack;
mod metrics;
mod migrations;
mod openapi;
mod orchestration;
mod poison;
mod quarantine;
mod reads;
mod realtime;
mod requests;
mod schema;
mod sdk_oracle;
mod secrets_scan;
mod sync;
mod tastytrade_client;
mod tastytrade_examples;
mod template;
