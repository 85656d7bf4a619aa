//! The HTTP routes, one module per function: each route takes its dependencies and the
//! request, and returns the response or an [`ApiError`](crate::http::ApiError). The function
//! crates only wire dependencies and dispatch on method and path.

pub mod account_data;
pub mod accounts;
pub mod link;
pub mod sync_tasks;
