//! A simulator of the tastytrade API, for tests, the local stack and benchmarks.
//!
//! # Layout
//!
//! - [`data`]: the deterministic customer: accounts, transactions, orders, positions,
//!   balances, snapshots, generated from a seed and rendered as the broker renders them.
//! - [`dxlink`]: the market-data feed (DXLink websocket) with greeks for option positions.
//! - [`streamer`]: the account streamer (websocket) that pushes orders, balances and positions.
//! - [`server`]: the HTTP API (the broker's paths, envelope, pagination limits, errors, OAuth)
//!   and the `/__sim` control API (new activity, revocation, faults, ground truth).
//!
//! [`Simulator::spawn`] runs it in-process on a random loopback port; the `tastytrade-sim`
//! binary runs it standalone.

pub mod data;
pub mod dxlink;
pub mod server;
pub mod streamer;

pub use server::{
    Activity, ActivityOutcome, BalancesShape, Config, Credentials, Faults, Poison, Quirks,
    Simulator,
};
