//! Microsoft Graph source: token acquisition, the `/auditLogs/signIns` pager and throttling.

pub mod auth;
pub mod client;
pub mod model;
pub mod query;
pub mod throttle;

pub use auth::{AuthError, TokenProvider};
pub use client::{GraphClient, GraphError, GraphStats, SignInPager, Window};
