//! Helpers shared by the integration tests: fakes, Azurite, the test CA, spawning the app.
#![allow(dead_code)]

pub mod azurite;
pub mod fake;
pub mod tls;
pub mod app;
pub mod env;
pub mod host;
