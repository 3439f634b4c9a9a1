//! Microsoft Graph source: the `/auditLogs/signIns` query and pager, throttling, the sign-in
//! model and the merged newest-first stream. Tokens come from [`crate::credential`].

pub mod client;
pub mod model;
pub mod query;
pub mod stream;
pub mod throttle;

pub use client::{GraphClient, GraphError, GraphStats, SignInPager, Window};
