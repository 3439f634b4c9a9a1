//! Helpers shared by the integration tests: fakes, Azurite, the test CA, spawning the app.
#![allow(dead_code)]

pub mod app;
pub mod azurite;
pub mod clock;
pub mod diagnostic;
pub mod env;
pub mod fake;
pub mod host;
pub mod sink;
pub mod summaries;
pub mod tls;
pub mod tmdl;
