//! Microsoft Graph source: token acquisition, the `/auditLogs/signIns` pager and throttling.

pub mod auth;
pub mod client;
pub mod model;
pub mod throttle;
