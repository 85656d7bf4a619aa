//! tastytrade: the client the sync uses, and the broker's objects.
//!
//! - [`client`]: one `reqwest` client per cold start ([`TastytradeClient`]), a [`Session`] per
//!   OAuth grant with a single-flight access-token cache, retries with full jitter.
//! - [`api`]: the endpoints, their filters, and [`Pages`], a scan that holds one page at a
//!   time and verifies its count.
//! - [`model`]: the objects, lenient where the broker is loose, with the raw JSON kept.
//! - [`wire`]: the deserializers for the broker's encodings (decimals, epoch times, ids).
//! - [`occ`]: strike, expiry and call/put from an OCC option symbol.
//! - [`streamer`]: the account streamer, the websocket that pushes orders, balances and
//!   positions.
//! - [`error`]: [`BrokerError`], in the categories the sync branches on.

pub mod api;
pub mod client;
pub mod dxlink;
pub mod error;
pub mod model;
pub mod occ;
pub mod streamer;
pub mod wire;

pub use api::{
    CurrentBalances, OrderQuery, Page, Pages, Parsed, SnapshotQuery, Sort, TimeBack, TimeOfDay,
    TransactionQuery,
};
pub use client::{
    AccessToken, BrokerConfig, CodeExchange, Environment, Grant, RetryPolicy, Session,
    TastytradeClient,
};
pub use error::BrokerError;
