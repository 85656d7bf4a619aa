//! The domain: what tastysync is about, with no storage or transport in it.

pub mod accounts;
pub mod audit;
pub mod events;
pub mod reads;
pub mod requests;
pub mod rows;
pub mod tasks;
