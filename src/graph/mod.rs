//! Microsoft Graph source: the `/auditLogs/signIns` query and pager, throttling, the sign-in
//! model and the row stream (one query for every event type). Tokens come from [`crate::credential`].

pub mod client;
pub mod model;
pub mod query;
pub mod rate;
pub mod slots;
pub mod stream;
pub mod throttle;

pub use client::{GraphClient, GraphError, GraphStats, SignInPager, Window};
